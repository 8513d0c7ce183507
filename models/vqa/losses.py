"""Training losses for quality regression: PLCC, pairwise rank and MSE, combined with weights.

SRCC / PLCC are what VQA is judged on, so the loss optimises correlation and ordering directly;
a small MSE term keeps predictions on the (normalised) target scale.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
import torch.nn.functional as F


def plcc_loss(pred: Tensor, target: Tensor, *, eps: float = 1e-8) -> Tensor:
    """1 - Pearson correlation over the batch (0: perfectly linearly related; 2: anti-correlated).

    Undefined for fewer than 2 items or a constant target: returns 0 (no signal) rather than NaN.
    """
    pred, target = pred.float().flatten(), target.float().flatten()
    if pred.numel() < 2:
        return pred.sum() * 0.0
    pc, tc = pred - pred.mean(), target - target.mean()
    denom = torch.sqrt((pc * pc).sum() * (tc * tc).sum())
    if float(denom.detach()) < eps:
        return pred.sum() * 0.0
    return 1.0 - (pc * tc).sum() / denom


def rank_loss(pred: Tensor, target: Tensor, *, kind: str = "hinge", margin: float = 0.0) -> Tensor:
    """Mean pairwise ranking loss over pairs (i, j) with target_i > target_j.

    hinge: relu(margin - (pred_i - pred_j)) -- exactly 0 when every pair is ordered (by > margin);
    logistic: softplus(-(pred_i - pred_j)) -- smooth, never exactly 0.
    """
    pred, target = pred.float().flatten(), target.float().flatten()
    diff_p = pred[:, None] - pred[None, :]
    ordered = target[:, None] > target[None, :]
    if not bool(ordered.any()):
        return pred.sum() * 0.0
    d = diff_p[ordered]
    if kind == "hinge":
        return F.relu(margin - d).mean()
    if kind == "logistic":
        return F.softplus(-d).mean()
    raise ValueError(f"rank loss kind must be 'hinge' or 'logistic', got {kind!r}")


class QualityLoss(nn.Module):
    """plcc_weight * PLCC loss + rank_weight * rank loss + mse_weight * MSE; returns a dict of terms."""

    def __init__(self, *, plcc_weight: float = 1.0, rank_weight: float = 1.0, mse_weight: float = 0.5,
                 rank_kind: str = "hinge", rank_margin: float = 0.0):
        super().__init__()
        if min(plcc_weight, rank_weight, mse_weight) < 0 or plcc_weight + rank_weight + mse_weight <= 0:
            raise ValueError("loss weights must be >= 0 and not all 0")
        self.plcc_weight, self.rank_weight, self.mse_weight = plcc_weight, rank_weight, mse_weight
        self.rank_kind, self.rank_margin = rank_kind, rank_margin

    def forward(self, pred: Tensor, target: Tensor) -> dict[str, Tensor]:
        terms = {
            "plcc": plcc_loss(pred, target),
            "rank": rank_loss(pred, target, kind=self.rank_kind, margin=self.rank_margin),
            "mse": F.mse_loss(pred.float(), target.float()),
        }
        terms["loss"] = (self.plcc_weight * terms["plcc"] + self.rank_weight * terms["rank"]
                         + self.mse_weight * terms["mse"])
        return terms
