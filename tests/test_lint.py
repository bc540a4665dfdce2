"""House style is checked, not hoped for: ruff and mypy pass over everything but the stubs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize("tool", [["ruff", "check", "."], ["mypy"]])
def test_clean(tool: list[str]) -> None:
    exe = BIN / tool[0] if (BIN / tool[0]).exists() else shutil.which(tool[0])
    if exe is None:
        pytest.skip(f"{tool[0]} is not installed (pip install -e '.[dev]')")
    done = subprocess.run([str(exe), *tool[1:]], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
