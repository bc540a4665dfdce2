"""Suite-wide settings: a private data cache, and the real Fashion-MNIST files.

Numerics of other machines, on this one:
- GAN_TEST_PRECISION=bf16 (or fp16, fp32) trains the suite's tiny runs in that precision and makes
  it TrainConfig's default in this process, to shake out expectations that hold in fp32 only.
- ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 make torch compute (and `--precision auto`
  choose, fp32) as on an AVX2-only CPU; ONNX Runtime keeps its own kernels.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Decompressed datasets go to a cache private to this test session, never the user's ~/.cache.
os.environ.setdefault("XDG_CACHE_HOME", tempfile.mkdtemp(prefix="gan-test-cache-"))
os.environ.setdefault("OMP_NUM_THREADS", "2")

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

if os.environ.get("GAN_TEST_PRECISION"):
    from train.config import TrainConfig

    # kw_only dataclass: the defaults of __init__'s keyword-only parameters
    TrainConfig.__init__.__kwdefaults__["precision"] = os.environ["GAN_TEST_PRECISION"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if (FASHION_MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        return
    skip = pytest.mark.skip(reason="no real Fashion-MNIST: apt-get install dataset-fashion-mnist")
    for item in items:
        if "fashion_mnist" in item.keywords:
            item.add_marker(skip)


# The dataset classifier behind `gan eval` and `--eval-every`, trained once per session in a
# cheaper setting (10k images, 2 epochs: test accuracy ~0.87) into a cache home of its own.
QUICK_CLASSIFIER = {"epochs": 2, "train_limit": 10_000}


@pytest.fixture(scope="session")
def classifier_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from train import classifier as clf

    home = tmp_path_factory.mktemp("classifier-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(home))
        clf.load_or_train("fashion-mnist", None, 32, 0, clf.ClassifierSettings(**QUICK_CLASSIFIER))
    return home


@pytest.fixture
def quick_classifier(classifier_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the cache at the session's classifier: scoring finds it instead of training one."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(classifier_home))
    return classifier_home
