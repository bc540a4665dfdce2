"""Feature extractors for sample scores: images (B, C, S, S) in [-1, 1] -> features (B, D).

Scores from different extractors are different numbers: FID in a 256-d classifier space and FID
in Inception's 2048-d space share nothing but a name. So every extractor describes itself
(`describe()`), and that description is stored beside every score computed with it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Protocol

import torch

from gan.errors import UserError
from quality.classifier import FEATURES, Classifier

INCEPTION_WEIGHTS = "pt_inception-2015-12-05-6726825d.pth"  # pytorch-fid's name for the file
INCEPTION_FIX = (f"install dcgan-forge[inception] and pass --inception-weights FILE "
                 f"({INCEPTION_WEIGHTS}, the FID Inception-v3 weights), or use --features "
                 "classifier")


class FeaturesUnavailable(UserError):
    """The requested feature extractor cannot be built here."""


class FeatureExtractor(Protocol):
    """What `quality.evaluation` needs of an extractor."""

    name: str
    dim: int

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """float (B, C, S, S) in [-1, 1] -> float (B, dim) on the CPU."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable identity: name, dim, and whatever makes two extractors differ."""
        ...


class ClassifierFeatures:
    """Penultimate activations of the dataset's own classifier (quality.classifier)."""

    name = "classifier"
    dim = FEATURES

    def __init__(self, classifier: Classifier) -> None:
        self.classifier = classifier

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(images.cpu())

    def describe(self) -> dict[str, Any]:
        c = self.classifier
        return {"name": self.name, "dim": self.dim, "dataset": c.dataset,
                "image_size": c.image_size, "channels": c.channels,
                "test_accuracy": round(c.test_accuracy, 4), "settings": c.to_dict()["settings"]}


class InceptionFeatures:
    """The standard FID features: Inception-v3's 2048-d pool3 activations, as computed by
    torch-fidelity (the TensorFlow FID graph's weights and its bilinear resize to 299 px)."""

    name = "inception-v3"
    dim = 2048

    def __init__(self, weights_path: str | Path | None = None, device: str = "cpu") -> None:
        if importlib.util.find_spec("torch_fidelity") is None:
            raise FeaturesUnavailable(f"torch-fidelity is not installed: {INCEPTION_FIX}")
        if weights_path is not None:
            _check_weights(Path(weights_path))
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        try:
            self.model = FeatureExtractorInceptionV3(
                "inception-v3-compat", ["2048"],
                feature_extractor_weights_path=None if weights_path is None else str(weights_path))
        except Exception as e:  # no network (URLError), a wrong file (RuntimeError), ...
            why = "its weights cannot be downloaded" if weights_path is None else \
                f"{weights_path} is not the Inception-v3 FID weights"
            raise FeaturesUnavailable(f"Inception features: {why} ({type(e).__name__}): "
                                      f"{INCEPTION_FIX}") from e
        self.device = torch.device(device)
        self.model.to(self.device)
        self.weights = Path(weights_path).name if weights_path is not None else "download"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        # [-1, 1] -> uint8 values, grayscale -> 3 channels: what the extractor expects; it
        # resizes to 299 px itself.
        x = ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)  # (B, C, S, S)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        with torch.inference_mode():
            (feats,) = self.model(x.to(self.device))  # (B, 2048)
        return feats.float().cpu()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "dim": self.dim, "weights": self.weights,
                "implementation": "torch-fidelity FeatureExtractorInceptionV3"}


def _check_weights(path: Path) -> None:
    """A readable plain-tensor file: torch-fidelity loads it with weights_only=False, which would
    run any code a pickle carries, so it must load as plain tensors first."""
    if not path.is_file():
        raise FeaturesUnavailable(f"--inception-weights {path} does not exist: {INCEPTION_FIX}")
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise FeaturesUnavailable(f"--inception-weights {path} is not a plain PyTorch weights file "
                                  f"({type(e).__name__}): {INCEPTION_FIX}") from e


def make_features(name: str, *, dataset: str, data_dir: str | None, image_size: int,
                  channels: int, inception_weights: str | None = None,
                  device: str = "cpu") -> FeatureExtractor:
    """The extractor `name` ("classifier" or "inception") for a dataset at image_size; the
    classifier is loaded from its cache, or trained there first (about a minute)."""
    if name == "classifier":
        from quality.classifier import load_or_train

        return ClassifierFeatures(load_or_train(dataset, data_dir, image_size, channels))
    if name == "inception":
        return InceptionFeatures(inception_weights, device=device)
    raise FeaturesUnavailable(f"unknown features {name!r}: use classifier or inception")
