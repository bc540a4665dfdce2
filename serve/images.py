"""Pixels: the generator's raw output to per-image arrays, PNG or raw bytes, grids, animations;
and the format names' wire enum (gan.v1.ImageFormat), shared by server and client.

Shapes: a float model gives (B, C, H, W) float32 in [-1, 1]; a uint8 model (B, H, W, C) uint8.
Every image leaves here channels-last (H, W, C), the layout of PNG and of the raw formats.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

from gan.contract import pixels_to_unit
from serve._proto.gan.v1 import generator_pb2 as pb

TO_PB = {"png": pb.IMAGE_FORMAT_PNG, "raw_uint8": pb.IMAGE_FORMAT_RAW_UINT8,
         "raw_float32": pb.IMAGE_FORMAT_RAW_FLOAT32}
"""Format name -> its wire enum value."""
FROM_PB = {v: k for k, v in TO_PB.items()} | {pb.IMAGE_FORMAT_UNSPECIFIED: "png"}
"""Wire enum value -> format name (unspecified means png)."""


def to_uint8(x: np.ndarray) -> np.ndarray:
    """(B, C, H, W) float in [-1, 1] -> (B, H, W, C) uint8: round((clamp(x) + 1) * 127.5).

    np.rint rounds half to even, like torch.round in export's uint8 graph, so both agree.
    """
    pixels = np.rint((np.clip(x, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)
    return np.ascontiguousarray(pixels.transpose(0, 2, 3, 1))


def to_float(x: np.ndarray) -> np.ndarray:
    """(B, C, H, W) float32 -> (B, H, W, C) float32, values unchanged."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1), dtype=np.float32)


def convert(raw: np.ndarray, output: str, fmt: str) -> np.ndarray:
    """A model's raw output batch (its `output` kind) -> (B, H, W, C) arrays for format `fmt`."""
    if output == "float":
        return to_float(raw) if fmt == "raw_float32" else to_uint8(raw)
    if fmt == "raw_float32":  # uint8 model: map pixels back to [-1, 1]
        return pixels_to_unit(raw)
    return np.ascontiguousarray(raw, dtype=np.uint8)


def png(image: np.ndarray) -> bytes:
    """(H, W, C) uint8, C = 1 or 3 -> PNG bytes (8-bit grayscale or RGB)."""
    pil = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return buf.getvalue()


def encode(image: np.ndarray, fmt: str) -> bytes:
    """One (H, W, C) image from `convert` -> the bytes of format `fmt`."""
    if fmt == "png":
        return png(image)
    if fmt == "raw_float32":
        return image.astype("<f4", copy=False).tobytes()
    return image.tobytes()


def decode(data: bytes, fmt: str, height: int, width: int, channels: int) -> np.ndarray:
    """The inverse of `encode`: bytes -> (H, W, C) uint8 (png, raw_uint8) or float32."""
    if fmt == "png":
        arr = np.asarray(Image.open(io.BytesIO(data)))
        return arr.reshape(height, width, channels)
    dtype = np.dtype("<f4") if fmt == "raw_float32" else np.dtype(np.uint8)
    return np.frombuffer(data, dtype=dtype).reshape(height, width, channels)


def grid(images: list[np.ndarray], nrow: int = 0, padding: int = 2) -> np.ndarray:
    """(H, W, C) uint8 images -> one (H', W', C) uint8 grid, `nrow` per row (0: ceil(sqrt(n))),
    `padding` black pixels around each image (torchvision.utils.make_grid's layout)."""
    n = len(images)
    h, w, c = images[0].shape
    per_row = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / per_row)
    out = np.zeros((rows * (h + padding) + padding, per_row * (w + padding) + padding, c),
                   np.uint8)
    for i, image in enumerate(images):
        top = (i // per_row) * (h + padding) + padding
        left = (i % per_row) * (w + padding) + padding
        out[top:top + h, left:left + w] = image
    return out


def gif(frames: list[np.ndarray], frame_ms: int = 100) -> bytes:
    """(H, W, C) uint8 frames -> an animated GIF looping forever, `frame_ms` per frame.

    Grayscale frames keep their exact values (GIF's 256-entry palette holds every gray); RGB
    frames are quantised to 256 colours each. Pillow merges a frame identical to the one before
    into it (adding their durations), so the file may hold fewer frames than given.
    """
    pils = [Image.fromarray(f[:, :, 0] if f.shape[2] == 1 else f) for f in frames]
    buf = io.BytesIO()
    pils[0].save(buf, format="GIF", save_all=True, append_images=pils[1:], duration=frame_ms,
                 loop=0)
    return buf.getvalue()
