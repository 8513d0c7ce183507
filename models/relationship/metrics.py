"""Classification scores of the relationship study (numpy only), vectorised over bootstrap resamples.

Macro-F1 is the mean F1 over the classes that occur in the truth or the predictions (scikit-learn's
``f1_score(average="macro")`` without ``labels``): a class neither present nor predicted in a
(resampled) test set says nothing and is left out, rather than counted as 0.
"""
from __future__ import annotations

import numpy as np


def confusions(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, idx: np.ndarray | None = None) -> np.ndarray:
    """[B, K, K] confusion counts (rows: truth) of each resample ``idx`` [B, n] (None: one, the whole set)."""
    t, p = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    idx = np.arange(len(t))[None] if idx is None else np.asarray(idx, np.int64)
    B, K = len(idx), int(n_classes)
    codes = (t[idx] * K + p[idx]) + (np.arange(B) * K * K)[:, None]
    return np.bincount(codes.ravel(), minlength=B * K * K).reshape(B, K, K)


def f1_from_confusions(conf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(per-class F1 [B, K] (NaN where a class is neither true nor predicted), macro-F1 [B])."""
    tp = np.einsum("bkk->bk", conf).astype(float)
    denom = conf.sum(2) + conf.sum(1)  # 2 tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(denom > 0, 2 * tp / denom, np.nan)
        macro = np.nanmean(np.where(np.isnan(f1).all(1, keepdims=True), 0.0, f1), axis=1)
    return f1, macro


def accuracy(conf: np.ndarray) -> np.ndarray:
    n = conf.sum((1, 2))
    return np.einsum("bkk->b", conf) / np.maximum(n, 1)


def scores(y_true, y_pred, n_classes: int) -> dict[str, float | list[float]]:
    """Accuracy, macro-F1 and per-class F1 (NaN: class absent) of one prediction set."""
    conf = confusions(y_true, y_pred, n_classes)
    f1, macro = f1_from_confusions(conf)
    return {"accuracy": float(accuracy(conf)[0]), "macro_f1": float(macro[0]), "per_class_f1": f1[0].tolist()}
