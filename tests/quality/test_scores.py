"""FID, KID and precision/recall against cases worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from quality import scores


def _exact(n: int, mean: list[float], cov: list[list[float]], seed: int) -> torch.Tensor:
    """n points whose sample mean and (unbiased) sample covariance are exactly mean and cov."""
    x = torch.randn(n, len(mean), generator=torch.Generator().manual_seed(seed),
                    dtype=torch.float64)
    x -= x.mean(0)
    white = x @ torch.linalg.inv(torch.linalg.cholesky(x.T @ x / (n - 1))).T  # covariance I
    return white @ torch.linalg.cholesky(torch.tensor(cov, dtype=torch.float64)).T + \
        torch.tensor(mean, dtype=torch.float64)


def test_fid_of_two_gaussians_is_the_closed_form() -> None:
    # For 2x2 S1, S2: Tr((S1 S2)^(1/2)) = sqrt(tr(S1 S2) + 2 sqrt(det S1 det S2))
    #   S1 = [[2, 1], [1, 2]], S2 = diag(1, 4): tr(S1 S2) = 10, det S1 det S2 = 12
    #   FID = |(1, 2)|^2 + tr S1 + tr S2 - 2 sqrt(10 + 2 sqrt 12) = 5 + 4 + 5 - 2 * 4.1144...
    # S1 and S2 do not commute, so this also checks the square root of a non-symmetric product.
    a = _exact(500, [0.0, 0.0], [[2.0, 1.0], [1.0, 2.0]], seed=0)
    b = _exact(700, [1.0, 2.0], [[1.0, 0.0], [0.0, 4.0]], seed=1)
    expected = 14 - 2 * math.sqrt(10 + 2 * math.sqrt(12))
    assert scores.fid(a, b) == pytest.approx(expected, abs=1e-9)
    assert scores.fid(b, a) == pytest.approx(expected, abs=1e-9)


def test_fid_of_the_same_gaussian_is_zero() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(20_000, 8, generator=gen) * 3 + 1
    b = torch.randn(20_000, 8, generator=gen) * 3 + 1
    assert scores.fid(a, a) == pytest.approx(0, abs=1e-9)
    assert scores.fid(a, b) < 0.05  # sampling error only: each variance is 9
    assert scores.fid(a, b + 1) == pytest.approx(8, rel=0.02)  # a shifted mean adds |shift|^2


def test_fid_with_fewer_samples_than_dimensions() -> None:
    # Rank-deficient covariances (50 samples, 100 dims): singular, but the score is still finite.
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(50, 100, generator=gen), torch.randn(50, 100, generator=gen)
    value = scores.fid(a, b)
    assert math.isfinite(value) and value > 0


def test_kid_by_hand() -> None:
    # d = 1, k(x, y) = (xy + 1)^3; real {0, 1}, fake {2, 3}:
    #   real pairs k(0, 1) = 1, fake pairs k(2, 3) = 343, cross 1 + 1 + 27 + 64 = 93
    #   MMD^2 = 1 + 343 - 2 * 93 / 4 = 297.5; the "subsets" are both whole sets: std 0
    mean, std = scores.kid(torch.tensor([[0.0], [1.0]]), torch.tensor([[2.0], [3.0]]))
    assert mean == pytest.approx(297.5) and std == 0


def test_kid_is_zero_for_one_distribution_and_positive_for_a_shift() -> None:
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(2000, 16, generator=gen), torch.randn(2000, 16, generator=gen)
    same_mean, same_std = scores.kid(a, b, subsets=50, subset_size=500)
    shifted_mean, shifted_std = scores.kid(a, b + 0.5, subsets=50, subset_size=500)
    assert abs(same_mean) < 3 * same_std  # unbiased: zero within its own spread
    assert shifted_mean > 10 * shifted_std and shifted_mean > 100 * abs(same_mean)
    assert scores.kid(a, b, subsets=50, subset_size=500) == (same_mean, same_std)  # seeded


def test_precision_recall_by_hand() -> None:
    # 1-d, k = 1. Reals: ten pairs {100i, 100i + 1}, so each real's radius is 1.
    # Fakes: pairs {100i + 0.1, 100i + 0.9} for i < 5 (radius 0.8), and one far pair.
    #   precision: the 10 fakes near reals are within 1 of one; the far 2 are not -> 10/12
    #   recall: reals 100i and 100i + 1 are 0.1 from a fake for i < 5 only -> 10/20
    real = torch.tensor([[100.0 * i + d] for i in range(10) for d in (0, 1)])
    fake = torch.tensor([[100.0 * i + d] for i in range(5) for d in (0.1, 0.9)] +
                        [[5000.0], [5000.5]])
    precision, recall = scores.precision_recall(real, fake, k=1)
    assert precision == pytest.approx(10 / 12) and recall == pytest.approx(0.5)


def test_precision_recall_extremes() -> None:
    real = torch.randn(300, 8, generator=torch.Generator().manual_seed(0))
    assert scores.precision_recall(real, real.clone()) == (1.0, 1.0)  # every point is a centre
    assert scores.precision_recall(real, real + 1000) == (0.0, 0.0)  # disjoint manifolds


def test_blocked_distances_agree_with_all_at_once() -> None:
    # 3000 x 3000 distances come in blocks of 2666 rows: compare with the whole matrix.
    gen = torch.Generator().manual_seed(0)
    real = torch.randn(3000, 4, generator=gen, dtype=torch.float64)
    fake = torch.randn(3000, 4, generator=gen, dtype=torch.float64) * 1.3
    k = 3
    r_real = torch.cdist(real, real).kthvalue(k + 1, dim=1).values
    r_fake = torch.cdist(fake, fake).kthvalue(k + 1, dim=1).values
    precision = (torch.cdist(fake, real) <= r_real).any(1).double().mean().item()
    recall = (torch.cdist(real, fake) <= r_fake).any(1).double().mean().item()
    assert 3000 > scores.BLOCK_ELEMENTS // 3000  # more than one block
    assert scores.precision_recall(real, fake, k=k) == pytest.approx((precision, recall))
    assert 0.3 < precision < 0.95  # a case where the blocks matter: not all in, not all out


def test_mismatched_features_are_rejected() -> None:
    with pytest.raises(ValueError, match="differ in size"):
        scores.fid(torch.zeros(5, 3), torch.zeros(5, 4))
    with pytest.raises(ValueError, match="k must be"):
        scores.precision_recall(torch.randn(3, 2), torch.randn(3, 2), k=3)
