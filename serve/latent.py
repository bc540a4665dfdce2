"""The latent rule: how a seed (or a client's explicit values) becomes the generator's input z.

For a seed s, n images and latent size nz, z is

    numpy.random.Generator(numpy.random.PCG64(s)).standard_normal((n, nz), dtype=numpy.float32)

(row-major [n, nz]). Rows are drawn in order, so the first k rows for seed s are the same for every
n >= k. Anyone can reproduce it with NumPy >= 1.17, or with any PCG64 (XSL-RR 128/64) plus NumPy's
float32 ziggurat; NumPy keeps this stream stable in practice but does not promise it forever, so
a client that must never depend on NumPy sends explicit latents instead.
"""

from __future__ import annotations

import secrets

import numpy as np

MAX_SEED = 2**64 - 1


class LatentError(ValueError):
    """Latent values a request cannot use (wrong length, NaN or Inf)."""


def from_seed(seed: int, num_images: int, nz: int) -> np.ndarray:
    """z (num_images, nz) float32 for `seed` (the documented rule above)."""
    if not 0 <= seed <= MAX_SEED:
        raise LatentError(f"seed must be between 0 and 2^64 - 1, got {seed}")
    rng = np.random.Generator(np.random.PCG64(seed))
    return rng.standard_normal((num_images, nz), dtype=np.float32)


def from_values(values: object, num_images: int, nz: int) -> np.ndarray:
    """z (num_images, nz) float32 from a flat row-major sequence of num_images * nz floats."""
    z = np.asarray(values, dtype=np.float32)
    if z.size != num_images * nz:
        raise LatentError(f"latent has {z.size} values, expected num_images * nz = "
                          f"{num_images} * {nz} = {num_images * nz}")
    if not np.isfinite(z).all():
        raise LatentError("latent contains NaN or Inf: every value must be finite")
    return z.reshape(num_images, nz)


def random_seed() -> int:
    """A fresh seed below 2^63, so it also fits the signed 64-bit integers of other languages."""
    return secrets.randbelow(2**63)
