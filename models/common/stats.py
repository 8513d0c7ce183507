"""Bootstrap intervals every study reports (numpy only): the resampling and the percentile interval.

Each study decides what one resample is scored on (VQA: videos; detection: images, re-scored by
COCOeval); the draws and the interval are the same everywhere, so intervals mean the same thing in
every report. Two score sets drawn with one seed share their resamples (a paired bootstrap).
"""
from __future__ import annotations

import numpy as np


def resample_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    """[n_boot, n] indices drawn with replacement from range(n), deterministic by ``seed``."""
    if n_boot < 0 or n < 0:
        raise ValueError(f"n and n_boot must be >= 0, got n={n}, n_boot={n_boot}")
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def percentile_interval(samples, level: float = 0.95) -> tuple[float | None, float | None]:
    """The central ``level`` percentile interval of the finite samples; (None, None) if there are none."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    s = np.asarray(samples, dtype=float).ravel()
    ok = s[np.isfinite(s)]
    if ok.size == 0:
        return None, None
    a = (1.0 - level) / 2.0
    lo, hi = np.percentile(ok, [100 * a, 100 * (1 - a)])
    return float(lo), float(hi)


def interval_verdict(diff: dict, *, n: int | None = None, min_n: int = 1) -> str:
    """A paired difference ``{value, ci_low, ci_high}`` judged on its interval: "holds" (above 0),
    "reversed" (below 0), "not shown" (it contains 0, there is no interval, or ``n`` < ``min_n``)."""
    lo, hi = diff.get("ci_low"), diff.get("ci_high")
    if n is not None and n < min_n:
        return "not shown"
    if lo is not None and lo > 0:
        return "holds"
    if hi is not None and hi < 0:
        return "reversed"
    return "not shown"
