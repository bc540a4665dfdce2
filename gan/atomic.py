"""Atomic file writes, shared by checkpoints, ONNX models and reports."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

# The temporaries atomic_write makes: "." + the target's name + "." + mkstemp's 8 random
# characters (lower-case letters, digits, "_") + ".tmp", e.g. ".last.pt.k3x_9q0a.tmp".
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp")


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object],
                 check: Callable[[Path], object] | None = None) -> None:
    """Call `write(f)` on a temporary file beside `path`, fsync, then os.replace it into place.

    `check(tmp_path)`, when given, runs on the complete temporary file before the replace; if it
    raises, nothing is replaced. A crash at any moment leaves the old file or the new one, never a
    torn one; on error the temporary file is removed and the old file is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if check is not None:
            check(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; models and checkpoints are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporaries that atomic_write left in `folder` when its process was killed
    mid-write (a SIGKILL runs no cleanup); returns what was removed.

    Only files of exactly our naming go. Call it where no other process is writing into
    `folder`: a live writer's temporary looks the same.
    """
    removed = []
    for p in Path(folder).glob(".*.tmp"):
        if _TEMPORARY.fullmatch(p.name) and p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed
