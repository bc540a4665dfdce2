"""The dataset classifier on real Fashion-MNIST, and the Inception features.

One classifier is trained per test session (a cheaper setting than the default: 10k images, two
epochs) into a private cache, and every test that needs one shares it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from train import classifier as clf
from train import data
from train.features import FeaturesUnavailable, InceptionFeatures

QUICK = clf.ClassifierSettings(epochs=2, train_limit=10_000)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[clf.Classifier, Path]:
    """The session's Fashion-MNIST classifier at 32 px, and the cache home it was saved under."""
    home = tmp_path_factory.mktemp("classifier-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(home))
        return clf.load_or_train("fashion-mnist", None, 32, 0, QUICK), home


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
