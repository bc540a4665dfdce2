"""Atomic file writes, shared by checkpoints, ONNX models and reports."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


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
