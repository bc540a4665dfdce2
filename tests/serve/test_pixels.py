"""The latent rule, pixel conversion and encodings: exact, documented behaviour."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gan import pictures
from serve import images, latent
from serve.model import ServedModel


def test_latent_rule_is_numpy_pcg64_standard_normal_float32() -> None:
    z = latent.from_seed(123, 5, 100)
    want = np.random.Generator(np.random.PCG64(123)).standard_normal((5, 100), dtype=np.float32)
    assert z.dtype == np.float32 and z.shape == (5, 100)
    np.testing.assert_array_equal(z, want)
    # rows are drawn in order: a shorter request is a prefix of a longer one
    np.testing.assert_array_equal(latent.from_seed(123, 2, 100), z[:2])
    assert not np.array_equal(latent.from_seed(124, 1, 100), z[:1])


def test_latent_rule_first_values_are_pinned() -> None:
    """If NumPy ever changed this stream, every client's images would change: fail loudly."""
    z = latent.from_seed(0, 1, 4)
    np.testing.assert_allclose(z[0], np.random.Generator(np.random.PCG64(0)).standard_normal(
        4, dtype=np.float32))
    assert z.tobytes().hex() == "3d0e8f3f4f8db1bf9867dabee5b74dbf"  # NumPy 2.4, 2026-11


@pytest.mark.parametrize("values, message", [
    ([0.0] * 7, "has 7 values, expected"),
    ([0.0] * 7 + [float("nan")], "NaN or Inf"),
    ([0.0] * 7 + [float("inf")], "NaN or Inf"),
])
def test_bad_latents_are_refused(values: list[float], message: str) -> None:
    with pytest.raises(latent.LatentError, match=message):
        latent.from_values(values, 2, 4)


def test_seed_range() -> None:
    with pytest.raises(latent.LatentError):
        latent.from_seed(-1, 1, 4)
    assert latent.from_seed(2**64 - 1, 1, 4).shape == (1, 4)
    assert 0 <= latent.random_seed() < 2**63


def test_uint8_conversion_matches_the_exported_uint8_graph(models: dict[str, Path]) -> None:
    """Pixels made by numpy from the float model == pixels made inside the uint8 model."""
    z = latent.from_seed(7, 9, 100)
    f = ServedModel(models["g32"], providers="cpu")
    u = ServedModel(models["g32_uint8"], providers="cpu")
    from_float = images.convert(f.run(z), "float", "raw_uint8")
    from_graph = images.convert(u.run(z), "uint8", "raw_uint8")
    assert from_float.shape == (9, 32, 32, 1) and from_float.dtype == np.uint8
    np.testing.assert_array_equal(from_float, from_graph)
    assert from_float.std() > 0  # real, varied images


def test_rounding_is_half_to_even_and_clamped() -> None:
    x = np.array([-2.0, -1.0, 0.0, 1.0, 3.0, 1 / 127.5 * 0.5 - 1], np.float32).reshape(1, 1, 1, 6)
    px = images.to_uint8(x)[0, 0, :, 0]
    assert px.tolist() == [0, 0, 128, 255, 255, 0]  # 127.5 -> 128 (even), 0.5 -> 0 (even)


def test_png_round_trip_grayscale_and_rgb() -> None:
    rng = np.random.default_rng(0)
    for c in (1, 3):
        im = rng.integers(0, 256, (8, 6, c), dtype=np.uint8)
        data = images.encode(im, "png")
        assert Image.open(io.BytesIO(data)).mode == ("L" if c == 1 else "RGB")
        np.testing.assert_array_equal(images.decode(data, "png", 8, 6, c), im)
        f = (im.astype(np.float32) / 127.5 - 1)
        np.testing.assert_array_equal(images.decode(images.encode(f, "raw_float32"),
                                                    "raw_float32", 8, 6, c), f)


def test_grid_layout() -> None:
    ims = [np.full((4, 4, 1), i + 1, np.uint8) for i in range(5)]
    g = pictures.grid(ims)  # 3 per row, 2 rows, 2 px padding
    assert g.shape == (2 * 6 + 2, 3 * 6 + 2, 1)
    assert g[2, 2, 0] == 1 and g[2, 8, 0] == 2 and g[8, 2, 0] == 4 and g[8, 14, 0] == 255
    assert g[0, :, 0].min() == 255  # padding is white, as in training's sample grids


def test_upscaling_makes_pictures_big_enough_to_see() -> None:
    assert pictures.auto_scale(138) == 4 and pictures.auto_scale(274) == 2  # >= 512 px wide
    assert pictures.auto_scale(32) == 16 and pictures.auto_scale(600) == 1
    assert pictures.auto_scale(138, scale=3) == 3
    rng = np.random.default_rng(2)
    for c in (1, 3):
        im = rng.integers(0, 256, (4, 6, c), dtype=np.uint8)
        big = pictures.upscale(im, 3)
        assert big.shape == (12, 18, c) and big.dtype == np.uint8
        np.testing.assert_array_equal(big[::3, ::3], im)  # nearest: exact blocks
        np.testing.assert_array_equal(big[2::3, 2::3], im)
        smooth = pictures.upscale(im, 3, "lanczos")
        assert smooth.shape == (12, 18, c) and not np.array_equal(smooth, big)
    assert pictures.upscale(im, 1) is im
    with pytest.raises(ValueError, match="nearest or lanczos"):
        pictures.upscale(im, 2, "bicubic")


@pytest.mark.parametrize("part", [1, 7, 50, 64])
def test_a_seed_drawn_in_parts_gives_the_same_rows(part: int) -> None:
    whole = latent.from_seed(5, 50, 100)
    parts = list(latent.from_seed_in_parts(5, 50, 100, part))
    assert [len(p) for p in parts] == [min(part, 50 - i) for i in range(0, 50, part)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_slerp_ends_are_exact_and_the_path_follows_the_formula() -> None:
    a, b = latent.from_seed(1, 1, 100)[0], latent.from_seed(2, 1, 100)[0]
    z = latent.slerp(a, b, np.arange(5) / 4)
    assert z.dtype == np.float32 and z.shape == (5, 100)
    assert np.array_equal(z[0], a) and np.array_equal(z[-1], b)
    omega = np.arccos(a.astype(np.float64) @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    mid = (np.sin(omega / 2) * (a.astype(np.float64) + b)) / np.sin(omega)  # t = 0.5
    np.testing.assert_allclose(z[2], mid, rtol=1e-6, atol=1e-6)
    assert latent.slerp(a, b, 0.5).shape == (100,)
    np.testing.assert_array_equal(latent.slerp(a, b, 0.5), z[2])
    np.testing.assert_array_equal(latent.interpolation(1, 2, 5, 100), z)
    with pytest.raises(latent.LatentError, match="at least 2 steps"):
        latent.interpolation(1, 2, 1, 100)


def test_slerp_keeps_the_norm_where_lerp_dips() -> None:
    a = np.array([3.0, 0.0, 0.0], np.float32)
    b = np.array([0.0, 3.0, 0.0], np.float32)  # orthogonal, same norm
    t = np.linspace(0, 1, 9)
    np.testing.assert_allclose(np.linalg.norm(latent.slerp(a, b, t), axis=1), 3.0, rtol=1e-6)
    assert np.linalg.norm((a + b) / 2) < 2.2  # lerp's midpoint: 3 / sqrt(2)
    np.testing.assert_allclose(latent.slerp(a, b, 0.5), [3 / np.sqrt(2)] * 2 + [0], rtol=1e-6)


def test_slerp_falls_back_to_lerp_for_parallel_antiparallel_and_zero() -> None:
    a = np.array([1.0, -2.0, 0.5], np.float32)
    t = np.array([0.0, 0.25, 0.5, 1.0])
    for b in (2 * a, -a, np.zeros(3, np.float32), a):
        want = ((1 - t)[:, None] * a + t[:, None] * b).astype(np.float32)
        got = latent.slerp(a, b, t)
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(latent.slerp(a, -a, 0.5), np.zeros(3, np.float32))


def test_gif_holds_the_frames_exactly() -> None:
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (8, 6, 1), dtype=np.uint8) for _ in range(4)]
    gif = Image.open(io.BytesIO(images.gif(frames)))
    assert gif.format == "GIF" and gif.n_frames == 4 and gif.info["loop"] == 0
    for i, want in enumerate(frames):
        gif.seek(i)
        np.testing.assert_array_equal(np.asarray(gif.convert("L")), want[:, :, 0])
