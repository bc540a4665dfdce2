"""The floor of the scores: real train images against real test images in the same features.

A generator that reproduced the data distribution perfectly would still not score FID 0 on a
finite sample: two samples of the same distribution differ. The best it could do is roughly what
another sample of real images gets, so `gan eval` prints that beside its score. It is computed
once per (classifier, sample count, seed) and cached beside the classifier's own file
(`<classifier>.floor.json`), since the classifier is what defines the space.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from gan.atomic import atomic_write
from quality import classifier as clf
from quality import scores
from quality.features import ClassifierFeatures, FeatureExtractor
from train import data
from train.config import TrainConfig

log = logging.getLogger(__name__)


def floor_path(features: ClassifierFeatures, data_dir: str | None) -> Path:
    c = features.classifier
    return clf.cache_path(c.dataset, data_dir, c.image_size, c.channels).with_suffix(".floor.json")


def real_floor(features: FeatureExtractor, test_feats: torch.Tensor, *, data_dir: str | None,
               seed: int, batch_size: int = 250) -> dict[str, Any] | None:
    """FID and KID of n real train images against the n real test images whose features are
    `test_feats` (n, D); None where there is no such pair (inception features, folder datasets,
    which have one split)."""
    if not isinstance(features, ClassifierFeatures) or features.classifier.dataset == "folder":
        return None
    path = floor_path(features, data_dir)
    key = f"n={test_feats.shape[0]} seed={seed}"
    cached = _read(path, features.describe())
    if key in cached:
        return cached[key]
    c = features.classifier
    train = data.load(TrainConfig(dataset=c.dataset, data_dir=data_dir, split="train",
                                  image_size=c.image_size, channels=c.channels))
    n = min(test_feats.shape[0], train.images.shape[0])
    keep = torch.randperm(train.images.shape[0],
                          generator=torch.Generator().manual_seed(seed + 1))[:n]
    with torch.inference_mode():
        train_feats = torch.cat([
            features(data.to_model_input(train.images[keep[i:i + batch_size]], c.image_size))
            .double() for i in range(0, n, batch_size)])  # (n, D)
    kid_mean, kid_std = scores.kid(test_feats, train_feats, seed=seed)
    result = {"fid": scores.fid(test_feats, train_feats), "kid_mean": kid_mean,
              "kid_std": kid_std, "n": n, "what": "real train vs real test images"}
    cached[key] = result
    text = json.dumps({"features": features.describe(), "floors": cached}, indent=2) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))
    log.info("score floor (real train vs test, %d images): FID %.4g, cached in %s", n,
             result["fid"], path)
    return result


def _read(path: Path, describe: dict[str, Any]) -> dict[str, Any]:
    """The cached floors of exactly this classifier ({} if none, unreadable, or another one)."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(saved, dict) or saved.get("features") != json.loads(json.dumps(describe)):
        return {}
    floors = saved.get("floors", {})
    return floors if isinstance(floors, dict) else {}
