"""The statistics of the report: seed spread, paired intervals against supervised, gap closed.

Runs of two methods with the same protocol and seed share the labeled rows (and label
noise), so their accuracies are compared seed by seed: the difference per seed, its mean,
and a Student-t interval of that mean. A method "wins" only when the whole interval is
above 0, "loses" when it is below, and otherwise the report says "no significant
difference".

Formula:

```
d_s = acc(method, seed s) - acc(supervised, seed s),   s = 1..n
mean d ± t_{0.975, n-1} · std(d, ddof=1) / sqrt(n)
gap closed = (mean acc(method) - mean acc(supervised))
             / (mean acc(ceiling) - mean acc(supervised))
```
"""

import dataclasses
import math

import numpy as np
from scipy import stats as scipy_stats

__all__ = [
    "CONFIDENCE",
    "PairedDifference",
    "gap_closed",
    "mean_interval",
    "paired_difference",
    "spread",
    "verdict",
]

CONFIDENCE = 0.95
WINS, LOSES, NO_DIFFERENCE = "wins", "loses", "no significant difference"


def spread(values):
    """`(mean, std)` of `values`, the std with `ddof=1` (0 for a single value)."""
    values = np.asarray(values, dtype=float)
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return float(np.mean(values)), std


def _t_half_width(values, confidence):
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return math.nan
    quantile = scipy_stats.t.ppf(0.5 + confidence / 2, len(values) - 1)
    return float(quantile * np.std(values, ddof=1) / math.sqrt(len(values)))


def mean_interval(values, confidence=CONFIDENCE):
    """`(mean, low, high)`: the Student-t interval of the mean (nan bounds below 2 values)."""
    mean = float(np.mean(values))
    half = _t_half_width(values, confidence)
    return mean, mean - half, mean + half


def verdict(low, high):
    """"wins" when the interval is above 0, "loses" below, else "no significant difference".

    An undefined interval (fewer than 2 seeds: nan bounds) is no significant difference.
    """
    if low > 0:
        return WINS
    if high < 0:
        return LOSES
    return NO_DIFFERENCE


@dataclasses.dataclass(frozen=True)
class PairedDifference:
    """A method against supervised-only over the seeds both ran.

    Attributes:
        seeds: The paired seeds.
        differences: Per seed, method − supervised.
        mean: Mean of `differences`.
        low, high: The bounds of its `confidence` Student-t interval.
        verdict: "wins", "loses" or "no significant difference".
    """

    seeds: tuple
    differences: tuple
    mean: float
    low: float
    high: float
    verdict: str


def paired_difference(method, supervised, confidence=CONFIDENCE):
    """Compares two methods seed by seed.

    Args:
        method: `{seed: accuracy}` of the method.
        supervised: `{seed: accuracy}` of the reference (same protocol).
        confidence: Level of the interval. Defaults to `0.95`.

    Returns:
        A `PairedDifference` over the seeds in both.

    Raises:
        ValueError: If no seed is in both.
    """
    seeds = tuple(sorted(set(method) & set(supervised)))
    if not seeds:
        raise ValueError(f"No seed in common. Received: method seeds {sorted(method)}, "
                         f"supervised seeds {sorted(supervised)}")
    differences = np.array([method[s] - supervised[s] for s in seeds], dtype=float)
    mean, low, high = mean_interval(differences, confidence)
    return PairedDifference(seeds, tuple(differences.tolist()), mean, low, high,
                            verdict(low, high))


def gap_closed(method_mean, supervised_mean, ceiling_mean):
    """Share of the supervised → ceiling gap the method closes, `None` without a gap."""
    if ceiling_mean <= supervised_mean:
        return None
    return (method_mean - supervised_mean) / (ceiling_mean - supervised_mean)
