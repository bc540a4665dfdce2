"""Sample-quality scores between two feature sets: FID, KID, and precision/recall.

Each function takes real and fake features as (N, D) tensors from the same feature extractor and
computes in float64 on the CPU: the covariance of 2048-d Inception features loses digits in
float32, and these are small matrices next to the cost of extracting the features. Pairwise
distances are taken a block of rows at a time, so 10k x 10k distances never exist at once.
"""

from __future__ import annotations

import torch

# Rows per block of pairwise distances: a (BLOCK_ELEMENTS / N, N) float64 block is about 64 MiB.
BLOCK_ELEMENTS = 8_000_000


def _as_float64(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.dim() != 2 or x.shape[0] < 2:
        raise ValueError(f"{name} features must be (N, D) with N >= 2, got {tuple(x.shape)}")
    return x.detach().to("cpu", torch.float64)


def _check_pair(real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    real, fake = _as_float64(real, "real"), _as_float64(fake, "fake")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real and fake features differ in size: {real.shape[1]} vs "
                         f"{fake.shape[1]}")
    return real, fake


def _mean_cov(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mu = x.mean(0)  # (D,)
    centred = x - mu
    return mu, centred.T @ centred / (x.shape[0] - 1)  # (D, D), unbiased


def _trace_sqrt_product(s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    """Tr((S1 S2)^(1/2)) for symmetric PSD S1, S2, via the symmetric matrix
    M = S1^(1/2) S2 S1^(1/2), which is similar to S1 S2 and so has the same eigenvalues."""
    w, v = torch.linalg.eigh(s1)
    root1 = (v * w.clamp(min=0).sqrt()) @ v.T  # S1^(1/2)
    m = root1 @ s2 @ root1
    m = (m + m.T) / 2  # exact symmetry: rounding leaves it slightly asymmetric
    return torch.linalg.eigvalsh(m).clamp(min=0).sqrt().sum()  # rounding makes tiny negatives


def fid(real: torch.Tensor, fake: torch.Tensor) -> float:
    """Frechet Inception Distance between Gaussians fitted to two feature sets (Heusel et al.
    2017, "GANs trained by a two time-scale update rule converge to a local Nash equilibrium"):

        FID = ||mu_r - mu_f||^2 + Tr(S_r + S_f - 2 (S_r S_f)^(1/2))

    real: (N, D), fake: (M, D). Biased upwards for small N, M: compare only at equal sample counts.
    """
    real, fake = _check_pair(real, fake)
    mu1, s1 = _mean_cov(real)
    mu2, s2 = _mean_cov(fake)
    value = (mu1 - mu2).square().sum() + s1.trace() + s2.trace() - 2 * _trace_sqrt_product(s1, s2)
    return float(value.clamp(min=0))  # negative only by rounding


def _polynomial_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x @ y.T / x.shape[1] + 1) ** 3  # (m, m): k(x, y) = (x.y / d + 1)^3


def _unbiased_mmd2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    m = x.shape[0]
    kxx, kyy, kxy = _polynomial_kernel(x, x), _polynomial_kernel(y, y), _polynomial_kernel(x, y)
    within = (kxx.sum() - kxx.diagonal().sum() + kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return within - 2 * kxy.mean()


def kid(real: torch.Tensor, fake: torch.Tensor, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al. 2018, "Demystifying MMD GANs"): the unbiased
    estimate of MMD^2 with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3,

        MMD^2 = sum_{i!=j} k(x_i, x_j) / (m(m-1)) + sum_{i!=j} k(y_i, y_j) / (m(m-1))
                - 2 sum_{i,j} k(x_i, y_j) / m^2,

    averaged over `subsets` random subsets of m = min(subset_size, N, M) real and fake features
    each, drawn without replacement from a generator seeded with `seed`. Returns (mean, std over
    the subsets; 0 when the subsets are the whole sets). Unbiased, so slightly negative values
    are possible when the distributions match.
    """
    real, fake = _check_pair(real, fake)
    m = min(subset_size, real.shape[0], fake.shape[0])
    if m == real.shape[0] == fake.shape[0]:
        subsets = 1  # every "subset" is both whole sets: one evaluation gives them all
    gen = torch.Generator().manual_seed(seed)
    values = torch.empty(subsets, dtype=torch.float64)
    for i in range(subsets):
        x = real[torch.randperm(real.shape[0], generator=gen)[:m]]  # (m, D)
        y = fake[torch.randperm(fake.shape[0], generator=gen)[:m]]  # (m, D)
        values[i] = _unbiased_mmd2(x, y)
    std = values.std() if subsets > 1 else torch.zeros(())
    return float(values.mean()), float(std)


def _rows_per_block(cols: int) -> int:
    return max(1, BLOCK_ELEMENTS // cols)


def _knn_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """(N,) distance from each row of x to its k-th nearest other row."""
    if not 1 <= k < x.shape[0]:
        raise ValueError(f"k must be in [1, {x.shape[0] - 1}] for {x.shape[0]} points, got {k}")
    step = _rows_per_block(x.shape[0])
    radii = [torch.cdist(x[i:i + step], x).kthvalue(k + 1, dim=1).values  # +1: itself at 0
             for i in range(0, x.shape[0], step)]
    return torch.cat(radii)


def _inside_fraction(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> float:
    """Fraction of points within radii[j] of some centres[j]."""
    step = _rows_per_block(centres.shape[0])
    inside = [(torch.cdist(points[i:i + step], centres) <= radii).any(dim=1)  # (block,)
              for i in range(0, points.shape[0], step)]
    return float(torch.cat(inside).double().mean())


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019, "Improved precision and recall
    metric for assessing generative models"). Each set's manifold is the union of balls around
    its points whose radius is the distance to the point's k-th nearest neighbour in that set:

        precision = fraction of fakes inside the real manifold (are samples realistic?)
        recall    = fraction of reals inside the fake manifold (is the data covered?)
    """
    real, fake = _check_pair(real, fake)
    precision = _inside_fraction(fake, real, _knn_radii(real, k))
    recall = _inside_fraction(real, fake, _knn_radii(fake, k))
    return precision, recall
