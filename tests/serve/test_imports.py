"""The serving install stays small: no serve module, and nothing of gan that serve builds on,
imports torch, torchvision or onnx. Checked in a fresh interpreter, so the test process's own
imports cannot hide one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "torchvision", "onnx")

IMPORT_ALL = f"""
import importlib, pkgutil, sys
import gan, serve
names = [m.name for pkg in (gan, serve) for m in pkgutil.walk_packages(pkg.__path__,
                                                                         pkg.__name__ + ".")]
for name in names:
    if name.endswith(".__main__"):  # runs the CLI
        continue
    importlib.import_module(name)
heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)
print(len(names), "modules;", "heavy:", heavy)
sys.exit(1 if heavy else 0)
"""


def test_serve_and_gan_import_no_torch_torchvision_or_onnx() -> None:
    done = subprocess.run([sys.executable, "-c", IMPORT_ALL], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert int(done.stdout.split()[0]) >= 20  # it really walked both packages
