"""Pictures for people: one grid style for every grid this project writes (training's sample
grids, `gan generate`'s grids and strips), and upscaling so 32 px images are big enough to see.

Torch-free (numpy and Pillow), so training and serving share it. Images are (H, W, C) uint8 with
C = 1 (kept grayscale) or 3 (RGB).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

PADDING = 2
"""Pixels between images and around the grid (torchvision.utils.make_grid's layout)."""
PAD_VALUE = 255
"""White: the padding separates images with dark backgrounds (Fashion-MNIST) from each other."""
MIN_WIDTH = 512
"""The automatic scale (0) makes a picture at least this many pixels wide."""
RESAMPLE = {"nearest": Image.Resampling.NEAREST, "lanczos": Image.Resampling.LANCZOS}
"""Upscaling filters: nearest keeps every pixel's exact value (crisp blocks); lanczos smooths."""


def grid(images: list[np.ndarray], nrow: int = 0) -> np.ndarray:
    """(H, W, C) uint8 images -> one (H', W', C) uint8 grid, `nrow` per row (0: ceil(sqrt(n))),
    PADDING white pixels around each image."""
    n = len(images)
    h, w, c = images[0].shape
    per_row = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / per_row)
    out = np.full((rows * (h + PADDING) + PADDING, per_row * (w + PADDING) + PADDING, c),
                  PAD_VALUE, np.uint8)
    for i, image in enumerate(images):
        top = (i // per_row) * (h + PADDING) + PADDING
        left = (i % per_row) * (w + PADDING) + PADDING
        out[top:top + h, left:left + w] = image
    return out


def auto_scale(width: int, scale: int = 0) -> int:
    """`scale` itself, or for 0 the smallest whole factor that makes `width` at least
    MIN_WIDTH pixels (1 for pictures that are wide enough already)."""
    if scale < 0:
        raise ValueError(f"scale must not be negative, got {scale}")
    return scale or max(1, math.ceil(MIN_WIDTH / width))


def upscale(image: np.ndarray, scale: int, resample: str = "nearest") -> np.ndarray:
    """(H, W, C) uint8 -> (H * scale, W * scale, C) uint8 with filter `resample`."""
    if scale == 1:
        return image
    if resample not in RESAMPLE:
        raise ValueError(f"unknown resample filter {resample!r}: use {' or '.join(RESAMPLE)}")
    if resample == "nearest":  # exact: every pixel becomes a scale x scale block
        return np.ascontiguousarray(image.repeat(scale, axis=0).repeat(scale, axis=1))
    h, w, c = image.shape
    pil = Image.fromarray(image[:, :, 0] if c == 1 else image)
    big = np.asarray(pil.resize((w * scale, h * scale), RESAMPLE[resample]))
    return big.reshape(h * scale, w * scale, c)
