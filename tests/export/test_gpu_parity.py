"""Parity on the GPU providers (CUDA and TensorRT, fp32 and fp16); skipped without a GPU.

On a GPU machine without TensorRT's libnvinfer, ONNX Runtime runs a TensorRT request on CUDA:
the report must say so (provider "cuda", a note), never claim TensorRT.
"""

from __future__ import annotations

import onnxruntime as ort
import pytest

from export import parity
from gan.session import SessionOptions, create_session, has_nvidia_device
from train import checkpoint

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not (has_nvidia_device()
                            and "CUDAExecutionProvider" in ort.get_available_providers()),
                       reason="needs an NVIDIA GPU and onnxruntime-gpu"),
]


def _check(exported, runs, size, output, precision, providers):
    result = exported(size, output, precision)
    generator = checkpoint.build_generator(checkpoint.load(runs[size]))
    return parity.check(generator, result.model, output=output, precision=precision,
                        batch_sizes=(1, 7, 64, 256), providers=providers)


@pytest.mark.parametrize("output", ["float", "uint8"])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_cuda_parity(exported, runs, precision, output):
    report = _check(exported, runs, 64, output, precision, "cuda")
    print("\n".join(report.lines()))
    assert report.provider == "cuda"
    assert report.passed, report.lines()
    assert not any("fp16 weight rounding" in n for n in report.notes)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_parity_reports_the_provider_that_ran(exported, runs, precision):
    report = _check(exported, runs, 64, "float", precision, "tensorrt")
    print("\n".join(report.lines()))
    assert report.provider in ("tensorrt", "cuda")
    if report.provider == "cuda":  # libnvinfer missing: ONNX Runtime fell back, and says so
        assert any("asked for tensorrt" in n for n in report.notes)
    assert report.passed, report.lines()


def test_auto_takes_a_gpu_provider(exported):
    s = create_session(exported(32).model, SessionOptions(providers="auto", max_batch=8))
    assert s.provider in ("tensorrt", "cuda")
