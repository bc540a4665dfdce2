"""An `--arch mlp` model through the same tools as DCGAN: export with parity, the contract's
metadata, `gan eval` at 28 px, serving (Generate), `gan generate` and interpolation."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from export.artifact import export
from export.config import ExportConfig
from train import checkpoint, data
from train import classifier as clf
from train.config import TrainConfig

from .test_cli import invoke


@pytest.mark.parametrize("output", ["float", "uint8"])
def test_export_passes_parity_and_names_the_architecture(mlp_run, tmp_path, output):
    result = export(ExportConfig(checkpoint=str(mlp_run), out=str(tmp_path / "m.onnx"),
                                 output=output))
    assert result.report.passed, result.report.lines()
    meta = {m.key: m.value for m in onnx.load(str(result.model)).metadata_props}
    assert meta["architecture"] == "mlp"
    assert (meta["height"], meta["width"], meta["channels"]) == ("28", "28", "1")
    assert json.loads(meta["train_config"])["arch"] == "mlp"
    ops = {n.op_type for n in onnx.load(str(result.model)).graph.node}
    assert "ConvTranspose" not in ops and "BatchNormalization" not in ops  # BN folded or gone


def test_metadata_names_dcgan_for_runs_from_before_arch():
    from export.onnx import metadata

    config = {"image_size": 32, "channels": 1, "nz": 100, "dataset": "fashion-mnist"}
    meta = metadata(config, output="float", precision="fp32", opset=18, step=0,
                    checkpoint_sha256="0" * 64)
    assert meta["architecture"] == "dcgan"
    assert metadata({**config, "arch": "mlp"}, output="float", precision="fp32", opset=18,
                    step=0, checkpoint_sha256="0" * 64)["architecture"] == "mlp"


def test_served_mlp_model_answers_generate_as_it_runs_locally(mlp_model, tmp_path):
    """A real server on port 0: Generate gives 28x28 images, the same pixels as the local model
    (`gan generate --model`), and interpolation works through both."""
    from serve.client import GeneratorClient
    from tests.serve.support import reference, running

    with running(mlp_model.model, max_batch_size=4) as server:
        with GeneratorClient(server.address) as client:
            got = client.generate(6, seed=5, format="raw_float32")
            info = client.model_info()
        assert [im.shape for im in got.images] == [(28, 28, 1)] * 6
        want = reference(mlp_model.model, seed=5, n=6)  # (6, 1, 28, 28), batch 1 each
        np.testing.assert_allclose(np.stack(got.images).transpose(0, 3, 1, 2), want, atol=1e-5)
        assert (info.height, info.width) == (28, 28)
        remote = invoke("generate", "--server", server.address, "--interpolate", "1", "2",
                        "--steps", "5", "--out", str(tmp_path / "remote.png"))
        assert remote.exit_code == 0, remote.output
    local = invoke("generate", "--model", str(mlp_model.model), "--interpolate", "1", "2",
                   "--steps", "5", "--out", str(tmp_path / "local.png"))
    assert local.exit_code == 0, local.output
    assert (tmp_path / "remote.png").read_bytes() == (tmp_path / "local.png").read_bytes()


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
    cached = sorted(p.name for p in clf.cache_path("fashion-mnist", None, 32, 1).parent.iterdir())
    assert cached == ["fashion-mnist-32px-1ch.pt"]  # no second classifier was trained
    cfg = checkpoint.config_of(checkpoint.load(mlp_run))
    assert cfg == TrainConfig.from_dict(cfg.to_dict())  # tuples of widths survive the round trip
