"""Suite-wide settings (a private data cache, the real Fashion-MNIST files) and the session's
shared real runs: the dataset classifier, short training runs and the models exported from them.

The runs train on the real Fashion-MNIST test split (Debian's dataset-fashion-mnist, which
`make setup` installs). Where those files are missing (a lent GPU machine, say) they train on a
folder of generated grey-scale images instead, through the same trainer and data pipeline: parity
depends on the weights and the graph, not on what the images show.

Numerics of other machines, on this one:
- GAN_TEST_PRECISION=bf16 (or fp16, fp32) trains the suite's tiny runs in that precision and makes
  it TrainConfig's default in this process, to shake out expectations that hold in fp32 only.
- ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 make torch compute (and `--precision auto`
  choose, fp32) as on an AVX2-only CPU; ONNX Runtime keeps its own kernels.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from export.artifact import ExportResult

# Decompressed datasets go to a cache private to this test session, never the user's ~/.cache,
# and it goes when the session ends (about 50 MB; one left per run would fill /tmp over time).
if "XDG_CACHE_HOME" not in os.environ:
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="gan-test-cache-")
    atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], ignore_errors=True)
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
    from quality import classifier as clf

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


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """image size -> the run directory of a finished short training run at that size."""
    from tests.helpers import EXPORT_RUN, FASHION_MNIST_TRAIN, SIZES, image_folder
    from train.run import run

    root = tmp_path_factory.mktemp("runs")
    data: dict[str, Any] = {}
    if not FASHION_MNIST_TRAIN.is_file():
        data = {"dataset": "folder", "data_dir": str(image_folder(root / "images")),
                "channels": 1, "split": "train"}
    return {size: run({**EXPORT_RUN, **data, "image_size": size}, out=str(root / f"run{size}"))
            for size in SIZES}


@pytest.fixture(scope="session")
def conditional_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished short conditional run at 32 px (10 Fashion-MNIST classes, or 2 folders)."""
    from tests.helpers import EXPORT_RUN, FASHION_MNIST_TRAIN, image_folder
    from train.run import run

    root = tmp_path_factory.mktemp("cond")
    data: dict[str, Any] = {}
    if not FASHION_MNIST_TRAIN.is_file():
        for name in ("boxes", "more-boxes"):
            image_folder(root / "classes" / name, count=16)
        data = {"dataset": "folder", "data_dir": str(root / "classes"), "channels": 1,
                "split": "train"}
    return run({**EXPORT_RUN, **data, "image_size": 32, "conditional": True},
               out=str(root / "run"))


@pytest.fixture(scope="session")
def exported(runs: dict[int, Path], tmp_path_factory: pytest.TempPathFactory
             ) -> Callable[..., ExportResult]:
    """exported(size, output="float", precision="fp32") -> the checked export, made once."""
    from export.artifact import export
    from export.config import ExportConfig

    root = tmp_path_factory.mktemp("models")
    cache: dict[tuple[int, str, str], ExportResult] = {}

    def get(size: int, output: str = "float", precision: str = "fp32") -> ExportResult:
        key = (size, output, precision)
        if key not in cache:
            out = root / f"g{size}-{output}-{precision}" / "model.onnx"
            cache[key] = export(ExportConfig(checkpoint=str(runs[size]), out=str(out),
                                             output=output, precision=precision))
        return cache[key]

    return get


@pytest.fixture(scope="session")
def mlp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished short `--arch mlp` run at Fashion-MNIST's native 28 px (or a 28 px folder)."""
    from tests.helpers import EXPORT_RUN, FASHION_MNIST_TRAIN, image_folder
    from train.run import run

    root = tmp_path_factory.mktemp("mlp")
    data: dict[str, Any] = {}
    if not FASHION_MNIST_TRAIN.is_file():
        data = {"dataset": "folder", "data_dir": str(image_folder(root / "images")),
                "channels": 1, "split": "train", "image_size": 28}
    return run({**EXPORT_RUN, "arch": "mlp", "mlp_hidden_g": (32,), "mlp_hidden_d": (16,),
                "mlp_batch_norm": True, **data}, out=str(root / "run"))


@pytest.fixture(scope="session")
def mlp_model(mlp_run: Path, tmp_path_factory: pytest.TempPathFactory) -> ExportResult:
    """The mlp run exported (float output), parity checked."""
    from export.artifact import export
    from export.config import ExportConfig

    out = tmp_path_factory.mktemp("mlp-model") / "mlp.onnx"
    return export(ExportConfig(checkpoint=str(mlp_run), out=str(out)))
