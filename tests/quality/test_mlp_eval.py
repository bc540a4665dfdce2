"""Scoring an `--arch mlp` model: 28 px images in the 32 px classifier's feature space."""

from __future__ import annotations

import json

import pytest
import torch

from quality import classifier as clf
from tests.helpers import invoke
from train import checkpoint, data
from train.config import TrainConfig


def test_classifier_scores_28px_images_as_their_32px_padding():
    """A 28 px image and its 32 px pipeline input (padded) have the same classifier features, so
    one classifier (cached at 32 px) scores both sizes in one feature space."""
    torch.manual_seed(0)
    net = clf.ClassifierNet(1, 10).eval()
    raw = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(net.features(data.to_model_input(raw, 28)),
                                   net.features(data.to_model_input(raw, 32)))
    assert clf.trained_size("fashion-mnist", 28) == 32
    assert clf.trained_size("folder", 28) == 28  # a folder decoded at 28 px is no padding
    assert clf.cache_path("mnist", None, 28, 1) == clf.cache_path("mnist", None, 32, 1)


@pytest.mark.fashion_mnist
@pytest.mark.usefixtures("quick_classifier")
def test_eval_of_a_28px_model_uses_the_32px_classifier(mlp_run, mlp_model, tmp_path):
    outs = {}
    for name, source in (("ckpt", mlp_run), ("onnx", mlp_model.model)):
        outs[name] = tmp_path / f"{name}.json"
        result = invoke("eval", str(source), "-n", "100", "--out", str(outs[name]))
        assert result.exit_code == 0, result.output
    a, b = (json.loads(p.read_text()) for p in outs.values())
    assert a["image_size"] == 28 and a["features"]["image_size"] == 32
    assert a["fid"] > 0 and a["fid"] == pytest.approx(b["fid"], rel=1e-3)
    folder = clf.cache_path("fashion-mnist", None, 32, 1).parent
    cached = sorted(p.name for p in folder.glob("*.pt"))  # the floor's .json sits beside it
    assert cached == ["fashion-mnist-32px-1ch.pt"]  # no second classifier was trained
    cfg = checkpoint.config_of(checkpoint.load(mlp_run))
    assert cfg == TrainConfig.from_dict(cfg.to_dict())  # tuples of widths survive the round trip
