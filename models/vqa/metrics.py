"""VQA agreement metrics: SRCC, KRCC, PLCC and RMSE (after the VQEG logistic mapping), bootstrap CIs.

PLCC and RMSE follow the VQEG convention: predictions are first mapped to the subjective scale by the
4-parameter logistic ``f(x) = (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2`` fitted by least squares,
so a model is not penalised for a monotone nonlinear relation with MOS (that is SRCC's job to judge).

Bootstrap (``score_all``): videos are resampled with replacement, and the 95 % percentile interval of
each metric over the resamples is reported. The rank correlations are computed for all resamples at
once (vectorised). The logistic mapping is *refitted* on every resample, warm-started from the
full-sample fit: the mapping is part of the metric, and fitting it once on all the videos would let the
full sample leak into every resample and give too narrow PLCC / RMSE intervals. The warm start makes a
refit converge in ~10 function evaluations (~2 ms for tens of videos), so 1000 resamples take ~2 s;
``refit=False`` keeps the full-sample mapping instead (faster, slightly optimistic intervals).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from models.common.stats import percentile_interval, resample_indices

METRICS = ("srcc", "krcc", "plcc", "rmse")


class MetricInputError(ValueError):
    """Scores that cannot be compared: different lengths, too few or non-finite values."""


def _validate(y_true, y_pred, *, name: str = "scores") -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.ndim != 1 or p.ndim != 1:
        raise MetricInputError(f"{name}: expected 1-D arrays, got shapes {t.shape} and {p.shape}")
    if t.shape != p.shape:
        raise MetricInputError(f"{name}: y_true has {t.size} values but y_pred has {p.size}")
    bad = ~(np.isfinite(t) & np.isfinite(p))
    if bad.any():
        raise MetricInputError(f"{name}: {int(bad.sum())} non-finite value(s) (NaN / inf) at index "
                               f"{np.flatnonzero(bad)[:5].tolist()}")
    if t.size < 3:
        raise MetricInputError(f"{name}: need at least 3 videos, got {t.size}")
    return t, p


# ------------------------------------------------------------------------------------ rank metrics

def srcc(y_true, y_pred) -> float:
    """Spearman rank-order correlation (NaN when either side is constant)."""
    t, p = _validate(y_true, y_pred)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        return float(stats.spearmanr(t, p).statistic)


def krcc(y_true, y_pred) -> float:
    """Kendall rank correlation, tau-b (ties handled as scipy does)."""
    t, p = _validate(y_true, y_pred)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        return float(stats.kendalltau(t, p).statistic)


# ------------------------------------------------------------------------------- logistic mapping

def logistic(x, b1, b2, b3, b4):
    """VQEG 4-parameter logistic; ``|b4|`` keeps the slope's sign in b1 - b2."""
    z = np.clip(-(np.asarray(x, dtype=np.float64) - b3) / (np.abs(b4) + 1e-12), -500.0, 500.0)
    return (b1 - b2) / (1.0 + np.exp(z)) + b2


def _logistic_jac(x, b1, b2, b3, b4):
    """Analytic Jacobian of :func:`logistic` (about 2x faster fits than finite differences)."""
    a = np.abs(b4) + 1e-12
    u = np.asarray(x, dtype=np.float64) - b3
    s = 1.0 / (1.0 + np.exp(np.clip(-u / a, -500.0, 500.0)))
    ds = s * (1.0 - s)
    return np.stack([s, 1.0 - s, -(b1 - b2) * ds / a, -(b1 - b2) * ds * u * np.sign(b4) / a**2], axis=1)


@dataclass(frozen=True)
class Mapping:
    """A fitted monotone map from predictions to the subjective scale."""

    kind: str                # "logistic" | "linear" | "constant"
    params: tuple[float, ...]

    def __call__(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.kind == "logistic":
            return logistic(x, *self.params)
        if self.kind == "linear":
            return self.params[0] * x + self.params[1]
        return np.full_like(x, self.params[0])


def _initial_guess(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    # Upper / lower asymptotes at the score range (swapped for a decreasing relation), centre at the
    # mean prediction, scale at the spread of predictions: the usual VQEG starting point.
    increasing = np.corrcoef(x, y)[0, 1] >= 0 if x.std() > 0 and y.std() > 0 else True
    hi, lo = (y.max(), y.min()) if increasing else (y.min(), y.max())
    return np.array([hi, lo, x.mean(), x.std() or 1.0])


def _linear(x: np.ndarray, y: np.ndarray) -> Mapping:
    if x.std() == 0:
        return Mapping("constant", (float(y.mean()),))
    a, b = np.polyfit(x, y, 1)
    return Mapping("linear", (float(a), float(b)))


def _bounds(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Unbounded, the logistic can run off to asymptotes far outside the data (an exponential in
    # disguise): ill-conditioned and slow to refit. Keeping asymptotes within one score range of the
    # data, the centre within one prediction range and the scale positive avoids that.
    ry, rx = np.ptp(y), np.ptp(x)
    lo = np.array([y.min() - ry, y.min() - ry, x.min() - rx, rx * 1e-3])
    hi = np.array([y.max() + ry, y.max() + ry, x.max() + rx, rx * 10.0])
    return lo, hi


def logistic_fit(y_pred, y_true, *, p0=None, max_nfev: int = 1000) -> Mapping:
    """Fit the VQEG logistic from predictions to scores; a least-squares line if the fit fails.

    Bounded trust-region least squares with the analytic Jacobian, from the VQEG starting point or
    from ``p0`` (a warm start). The line is also used when it fits better than the logistic (a poor
    local minimum), so the mapping is never worse than linear.
    """
    t, p = _validate(y_true, y_pred, name="logistic_fit")
    line = _linear(p, t)
    if line.kind == "constant" or np.ptp(t) == 0:
        return line
    lo, hi = _bounds(p, t)
    start = _initial_guess(p, t) if p0 is None else np.asarray(p0, dtype=np.float64)
    start = np.clip(start, lo + 1e-9 * (hi - lo), hi - 1e-9 * (hi - lo))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # OptimizeWarning when the covariance cannot be estimated
            popt, _ = optimize.curve_fit(logistic, p, t, p0=start, bounds=(lo, hi), jac=_logistic_jac,
                                         method="trf", max_nfev=max_nfev)
    except (RuntimeError, ValueError):
        return line
    fit = Mapping("logistic", tuple(float(v) for v in popt))
    sse_fit = float(np.sum((fit(p) - t) ** 2))
    sse_line = float(np.sum((line(p) - t) ** 2))
    if not np.isfinite(sse_fit) or sse_fit > sse_line:
        return line
    return fit


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def plcc(y_true, y_pred, *, mapping: Mapping | None = None) -> float:
    """Pearson correlation between scores and logistic-mapped predictions."""
    t, p = _validate(y_true, y_pred)
    m = mapping or logistic_fit(p, t)
    return _pearson(t, m(p))


def rmse(y_true, y_pred, *, mapping: Mapping | None = None) -> float:
    """Root-mean-square error between scores and logistic-mapped predictions (score units)."""
    t, p = _validate(y_true, y_pred)
    m = mapping or logistic_fit(p, t)
    return float(np.sqrt(np.mean((m(p) - t) ** 2)))


# ---------------------------------------------------------------------- vectorised bootstrap helpers

def _row_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row pair of two [B, n] arrays (NaN for a constant row)."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(axis=1) / np.where(den > 0, den, 1.0), np.nan)


def batch_srcc(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Spearman for each row of [B, n] arrays: Pearson of average ranks (ties as scipy)."""
    return _row_pearson(stats.rankdata(t, axis=1), stats.rankdata(p, axis=1))


def batch_krcc(t: np.ndarray, p: np.ndarray, *, max_elems: int = 4_000_000) -> np.ndarray:
    """Kendall tau-b for each row of [B, n] arrays.

    tau-b = sum sign(dt) sign(dp) / sqrt(sum |sign(dt)| * sum |sign(dp)|) over all pairs, which counts
    a pair tied in t (or p) exactly as scipy's tau-b does. O(B n^2), done in chunks of rows to bound
    memory; for large n the per-row O(n log n) scipy routine is used instead.
    """
    b, n = t.shape
    if n * n > max_elems:
        return np.array([stats.kendalltau(ti, pi).statistic for ti, pi in zip(t, p)], dtype=np.float64)
    out = np.empty(b, dtype=np.float64)
    rows = max(1, max_elems // (n * n))
    for s in range(0, b, rows):
        st = np.sign(t[s:s + rows, :, None] - t[s:s + rows, None, :]).astype(np.int8)
        sp = np.sign(p[s:s + rows, :, None] - p[s:s + rows, None, :]).astype(np.int8)
        num = (st * sp).sum(axis=(1, 2), dtype=np.int64)
        den = np.sqrt(np.abs(st).sum(axis=(1, 2), dtype=np.int64).astype(np.float64)
                      * np.abs(sp).sum(axis=(1, 2), dtype=np.int64))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[s:s + rows] = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return out


def _boot_mapped(t: np.ndarray, p: np.ndarray, full: Mapping, refit: bool) -> tuple[np.ndarray, np.ndarray]:
    """PLCC and RMSE per resample (rows of t, p), with the mapping refitted or fixed."""
    if not refit:
        mapped = full(p)
        return _row_pearson(t, mapped), np.sqrt(np.mean((mapped - t) ** 2, axis=1))
    p0 = full.params if full.kind == "logistic" else None
    pl = np.empty(len(t))
    rm = np.empty(len(t))
    for i, (ti, pi) in enumerate(zip(t, p)):
        m = logistic_fit(pi, ti, p0=p0, max_nfev=200)
        mapped = m(pi)
        pl[i] = _pearson(ti, mapped)
        rm[i] = np.sqrt(np.mean((mapped - ti) ** 2))
    return pl, rm


def score_all(y_true, y_pred, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95,
              refit: bool = True) -> dict[str, dict[str, float | None]]:
    """All four metrics with bootstrap percentile intervals.

    Returns ``{metric: {"value", "ci_low", "ci_high"}}`` for srcc, krcc, plcc, rmse. ``n_boot=0``
    skips the bootstrap (intervals are None). Resamples where a metric is undefined (e.g. all videos
    drawn equal) are left out of its interval.
    """
    t, p = _validate(y_true, y_pred)
    if n_boot < 0:
        raise MetricInputError(f"score_all: n_boot must be >= 0, got {n_boot}")
    if not 0 < level < 1:
        raise MetricInputError(f"score_all: level must be in (0, 1), got {level}")
    full = logistic_fit(p, t)
    values = {"srcc": srcc(t, p), "krcc": krcc(t, p), "plcc": plcc(t, p, mapping=full),
              "rmse": rmse(t, p, mapping=full)}
    if n_boot == 0:
        return {k: {"value": v, "ci_low": None, "ci_high": None} for k, v in values.items()}
    idx = resample_indices(t.size, n_boot, seed)
    bt, bp = t[idx], p[idx]
    samples = {"srcc": batch_srcc(bt, bp), "krcc": batch_krcc(bt, bp)}
    samples["plcc"], samples["rmse"] = _boot_mapped(bt, bp, full, refit)
    out = {}
    for k in METRICS:
        lo, hi = percentile_interval(samples[k], level)
        out[k] = {"value": values[k], "ci_low": lo, "ci_high": hi}
    return out


def paired_srcc_difference(y_true, pred_a, pred_b, *, n_boot: int = 1000, seed: int = 0,
                           level: float = 0.95) -> dict[str, float | None]:
    """SRCC(a) - SRCC(b) on the same videos, with a paired bootstrap interval (each resample scores
    both models on the same draw of videos)."""
    t, a = _validate(y_true, pred_a, name="pred_a")
    _, b = _validate(y_true, pred_b, name="pred_b")
    value = srcc(t, a) - srcc(t, b)
    if n_boot == 0:
        return {"value": value, "ci_low": None, "ci_high": None}
    idx = resample_indices(t.size, n_boot, seed)
    lo, hi = percentile_interval(batch_srcc(t[idx], a[idx]) - batch_srcc(t[idx], b[idx]), level)
    return {"value": value, "ci_low": lo, "ci_high": hi}
