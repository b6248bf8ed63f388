"""Small-sample statistics for evaluation reports: the Wilson interval and percentiles."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

Z95 = 1.959963984540054  # two-sided 95% quantile of the standard normal


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion.

    Used instead of the normal (Wald) interval because evaluations here are small (tens of
    questions) and accuracies near 0 or 1 are common, where Wald collapses to a point or leaves
    [0, 1]. With no questions nothing is known: (0, 1).
    """
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, center - half), min(1.0, center + half)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between order statistics (numpy's
    default), so p50 of an even count is the mean of the middle two."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def mcnemar_exact(wins: int, losses: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pairs: questions only the first of two
    systems got right (`wins`) and only the second got right (`losses`). Under the null each
    discordant question is a fair coin; concordant questions carry no information."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(wins, losses) + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_difference_interval(
    wins: int, losses: int, n: int, z: float = Z95
) -> tuple[float, float]:
    """95% interval for the difference of two paired accuracies (first minus second), by the
    Agresti-Min adjusted Wald method (half a question added to each cell of the 2x2 table):
    sound at the small n of validation sets, where the plain Wald interval is too narrow."""
    if n == 0:
        return -1.0, 1.0
    b, c, total = wins + 0.5, losses + 0.5, n + 2
    diff = (b - c) / total
    half = z * math.sqrt((b + c) - (b - c) ** 2 / total) / total
    return max(-1.0, diff - half), min(1.0, diff + half)


def paired_bootstrap_p(
    statistic: Callable[[np.ndarray], float], n: int, resamples: int = 2000, seed: int = 0
) -> float:
    """One-sided p-value for "the statistic is not above 0": the share of bootstrap resamples
    of the n paired questions (indices drawn with replacement, the same for both systems) on
    which `statistic(indices)` is <= 0, with the usual +1 so it is never 0. For statistics that
    are not sums over questions (a difference of median latencies), where no exact test fits."""
    if n == 0:
        return 1.0
    draws = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    at_most_zero = sum(statistic(indices) <= 0 for indices in draws)
    return (1 + at_most_zero) / (1 + resamples)
