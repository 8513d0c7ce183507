"""SUREAL's maximum-likelihood subject model (Li & Bampis; Netflix ``sureal``, ``MLE``), numpy only.

Model: a rating of video ``j`` by rater ``i`` is

    u_ij = x_j + b_i + sqrt(v_i^2 + a_c(j)^2) * eps,   eps ~ N(0, 1)

with true quality ``x_j``, rater bias ``b_i`` and inconsistency ``v_i``, and content ambiguity ``a_c``
(``c(j)`` the content of video ``j``). Missing ratings are NaN. Without content ids the model is
SUREAL's content-oblivious variant (``MLE_CO``: ``a_c = 0``).

The solver is SUREAL's own (``MaximumLikelihoodEstimationModel._run_modeling`` with
``gradient_method='simplified'``, ``force_subjbias_zeromean=False``): start from MOS, ``b = 0``,
``v`` / ``a`` = residual std per rater / per content; then, each iteration, damped (refresh 0.1)
Newton steps on ``b``, ``v``, ``a``, ``x`` in that order, ``v``, ``a`` clipped at 0; stop when
``||x_new - x|| < tol`` or after ``max_iter``. The likelihood is flat along ``x + c, b - c``, so the
point reached on that line depends on the iteration path: replaying SUREAL's path exactly is what
makes the scores agree with SUREAL's (to ~1e-12), not just the likelihood.

Why it is fast: every weight ``1 / (v_i^2 + a_c^2)`` depends only on the (rater, content) pair, so
each step needs only per-(rater, content) sums of the residuals and their squares (two
``bincount``s over the ratings); the rest works on small ``raters x contents`` arrays.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

REFRESH_RATE = 0.1  # SUREAL's damping of every Newton step
MIN_STD = 0.05      # floor of the per-rating noise std (see fit): far below any real set's ambiguity


class SubjectModelError(ValueError):
    """Ratings the model cannot be fitted on (the message says which video / rater)."""


@dataclass
class SubjectModelResult:
    quality: np.ndarray            # [n_videos] x_j
    quality_std: np.ndarray        # [n_videos] SUREAL's standard error 1 / sqrt(sum_i w_ij)
    bias: np.ndarray               # [n_raters] b_i
    bias_std: np.ndarray           # [n_raters]
    inconsistency: np.ndarray      # [n_raters] v_i
    inconsistency_std: np.ndarray  # [n_raters] (inf where the curvature is not negative, as in SUREAL)
    ambiguity: np.ndarray          # [n_contents] a_c (all 0 without content ids)
    ambiguity_std: np.ndarray      # [n_contents]
    log_likelihood: float          # total over all ratings (SUREAL reports it divided by n_ratings)
    iterations: int
    converged: bool
    n_ratings: int
    extra: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------- inputs

@dataclass
class _Ratings:
    """Observed ratings in long form plus the (rater, content) cell each falls in."""
    y: np.ndarray      # [n] scores
    e: np.ndarray      # [n] video index
    s: np.ndarray      # [n] rater index
    c_of_e: np.ndarray  # [E] content index of each video
    sc: np.ndarray     # [n] flat (rater, content) cell index
    E: int
    S: int
    C: int


def _prepare(scores, content_ids) -> _Ratings:
    u = np.asarray(scores, dtype=float)
    if u.ndim != 2:
        raise SubjectModelError(f"scores: expected a 2-D [videos, raters] array, got shape {u.shape}")
    E, S = u.shape
    if E == 0 or S == 0:
        raise SubjectModelError("scores: no videos or no raters")
    if np.isinf(u).any():
        raise SubjectModelError("scores: infinite values")
    seen = ~np.isnan(u)
    empty_v = np.flatnonzero(~seen.any(axis=1))
    if empty_v.size:
        raise SubjectModelError(f"scores: video rows {empty_v[:10].tolist()} have no rating")
    empty_r = np.flatnonzero(~seen.any(axis=0))
    if empty_r.size:
        raise SubjectModelError(f"scores: rater columns {empty_r[:10].tolist()} have no rating")
    if content_ids is None:
        c_of_e, C = np.zeros(E, dtype=np.int64), 1
    else:
        cid = np.asarray(content_ids)
        if cid.shape != (E,):
            raise SubjectModelError(f"content_ids: expected {E} entries (one per video), got shape {cid.shape}")
        _, c_of_e = np.unique(cid, return_inverse=True)  # any labels -> 0..C-1
        c_of_e = c_of_e.astype(np.int64)
        C = int(c_of_e.max()) + 1
    e, s = np.nonzero(seen)
    return _Ratings(y=u[e, s], e=e, s=s, c_of_e=c_of_e, sc=s * C + c_of_e[e], E=E, S=S, C=C)


# ----------------------------------------------------------------------------------- likelihood

def log_likelihood(scores, quality, bias, inconsistency, ambiguity=None, content_ids=None) -> float:
    """Total Gaussian log-likelihood of the observed (non-NaN) ratings under the given parameters.

    Lets you score any parameter set (e.g. SUREAL's own output) under the same model.
    ``ambiguity`` is indexed by the sorted unique ``content_ids``; leave both None for ``a = 0``.
    """
    r = _prepare(scores, content_ids)
    a = np.zeros(r.C) if ambiguity is None else np.asarray(ambiguity, dtype=float)
    return _loglik(r, np.asarray(quality, float), np.asarray(bias, float),
                   np.asarray(inconsistency, float), a)


# ---------------------------------------------------------------------------------------- solver

def _cell_sums(r: _Ratings, values: np.ndarray) -> np.ndarray:
    """Sum of per-rating ``values`` in each (rater, content) cell -> [S, C]."""
    return np.bincount(r.sc, weights=values, minlength=r.S * r.C).reshape(r.S, r.C)


def _init(r: _Ratings, content_aware: bool):
    """SUREAL's start: x = MOS, b = 0, v = residual std per rater, a = residual std per content."""
    n_e = np.bincount(r.e, minlength=r.E)
    x = np.bincount(r.e, weights=r.y, minlength=r.E) / n_e
    res = r.y - x[r.e]

    def pop_std(idx, n):  # np.nanstd(..., ddof=0) per group
        cnt = np.bincount(idx, minlength=n)
        mean = np.bincount(idx, weights=res, minlength=n) / cnt
        return np.sqrt(np.bincount(idx, weights=(res - mean[idx]) ** 2, minlength=n) / cnt)

    v = pop_std(r.s, r.S)
    a = pop_std(r.c_of_e[r.e], r.C) if content_aware else np.zeros(r.C)
    return x, np.zeros(r.S), v, a


def fit(
    scores,
    *,
    content_ids=None,
    max_iter: int = 10000,
    tol: float = 1e-8,
    refresh_rate: float = REFRESH_RATE,
    min_std: float = MIN_STD,
) -> SubjectModelResult:
    """Fit the MLE subject model to ``scores`` [n_videos, n_raters] (NaN = not rated).

    ``content_ids`` [n_videos] (any labels) enables the content-ambiguity term; without it the model
    is content-oblivious. ``max_iter`` / ``tol`` are SUREAL's ``MAX_ITR`` (10000) / ``delta_thr`` (1e-8).
    ``min_std`` floors the per-rating noise std (through ``a``, or ``v`` without contents); SUREAL
    clips at 0, which lets the likelihood run to infinity on small sets when a rater's ``v`` and a
    content's ``a`` both reach 0. On real sets ``a`` stays far above it, so results equal SUREAL's.
    """
    r = _prepare(scores, content_ids)
    content_aware = content_ids is not None
    n_sc = _cell_sums(r, np.ones_like(r.y))          # ratings per (rater, content) cell
    y_sc = _cell_sums(r, r.y)                         # their score sums
    yy_sc = _cell_sums(r, r.y * r.y)
    # sparse maps video <-> (rater, content) cell: one entry per rating, so each step is a few
    # sparse mat-vecs instead of gathers + bincounts over all ratings
    shape = (r.S * r.C, r.E)
    to_cell = sparse.csr_matrix((np.ones_like(r.y), (r.sc, r.e)), shape=shape)
    to_cell_y = sparse.csr_matrix((r.y, (r.sc, r.e)), shape=shape)
    to_video, to_video_y = to_cell.T.tocsr(), to_cell_y.T.tocsr()
    n_e = np.bincount(r.e, minlength=r.E).astype(float)
    in_cell = n_sc > 0
    x, b, v, a = _init(r, content_aware)
    lr = refresh_rate
    converged = False
    itr = 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        while True:
            x_prev = x
            # --- b: weighted mean of (u - x) per rater, weights 1 / (v^2 + a^2) ---
            var = v[:, None] ** 2 + a[None, :] ** 2   # [S, C]
            w = np.where(in_cell, 1.0 / var, 0.0)
            t_sc = y_sc - (to_cell @ x).reshape(r.S, r.C)  # sum of (u - x) per cell
            den_b = (w * n_sc).sum(1)
            b = b * (1 - lr) + lr * (w * t_sc).sum(1) / den_b
            b_std = 1.0 / np.sqrt(np.maximum(0.0, den_b))
            # per-cell sum of squared residuals (u - x - b)^2, for the v and a steps (x, b fixed there)
            tt_sc = yy_sc - (2 * (to_cell_y @ x) - to_cell @ (x * x)).reshape(r.S, r.C)  # sum (u - x)^2
            r2 = tt_sc - 2 * b[:, None] * t_sc + b[:, None] ** 2 * n_sc
            # --- v: one Newton step on d logL / d v_i (SUREAL's 'simplified' gradient) ---
            v2, a2 = v[:, None] ** 2, a[None, :] ** 2
            add, sub = v2 + a2, v2 - a2
            g = np.where(in_cell, -n_sc / add + r2 / add ** 2, 0.0).sum(1)
            poly = a2 ** 2 - 3 * v2 ** 2 - 2 * v2 * a2
            h = np.where(in_cell, n_sc * sub / add ** 2 + r2 * poly / add ** 4, 0.0).sum(1)
            v = np.maximum(v - lr * _newton(v, g, h), 0.0 if content_aware else min_std)
            v_std = 1.0 / np.sqrt(np.maximum(0.0, -h))
            # --- a: same on d logL / d a_c, summed over the content's ratings ---
            if content_aware:
                v2 = v[:, None] ** 2
                add, sub = v2 + a2, v2 - a2
                g = np.where(in_cell, -n_sc / add + r2 / add ** 2, 0.0).sum(0)
                poly = v2 ** 2 - 3 * a2 ** 2 - 2 * v2 * a2
                h = np.where(in_cell, -n_sc * sub / add ** 2 + r2 * poly / add ** 4, 0.0).sum(0)
                a = np.maximum(a - lr * _newton(a, g, h), min_std)
                a_std = 1.0 / np.sqrt(np.maximum(0.0, -h))
            else:
                a_std = np.zeros(r.C)
            # --- x: weighted mean of (u - b) per video ---
            w = 1.0 / (v[:, None] ** 2 + a[None, :] ** 2)
            den_x = to_video @ w.ravel()
            x_new = (to_video_y @ w.ravel() - to_video @ (w * b[:, None]).ravel()) / den_x
            x = x * (1 - lr) + lr * x_new
            x_std = 1.0 / np.sqrt(np.maximum(0.0, den_x))
            itr += 1
            if not (np.all(np.isfinite(x)) and np.all(np.isfinite(v)) and np.all(np.isfinite(a))):
                # v_i and a_c both shrinking to 0 makes the likelihood unbounded: too few ratings
                raise SubjectModelError(
                    f"scores: the maximum-likelihood fit degenerated at iteration {itr} (a rater's "
                    "inconsistency and a content's ambiguity both went to 0, so the likelihood is "
                    "unbounded); this needs more ratings per rater and content, or plain MOS")
            if np.linalg.norm(x_prev - x) < tol:
                converged = True
                break
            if itr >= max_iter:
                break
    return SubjectModelResult(
        quality=x, quality_std=x_std, bias=b, bias_std=b_std,
        inconsistency=v, inconsistency_std=v_std, ambiguity=a, ambiguity_std=a_std,
        log_likelihood=_loglik(r, x, b, v, a), iterations=itr, converged=converged,
        n_ratings=int(r.y.size), extra={"n_per_video": n_e},
    )


def _newton(p, g, h):
    """SUREAL's damped step ``p * g / h`` (its v * (1 - lr) + lr * (v - v g / h)), taken only where
    the curvature is negative: where h >= 0 the "Newton" step climbs away from the maximum, which on
    small sets sends an ambiguity to infinity. On real sets h < 0 throughout, so nothing changes."""
    return np.where(h < 0, p * g / h, 0.0)


def _loglik(r: _Ratings, x, b, v, a) -> float:
    var = v[r.s] ** 2 + a[r.c_of_e[r.e]] ** 2
    res = r.y - x[r.e] - b[r.s]
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.sum(-0.5 * np.log(2 * np.pi * var) - res ** 2 / (2 * var)))
