"""Sample quality of a generator against the real test split: FID, KID, precision/recall, and
(for labelled data) what the dataset's classifier makes of the samples.

The generator is anything that maps latents to images (`quality.sources.Sampler`): a torch module
or an ONNX session, owned by the caller. Everything here runs on the CPU in inference mode, in
batches. `run` is `gan eval`; `TrainingEval` is the training loop's one hook (--eval-every).
"""

from __future__ import annotations

import functools
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch

from gan.atomic import atomic_write
from gan.errors import UserError
from quality import classifier as clf
from quality import scores
from quality.config import EvalConfig
from quality.features import ClassifierFeatures, FeatureExtractor, make_features
from quality.sources import Sampler, open_source, torch_sampler
from train import data
from train.config import MIN_EVAL_IMAGES, ConfigError, TrainConfig

log = logging.getLogger(__name__)

PR_NEIGHBOURS = 3  # k of precision/recall, as in Kynkaanniemi et al.


class EvaluationError(UserError):
    """The generator and the dataset do not fit together."""


def evaluate(sampler: Sampler, *, dataset: str, data_dir: str | None, image_size: int,
             channels: int, nz: int, n: int, features: FeatureExtractor, class_names: list[str],
             seed: int = 0, batch_size: int = 250) -> dict[str, Any]:
    """Score n samples (seeded z ~ N(0, I); labels arange(n) % classes when class_names is not
    empty) against n real test images (all of them if there are fewer) in `features`' space.
    Returns a JSON-serialisable dict naming the extractor, the sample counts and the scores."""
    # below MIN_EVAL_IMAGES even the k-NN radii of precision/recall are noise
    if n < MIN_EVAL_IMAGES:
        raise EvaluationError(f"n must be at least {MIN_EVAL_IMAGES} to estimate the scores, "
                              f"got {n}")
    started = time.perf_counter()
    real, split = _real_images(dataset, data_dir, image_size, channels, n, seed)
    classifier = _classifier(features, dataset, data_dir, image_size, real.channels,
                             needed=bool(class_names))
    if class_names and classifier is not None and classifier.class_names != class_names:
        raise EvaluationError(f"the generator's classes {class_names} are not {dataset}'s "
                              f"{classifier.class_names}")
    real_feats = _features(features, real.images, image_size, batch_size)  # (n_real, D)
    fake_feats, predicted, labels = _sample(sampler, features, classifier, n=n, nz=nz,
                                            classes=len(class_names), seed=seed,
                                            batch_size=batch_size,
                                            shape=(real.channels, image_size, image_size))
    kid_mean, kid_std = scores.kid(real_feats, fake_feats, seed=seed)
    precision, recall = scores.precision_recall(real_feats, fake_feats, k=PR_NEIGHBOURS)
    result: dict[str, Any] = {
        "features": features.describe(), "dataset": dataset, "split": split,
        "image_size": image_size, "seed": seed, "n_fake": n, "n_real": real.images.shape[0],
        "fid": scores.fid(real_feats, fake_feats), "kid_mean": kid_mean, "kid_std": kid_std,
        "precision": precision, "recall": recall, "pr_k": PR_NEIGHBOURS,
    }
    if classifier is not None:
        result["classifier"] = _class_report(classifier, predicted, labels, class_names)
    result["seconds"] = round(time.perf_counter() - started, 1)
    log.info("evaluated %d samples in %s features in %.0f s: FID %.3f", n, features.name,
             result["seconds"], result["fid"])
    return result


@functools.lru_cache(maxsize=4)  # --eval-every asks for the same set each time (shared: read only)
def _real_images(dataset: str, data_dir: str | None, image_size: int, channels: int, n: int,
                 seed: int) -> tuple[data.ImageData, str]:
    """The test split (a folder: all of it), or a seeded random n of it; and the split's name."""
    split = "all" if dataset == "folder" else "test"
    real = data.load(TrainConfig(dataset=dataset, data_dir=data_dir, split="test",
                                 image_size=image_size, channels=channels))
    if channels and real.channels != channels:
        raise EvaluationError(f"the generator makes {channels}-channel images but {dataset} has "
                              f"{real.channels}")
    if real.images.shape[0] < MIN_EVAL_IMAGES:
        raise EvaluationError(f"{dataset} has {real.images.shape[0]} images: too few to compare "
                              f"with (at least {MIN_EVAL_IMAGES})")
    if n < real.images.shape[0]:
        keep = torch.randperm(real.images.shape[0],
                              generator=torch.Generator().manual_seed(seed))[:n]
        labels = None if real.labels is None else real.labels[keep]
        real = data.ImageData(real.images[keep], labels, real.class_names)
    return real, split


def _classifier(features: FeatureExtractor, dataset: str, data_dir: str | None,
                image_size: int, channels: int, needed: bool) -> clf.Classifier | None:
    """The dataset's classifier (the features' own if they are this dataset's classifier), or
    None for a folder without class sub-folders. Unless `needed` (class accuracy of a
    conditional generator), only an already cached one: a minute of training just to report its
    own test accuracy beside other features is not worth it."""
    if isinstance(features, ClassifierFeatures) and dataset != "folder" and \
            (features.classifier.dataset, features.classifier.image_size) == (dataset, image_size):
        return features.classifier
    try:
        if not needed:
            path = clf.cache_path(dataset, data_dir, image_size,
                                  clf.resolve_channels(dataset, channels))
            return clf.load(path) if path.is_file() else None
        return clf.load_or_train(dataset, data_dir, image_size, channels)
    except clf.ClassifierError as e:
        log.info("no class scores: %s", e)
        return None


def _features(extract: FeatureExtractor, images: torch.Tensor, image_size: int,
              batch_size: int) -> torch.Tensor:
    """uint8 (N, C, h, w) -> float64 (N, D), prepared as the training pipeline does."""
    with torch.inference_mode():
        return torch.cat([extract(data.to_model_input(images[i:i + batch_size], image_size))
                          .double() for i in range(0, images.shape[0], batch_size)])


def _sample(sampler: Sampler, features: FeatureExtractor, classifier: clf.Classifier | None, *,
            n: int, nz: int, classes: int, seed: int, batch_size: int, shape: tuple[int, int, int]
            ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """n samples' features (n, D), and for a conditional sampler with a classifier the predicted
    classes (n,) and the requested ones (n,)."""
    z = torch.randn(n, nz, generator=torch.Generator().manual_seed(seed))  # (n, nz) float32
    labels = torch.arange(n) % classes if classes else None  # balanced: n // classes each
    feats, predicted = [], []
    with torch.inference_mode():
        for i in range(0, n, batch_size):
            images = sampler(z[i:i + batch_size],
                             None if labels is None else labels[i:i + batch_size])
            images = images.to("cpu", torch.float32)  # an fp16 or CUDA sampler: no harm done
            want = (z[i:i + batch_size].shape[0], *shape)
            if tuple(images.shape) != want:
                raise EvaluationError(f"the sampler made images of shape {tuple(images.shape)}, "
                                      f"not {want}")
            feats.append(features(images).double())
            if labels is not None and classifier is not None:
                predicted.append(classifier.logits(images).argmax(1))
    return torch.cat(feats), (torch.cat(predicted) if predicted else None), labels


def _class_report(classifier: clf.Classifier, predicted: torch.Tensor | None,
                  labels: torch.Tensor | None, class_names: list[str]) -> dict[str, Any]:
    """The classifier's own test accuracy; for a conditional generator, the fraction of the
    images generated for each class that the classifier assigns to it, and their mean."""
    report: dict[str, Any] = {"test_accuracy": classifier.test_accuracy}
    if predicted is not None and labels is not None:
        per_class = {name: float((predicted[labels == c] == c).double().mean())
                     for c, name in enumerate(class_names) if bool((labels == c).any())}
        report["class_accuracy"] = per_class
        report["mean_class_accuracy"] = sum(per_class.values()) / len(per_class)
    return report


def default_out(source: str) -> Path:
    """eval.json in a run directory, else <name>.eval.json beside the file."""
    p = Path(source)
    return p / "eval.json" if p.is_dir() else p.with_suffix(".eval.json")


def run(config: EvalConfig) -> tuple[dict[str, Any], Path]:
    """Score config.source; returns the report and where it was written."""
    source = open_source(config)
    cfg = source.train_config
    data_dir = config.data_dir or cfg.data_dir
    features = make_features(config.features, dataset=cfg.dataset, data_dir=data_dir,
                             image_size=cfg.image_size, channels=cfg.channels,
                             inception_weights=config.inception_weights,
                             device=source.device)
    log.info("scoring %d images of %s with %s features", config.num_images, config.source,
             config.features)
    report = evaluate(source.sample, nz=source.nz, dataset=cfg.dataset, data_dir=data_dir,
                      image_size=cfg.image_size, channels=cfg.channels, n=config.num_images,
                      features=features, class_names=source.class_names, seed=config.seed)
    report = {"source": source.about, **report}
    out = Path(config.out) if config.out else default_out(config.source)
    text = json.dumps(report, indent=2) + "\n"
    atomic_write(out, lambda f: f.write(text.encode()))
    return report, out


class TrainingEval:
    """--eval-every: the dataset classifier's features, made once before the first step (trained
    here if not cached), then `score` of the sampling generator at each evaluation."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        try:
            self.features = make_features("classifier", dataset=cfg.dataset,
                                          data_dir=cfg.data_dir, image_size=cfg.image_size,
                                          channels=cfg.channels)
        except clf.ClassifierError as e:
            raise ConfigError(f"--eval-every scores with the dataset's classifier, and none can "
                              f"be made here: {e}") from None

    def score(self, g: torch.nn.Module, device: torch.device, class_names: list[str]
              ) -> dict[str, Any]:
        """evaluate() of generator g (eval mode, on `device`) on --eval-images images."""
        cfg = self.cfg
        return evaluate(torch_sampler(g, device), nz=cfg.nz, dataset=cfg.dataset,
                        data_dir=cfg.data_dir, image_size=cfg.image_size, channels=cfg.channels,
                        n=cfg.eval_images, features=self.features, class_names=class_names,
                        seed=cfg.seed)
