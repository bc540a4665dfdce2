"""How `gan serve` divides its cores between inference workers and ONNX Runtime threads."""

from __future__ import annotations

from pathlib import Path

import pytest

from serve.config import ServeConfig
from serve.model import cgroup_cpus
from serve.servicer import plan


@pytest.mark.parametrize(("workers", "threads", "cores", "want"), [
    (0, 0, 2, (2, 1)),  # the CPU default: a single-threaded call per core
    (0, 0, 8, (8, 1)),
    (1, 0, 4, (1, 4)),  # one worker gets every core
    (2, 0, 5, (2, 2)),  # never more threads than cores
    (0, 3, 2, (2, 3)),  # explicit threads win
])
def test_cpu_cores_are_divided_between_workers(workers: int, threads: int, cores: int,
                                               want: tuple[int, int]) -> None:
    c = ServeConfig(model="g.onnx", providers="cpu", inference_workers=workers,
                    intra_op_threads=threads)
    assert plan(c, cores) == want


@pytest.mark.parametrize(("text", "want"), [("200000 100000\n", 2), ("150000 100000", 2),
                                            ("max 100000", None), ("", None)])
def test_the_cgroup_cpu_limit_caps_the_cores(tmp_path: Path, text: str,
                                             want: int | None) -> None:
    path = tmp_path / "cpu.max"
    path.write_text(text)
    assert cgroup_cpus(str(path)) == want
    assert cgroup_cpus(str(tmp_path / "absent")) is None
