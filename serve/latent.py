"""The latent rule: how a seed (or a client's explicit values) becomes the generator's input z.

For a seed s, n images and latent size nz, z is

    numpy.random.Generator(numpy.random.PCG64(s)).standard_normal((n, nz), dtype=numpy.float32)

(row-major [n, nz]). Rows are drawn in order, so the first k rows for seed s are the same for every
n >= k. Anyone can reproduce it with NumPy >= 1.17, or with any PCG64 (XSL-RR 128/64) plus NumPy's
float32 ziggurat; NumPy keeps this stream stable in practice but does not promise it forever, so
a client that must never depend on NumPy sends explicit latents instead.

Interpolation (`gan generate --interpolate A B --steps K`) walks from seed A's 1-image latent to
seed B's along `slerp` (below), at t = i / (K - 1) for frames i = 0 .. K - 1; the frames are
sent to a server as an explicit latent, so any client can make the same request.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import numpy as np

MAX_SEED = 2**64 - 1


class LatentError(ValueError):
    """Latent values a request cannot use (wrong length, NaN or Inf)."""


def check_seed(seed: int) -> None:
    if not 0 <= seed <= MAX_SEED:
        raise LatentError(f"seed must be between 0 and 2^64 - 1, got {seed}")


def from_seed(seed: int, num_images: int, nz: int) -> np.ndarray:
    """z (num_images, nz) float32 for `seed` (the documented rule above)."""
    check_seed(seed)
    rng = np.random.Generator(np.random.PCG64(seed))
    return rng.standard_normal((num_images, nz), dtype=np.float32)


def from_seed_in_parts(seed: int, num_images: int, nz: int, part: int) -> Iterator[np.ndarray]:
    """The rows of from_seed(seed, num_images, nz), `part` rows at a time (the last part may be
    shorter): the generator draws each value in turn, so the parts join to the same array."""
    check_seed(seed)
    rng = np.random.Generator(np.random.PCG64(seed))
    for start in range(0, num_images, part):
        yield rng.standard_normal((min(part, num_images - start), nz), dtype=np.float32)


def from_values(values: object, num_images: int, nz: int) -> np.ndarray:
    """z (num_images, nz) float32 from a flat row-major sequence of num_images * nz floats."""
    z = np.asarray(values, dtype=np.float32)
    if z.size != num_images * nz:
        raise LatentError(f"latent has {z.size} values, expected num_images * nz = "
                          f"{num_images} * {nz} = {num_images * nz}")
    if not np.isfinite(z).all():
        raise LatentError("latent contains NaN or Inf: every value must be finite")
    return z.reshape(num_images, nz)


PARALLEL_EPS = 1e-6
"""slerp falls back to lerp when sin(omega) is below this: a and b (anti)parallel or zero."""


def slerp(a: np.ndarray, b: np.ndarray, t: float | np.ndarray) -> np.ndarray:
    """Spherical linear interpolation from a (nz,) to b (nz,) at t (scalar or (k,)) -> (nz,) or
    (k, nz) float32:

        omega    = arccos(clip(dot(a, b) / (|a| |b|), -1, 1))     the angle between a and b
        slerp(t) = sin((1 - t) omega) / sin(omega) * a + sin(t omega) / sin(omega) * b

    and lerp(t) = (1 - t) a + t b where sin(omega) < PARALLEL_EPS (a and b parallel or
    anti-parallel, or either is zero: no unique great circle). Computed in float64, rounded to
    float32 at the end; t = 0 gives a and t = 1 gives b exactly. Unlike lerp, slerp keeps the
    norm near that of the endpoints (|a| = |b| gives |slerp(t)| = |a| for every t): a straight
    line between two N(0, I) draws dips towards the origin, where latents are atypical.
    """
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    t64 = np.asarray(t, np.float64)[..., None]  # (k, 1) or (1,): broadcasts over nz
    norms = np.linalg.norm(a64) * np.linalg.norm(b64)
    cos = np.clip(a64 @ b64 / norms, -1.0, 1.0) if norms > 0 else 1.0
    omega = np.arccos(cos)
    sin = np.sin(omega)
    if sin < PARALLEL_EPS:
        out = (1.0 - t64) * a64 + t64 * b64
    else:
        out = np.sin((1.0 - t64) * omega) / sin * a64 + np.sin(t64 * omega) / sin * b64
    return out.astype(np.float32).reshape(np.shape(t) + a64.shape)


def interpolation(seed_a: int, seed_b: int, steps: int, nz: int) -> np.ndarray:
    """z (steps, nz) float32: slerp from seed A's 1-image latent to seed B's, t = i/(steps-1)."""
    if steps < 2:
        raise LatentError(f"an interpolation needs at least 2 steps, got {steps}")
    a, b = from_seed(seed_a, 1, nz)[0], from_seed(seed_b, 1, nz)[0]
    return slerp(a, b, np.arange(steps) / (steps - 1))


def random_seed() -> int:
    """A fresh seed below 2^63, so it also fits the signed 64-bit integers of other languages."""
    return secrets.randbelow(2**63)
