"""Run NVIDIA's tritonclient (in .venv-triton, see tests/serve/triton_client.py) from a test.

`make setup` creates .venv-triton; without it these tests skip with that hint. Arrays go to and
come from the client as .npy files in a temporary folder.
"""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHON = ROOT / ".venv-triton" / "bin" / "python"
SCRIPT = Path(__file__).with_name("triton_client.py")
_files = itertools.count()  # unique .npy names across steps


def available() -> bool:
    return PYTHON.is_file()


skip_without = pytest.mark.skipif(not available(), reason="no .venv-triton with tritonclient: "
                                                          "run `make setup`")


def infer(folder: Path, inputs: dict[str, tuple[str, np.ndarray]] | None = None,
          **options: Any) -> dict[str, Any]:
    """An infer step: inputs {name: (datatype, array)}; options: parameters, outputs, binary,
    model. Its result gets "output": the array tritonclient decoded."""
    folder.mkdir(parents=True, exist_ok=True)
    step: dict[str, Any] = {"op": "infer", "inputs": [], **options}
    for name, (datatype, array) in (inputs or {}).items():
        path = folder / f"in-{next(_files)}.npy"
        np.save(path, array)
        step["inputs"].append({"name": name, "datatype": datatype, "npy": str(path)})
    step["out"] = str(folder / f"out-{next(_files)}.npy")
    return step


def run(protocol: str, url: str, model: str, steps: list[dict[str, Any]],
        timeout_s: float = 120) -> list[Any]:
    """Run the steps in one tritonclient process; -> one result per step."""
    job = {"protocol": protocol, "url": url, "model": model, "steps": steps}
    done = subprocess.run([str(PYTHON), str(SCRIPT)], input=json.dumps(job), text=True,
                          capture_output=True, timeout=timeout_s, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)
    for step, result in zip(steps, results, strict=True):
        if step["op"] == "infer" and isinstance(result, dict) and "error" not in result:
            result["output"] = np.load(step["out"])
    return results


def error(result: Any) -> tuple[str, str]:
    """(status, message) of a failed step (an assertion error if it succeeded)."""
    assert isinstance(result, dict) and "error" in result, f"expected an error, got {result}"
    return str(result["error"]["status"]), result["error"]["message"]
