"""The dataset classifier and the whole evaluation, on real Fashion-MNIST.

One classifier is trained per test session (a cheaper setting than the default: 10k images, two
epochs) into a private cache, and every test that needs one shares it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from quality import classifier as clf
from quality.evaluation import EvaluationError, evaluate
from quality.features import ClassifierFeatures, FeaturesUnavailable, InceptionFeatures
from quality.sources import Sampler
from tests.helpers import Noise, RealImages, mixture, untrained_generator
from train import data
from train.config import TrainConfig

QUICK = clf.ClassifierSettings(epochs=2, train_limit=10_000)
NZ = 100


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[clf.Classifier, Path]:
    """The session's Fashion-MNIST classifier at 32 px, and the cache home it was saved under."""
    home = tmp_path_factory.mktemp("classifier-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(home))
        return clf.load_or_train("fashion-mnist", None, 32, 0, QUICK), home


@pytest.fixture(scope="session")
def train_split() -> data.ImageData:
    return data.load(TrainConfig(split="train"))


def _evaluate(sampler: Sampler, features: ClassifierFeatures, n: int = 500, **kw: Any
              ) -> dict[str, Any]:
    args: dict[str, Any] = {"dataset": "fashion-mnist", "data_dir": None, "image_size": 32,
                            "channels": 1, "nz": NZ, "n": n, "features": features,
                            "class_names": []}
    return evaluate(sampler, **{**args, **kw})


@pytest.mark.fashion_mnist
def test_classifier_learns_fashion_mnist(trained: tuple[clf.Classifier, Path]) -> None:
    classifier, home = trained
    assert classifier.test_accuracy > 0.8  # measured: 0.869 (0.918 with the default settings)
    assert classifier.class_names[7] == "Sneaker" and classifier.extra["train_images"] == 10_000
    saved = torch.load(home / "dcgan-forge" / "classifiers" / "fashion-mnist-32px-1ch.pt",
                       weights_only=True)
    assert saved["format"] == clf.FORMAT and saved["test_accuracy"] == classifier.test_accuracy
    assert saved["settings"]["train_limit"] == 10_000 and saved["image_size"] == 32
    x = data.to_model_input(torch.zeros(3, 1, 28, 28, dtype=torch.uint8), 32)
    assert classifier.features(x).shape == (3, clf.FEATURES)
    assert classifier.logits(x).shape == (3, 10)


@pytest.mark.fashion_mnist
def test_cached_classifier_is_loaded_not_retrained(trained: tuple[clf.Classifier, Path],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    classifier, home = trained
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    # Other settings would take a minute to train; the cached classifier comes back instead.
    again = clf.load_or_train("fashion-mnist", None, 32, 0, clf.ClassifierSettings(epochs=5))
    assert again.settings == QUICK and again.test_accuracy == classifier.test_accuracy
    for name, weight in classifier.net.state_dict().items():
        assert torch.equal(weight, again.net.state_dict()[name]), name


@pytest.mark.fashion_mnist
def test_unreadable_cache_is_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = clf.cache_path("fashion-mnist", None, 64, 1)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"half a file")
    tiny = clf.ClassifierSettings(epochs=1, train_limit=3000)
    classifier = clf.load_or_train("fashion-mnist", None, 64, 0, tiny)
    assert classifier.image_size == 64 and classifier.test_accuracy > 0.6
    assert clf.load(path).settings == tiny
    x = data.to_model_input(torch.zeros(2, 1, 28, 28, dtype=torch.uint8), 64)  # (2, 1, 64, 64)
    assert classifier.features(x).shape == (2, clf.FEATURES)


@pytest.mark.fashion_mnist
def test_real_images_score_near_zero_noise_far_and_mixtures_between(
        trained: tuple[clf.Classifier, Path], train_split: data.ImageData) -> None:
    features = ClassifierFeatures(trained[0])
    real = RealImages(train_split, 32)  # train images against the test split
    noise = Noise(1, 32)
    samplers: dict[str, Sampler] = {
        "real": real, "quarter noise": mixture(real, noise, 0.25),
        "half noise": mixture(real, noise, 0.5), "noise": noise,
        "untrained G": untrained_generator(NZ, 1, 32)}
    runs = {name: _evaluate(sampler, features) for name, sampler in samplers.items()}
    fid = {name: r["fid"] for name, r in runs.items()}
    assert fid["real"] < fid["quarter noise"] < fid["half noise"] < fid["noise"], fid
    assert fid["real"] < 0.05 * min(fid["noise"], fid["untrained G"]), fid
    kid = {name: r["kid_mean"] for name, r in runs.items()}
    assert kid["quarter noise"] < kid["half noise"] < kid["noise"], kid
    assert abs(kid["real"]) < 0.25 * kid["quarter noise"], kid  # unbiased: about 0 for real
    assert runs["real"]["precision"] > 0.8 and runs["real"]["recall"] > 0.8
    # An untrained G emits nearly one image: its features collapse onto one point, whose own
    # k-NN ball is tiny, so almost no real image lies in it (recall about 0). Its precision is
    # not bounded: whether that one point falls inside some real image's ball depends on the
    # classifier's weights, which depend on the CPU's kernels (0.0 on AVX2, 1.0 on AVX-512).
    collapsed = runs["untrained G"]
    assert collapsed["recall"] < 0.1 and 0.0 <= collapsed["precision"] <= 1.0, collapsed
    result = runs["real"]
    assert json.loads(json.dumps(result)) == result
    assert result["features"] == features.describe()
    assert result["features"]["name"] == "classifier" and result["features"]["dataset"] == \
        "fashion-mnist"
    assert (result["n_fake"], result["n_real"], result["split"]) == (500, 500, "test")
    assert result["classifier"] == {"test_accuracy": trained[0].test_accuracy}


@pytest.mark.fashion_mnist
def test_class_accuracy_of_a_conditional_sampler(trained: tuple[clf.Classifier, Path],
                                                 train_split: data.ImageData) -> None:
    classifier = trained[0]
    features = ClassifierFeatures(classifier)
    names = classifier.class_names
    right = _evaluate(RealImages(train_split, 32), features, class_names=names)["classifier"]
    wrong = _evaluate(RealImages(train_split, 32, label_shift=1), features,
                      class_names=names)["classifier"]
    assert set(right["class_accuracy"]) == set(names)
    # 50 real images per class: about as right as on the test split; the next class: rarely.
    assert abs(right["mean_class_accuracy"] - classifier.test_accuracy) < 0.08
    assert right["class_accuracy"]["Trouser"] > 0.9
    assert wrong["mean_class_accuracy"] < 0.15
    with pytest.raises(EvaluationError, match="classes"):
        _evaluate(RealImages(train_split, 32), features, class_names=names[::-1])


def _save_pngs(folder: Path, images: torch.Tensor) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):  # (1, 28, 28) uint8 each
        Image.fromarray(np.asarray(im[0])).save(folder / f"{i}.png")


@pytest.mark.fashion_mnist
def test_folder_datasets(trained: tuple[clf.Classifier, Path], train_split: data.ImageData,
                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    test = data.load(TrainConfig(split="test"))
    assert test.labels is not None
    features, sampler = ClassifierFeatures(trained[0]), RealImages(train_split, 32)
    # Flat: all of its 60 images are the real set; no labels, so no class scores.
    _save_pngs(tmp_path / "flat", test.images[:60])
    flat = _evaluate(sampler, features, n=100, dataset="folder", data_dir=str(tmp_path / "flat"))
    assert (flat["n_fake"], flat["n_real"], flat["split"]) == (100, 60, "all")
    assert "classifier" not in flat
    # Class sub-folders: a classifier of its own, trained on 90% and tested on 10% of them.
    labelled = tmp_path / "labelled"
    for c in (1, 7, 8):  # trousers, sneakers, bags
        _save_pngs(labelled / test.class_names[c], test.images[test.labels == c][:40])
    result = _evaluate(sampler, features, n=100, dataset="folder", data_dir=str(labelled))
    assert "classifier" not in result  # unconditional, other features: none trained just for it
    assert not clf.cache_path("folder", str(labelled), 32, 1).exists()
    cached = clf.load_or_train("folder", str(labelled), 32, 1)
    result = _evaluate(sampler, features, n=100, dataset="folder", data_dir=str(labelled))
    assert result["classifier"]["test_accuracy"] == cached.test_accuracy  # once cached, reported
    assert cached.extra["train_images"] == 108 and cached.class_names == ["Bag", "Sneaker",
                                                                          "Trouser"]
    # A changed folder is a different dataset: its classifier is trained again.
    _save_pngs(labelled / "Bag" / "more", test.images[test.labels == 8][40:50])
    assert clf.load_or_train("folder", str(labelled), 32, 1).extra["train_images"] == 117


@pytest.mark.fashion_mnist
def test_samplers_that_do_not_fit_are_refused(trained: tuple[clf.Classifier, Path]) -> None:
    features = ClassifierFeatures(trained[0])
    with pytest.raises(EvaluationError, match=r"shape \(250, 3, 32, 32\), not \(250, 1, 32, 32\)"):
        _evaluate(Noise(3, 32), features)
    with pytest.raises(EvaluationError, match="at least 10"):
        _evaluate(Noise(1, 32), features, n=5)


def test_inception_without_its_weights_says_what_to_do(tmp_path: Path) -> None:
    # Without torch-fidelity, or with it and a missing file: one line naming all three ways out.
    with pytest.raises(FeaturesUnavailable, match=r"dcgan-forge\[inception\].*--inception-weights"
                                                  r".*--features classifier"):
        InceptionFeatures(weights_path=tmp_path / "missing.pth")


def test_inception_features_from_a_weights_file(tmp_path: Path) -> None:
    pytest.importorskip("torch_fidelity")
    from torchvision.models import inception_v3

    # Untrained weights in the FID Inception layout (torchvision's Inception3, 1008 classes).
    path = tmp_path / "inception.pth"
    torch.save(inception_v3(weights=None, aux_logits=False, init_weights=False,
                            num_classes=1008).state_dict(), path)
    features = InceptionFeatures(weights_path=path)
    images = torch.rand(2, 1, 32, 32) * 2 - 1  # grayscale at 32 px: made 3-channel and 299 px
    assert features(images).shape == (2, 2048)
    assert features.describe()["name"] == "inception-v3" and features.describe()["dim"] == 2048


@pytest.mark.fashion_mnist
def test_a_briefly_trained_generator_lands_between_real_and_untrained(
        trained: tuple[clf.Classifier, Path], train_split: data.ImageData,
        tmp_path: Path) -> None:
    """Real training moves FID the right way: 300 steps of a small DCGAN on the train split
    score clearly better than its initial weights and far worse than real images."""
    from train import checkpoint
    from train.run import run

    out = run({"ngf": 16, "ndf": 16, "batch_size": 64, "max_steps": 300, "log_every": 100,
               "checkpoint_every": 10**6, "device": "cpu", "precision": "fp32"},
              out=str(tmp_path / "run"))
    g = checkpoint.build_generator(checkpoint.load(out))

    def trained_g(z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        with torch.inference_mode():
            return g(z)

    features = ClassifierFeatures(trained[0])
    fid = {name: _evaluate(sampler, features)["fid"] for name, sampler in (
        ("real", RealImages(train_split, 32)), ("trained G", trained_g),
        ("untrained G", untrained_generator(NZ, 1, 32)))}
    assert fid["real"] < fid["trained G"] < 0.8 * fid["untrained G"], fid  # measured 449 vs 656
