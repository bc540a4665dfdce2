"""`--arch mlp`: the fully connected G and D, their config, and real training runs with them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.helpers import train_tiny
from train import checkpoint
from train.config import LOSSES, ConfigError, TrainConfig
from train.mlp import MLPDiscriminator, MLPGenerator
from train.model import init_weights
from train.nets import build_discriminator, build_generator
from train.run import run

# A tiny mlp run at Fashion-MNIST's native 28 px (TINY's image_size 32 would pad it).
MLP: dict[str, object] = {"arch": "mlp", "image_size": 0, "mlp_hidden_g": (32,),
                          "mlp_hidden_d": (16,)}


def test_shapes_at_native_and_configured_sizes() -> None:
    g = MLPGenerator(16, [64, 32], 1, 28)
    d = MLPDiscriminator([32, 8], 1, 28)
    z = torch.randn(5, 16)
    images = g(z)
    assert images.shape == (5, 1, 28, 28)
    assert torch.equal(g(z[:, :, None, None]), images)  # (B, nz, 1, 1) latents work too
    assert images.abs().max() <= 1  # Tanh
    assert d(images).shape == (5,)
    linears = [m for m in g.main if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(16, 64), (64, 32),
                                                                   (32, 784)]
    rgb = MLPGenerator(16, [32], 3, 32)
    assert rgb(z).shape == (5, 3, 32, 32)
    assert MLPDiscriminator([8], 3, 32)(rgb(z)).shape == (5,)


def test_classic_layout_and_leaky_relu() -> None:
    cfg = TrainConfig(arch="mlp", channels=1)
    g, d = build_generator(cfg), build_discriminator(cfg)
    assert isinstance(g, MLPGenerator) and isinstance(d, MLPDiscriminator)
    assert cfg.image_size == 28  # Fashion-MNIST's native size: no padding
    assert [m.out_features for m in g.modules() if isinstance(m, nn.Linear)] == [256, 784]
    assert [m.out_features for m in d.modules() if isinstance(m, nn.Linear)] == [128, 1]
    for net in (g, d):
        assert any(isinstance(m, nn.LeakyReLU) for m in net.modules())
        assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
    assert isinstance(g.main[-1], nn.Tanh)
    normed = build_generator(TrainConfig(arch="mlp", channels=1, mlp_batch_norm=True))
    assert sum(isinstance(m, nn.BatchNorm1d) for m in normed.modules()) == 1


def test_init_weights_covers_linear_and_norm_layers() -> None:
    torch.manual_seed(0)
    g = MLPGenerator(100, [512, 256], 1, 28, batch_norm=True).apply(init_weights)
    d = MLPDiscriminator([256, 128], 1, 28, norm="layer").apply(init_weights)
    for net in (g, d):
        for m in net.modules():
            if isinstance(m, nn.Linear):
                assert abs(float(m.weight.detach().std()) - 0.02) < 0.004
                assert m.bias is None or not m.bias.any()
            if isinstance(m, (nn.BatchNorm1d, nn.LayerNorm)):
                assert abs(float(m.weight.detach().mean()) - 1) < 0.01 and not m.bias.any()
    assert sum(isinstance(m, nn.LayerNorm) for m in d.modules()) == 1  # none on the input layer


def test_conditional_nets_join_and_project_the_label() -> None:
    torch.manual_seed(0)
    g = MLPGenerator(16, [32], 1, 28, num_classes=10, label_dim=4).eval()
    z = torch.randn(1, 16).expand(10, 16)  # one latent, every class
    with torch.no_grad():
        out = g(z, torch.arange(10))
    assert all(not torch.equal(out[0], out[i]) for i in range(1, 10))
    assert g.main[0].in_features == 16 + 4
    with pytest.raises(ValueError, match="pass labels"):
        g(z)
    d = MLPDiscriminator([8], 1, 28, num_classes=10)
    x, y = torch.randn(3, 1, 28, 28), torch.tensor([0, 4, 9])
    with torch.no_grad():
        phi = d.body(x)  # (3, 8)
        torch.testing.assert_close(d(x, y), d.head(phi).flatten() + (d.embed(y) * phi).sum(1))


def test_config_sizes_and_widths() -> None:
    assert TrainConfig().image_size == 32 and TrainConfig().arch == "dcgan"
    assert TrainConfig(arch="mlp", dataset="cifar10").image_size == 32
    assert TrainConfig(arch="mlp", image_size=64).image_size == 64
    assert TrainConfig(arch="mlp").resolved_d_norm == "none"
    assert TrainConfig(arch="mlp", mlp_hidden_g=[512, 256]).mlp_hidden_g == (512, 256)
    with pytest.raises(ConfigError, match="not supported by dcgan.*--arch mlp"):
        TrainConfig(image_size=28)
    with pytest.raises(ConfigError, match="not supported by mlp"):
        TrainConfig(arch="mlp", image_size=4)
    with pytest.raises(ConfigError, match="mlp_hidden_d needs at least one"):
        TrainConfig(arch="mlp", mlp_hidden_d=())
    with pytest.raises(ConfigError, match="unknown arch"):
        TrainConfig(arch="resnet")


@pytest.mark.fashion_mnist
@pytest.mark.parametrize("loss", LOSSES)
def test_every_loss_trains_a_few_real_steps(tmp_path: Path, loss: str) -> None:
    d_steps = 2 if loss.startswith("wgan") else 1
    out = train_tiny(tmp_path / loss, **MLP, loss=loss, d_steps=d_steps, max_steps=2)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss/d"] for r in rows if "loss/d" in r]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    ckpt = checkpoint.load(out)
    assert ckpt["config"]["arch"] == "mlp" and ckpt["config"]["image_size"] == 28
    g = checkpoint.build_generator(ckpt)
    assert isinstance(g, MLPGenerator)
    with torch.no_grad():
        assert g(torch.randn(3, 100)).shape == (3, 1, 28, 28)
    init = MLPGenerator(100, [32], 1, 28)
    init.load_state_dict(ckpt["generator"])  # the same layout, weights moved by training
    assert (out / "samples" / "step-2.png").is_file()


@pytest.mark.fashion_mnist
def test_conditional_mlp_trains_with_batch_norm(tmp_path: Path) -> None:
    out = train_tiny(tmp_path / "cond", **{**MLP, "mlp_hidden_g": (32, 16)}, conditional=True,
                     mlp_batch_norm=True, max_steps=2)
    ckpt = checkpoint.load(out)
    g = checkpoint.build_generator(ckpt)
    assert g.num_classes == 10 and ckpt["class_names"][7] == "Sneaker"
    assert sum(isinstance(m, nn.BatchNorm1d) for m in g.modules()) == 2
    with torch.no_grad():
        a, b = g(torch.zeros(2, 100), torch.tensor([0, 7]))
    assert a.shape == (1, 28, 28) and not torch.equal(a, b)


@pytest.mark.fashion_mnist
def test_resume_refuses_a_change_of_architecture(tmp_path: Path) -> None:
    out = train_tiny(tmp_path / "run", **MLP, max_steps=2)
    with pytest.raises(ConfigError, match="--arch cannot change when resuming") as e:
        run({"arch": "dcgan"}, out=str(out), resume=True)
    assert "\n" not in str(e.value) and "arch='mlp'" in str(e.value)
    with pytest.raises(ConfigError, match="--mlp-hidden-g cannot change"):
        run({"mlp_hidden_g": (64,)}, out=str(out), resume=True)
    run({"max_steps": 3, "mlp_hidden_g": (32,)}, out=str(out), resume=True)  # same: fine
    assert checkpoint.load(out)["step"] == 3
