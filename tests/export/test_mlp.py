"""An `--arch mlp` model through the same tools as DCGAN: export with parity, the contract's
metadata, serving (Generate), `gan generate` and interpolation."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from export.artifact import export
from export.config import ExportConfig
from tests.helpers import invoke, reference, running


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
    from gan.contract import metadata

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
