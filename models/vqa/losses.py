"""Training losses for quality regression: PLCC, pairwise rank and MSE, combined with weights.

SRCC / PLCC are what VQA is judged on, so the loss optimises correlation and ordering directly;
a small MSE term keeps predictions on the (normalised) target scale.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def plcc_loss(pred: Tensor, target: Tensor, *, eps: float = 1e-8) -> Tensor:
    """1 - Pearson correlation over the batch (0: perfectly linearly related; 2: anti-correlated).

    Undefined for fewer than 2 items or a constant target: returns 0 (no signal) rather than NaN.
    Branch-free on the data (torch.where, no ``float(...)``): no GPU->CPU sync per step.
    """
    pred, target = pred.float().flatten(), target.float().flatten()
    if pred.numel() < 2:  # a shape check: free
        return pred.sum() * 0.0
    pc, tc = pred - pred.mean(), target - target.mean()
    prod = (pc * pc).sum() * (tc * tc).sum()
    defined = prod.detach().sqrt() >= eps
    # sqrt of 1 where undefined: sqrt's gradient at 0 is inf, and inf * 0 would make NaN gradients.
    denom = torch.where(defined, prod, torch.ones_like(prod)).sqrt()
    return torch.where(defined, 1.0 - (pc * tc).sum() / denom, pred.sum() * 0.0)


def rank_loss(pred: Tensor, target: Tensor, *, kind: str = "hinge", margin: float = 0.0) -> Tensor:
    """Mean pairwise ranking loss over pairs (i, j) with target_i > target_j (0 when there are none).

    hinge: relu(margin - (pred_i - pred_j)) -- exactly 0 when every pair is ordered (by > margin);
    logistic: softplus(-(pred_i - pred_j)) -- smooth, never exactly 0.
    A masked mean rather than boolean indexing / ``bool(any)``: both read the mask back to the host.
    """
    if kind not in ("hinge", "logistic"):
        raise ValueError(f"rank loss kind must be 'hinge' or 'logistic', got {kind!r}")
    pred, target = pred.float().flatten(), target.float().flatten()
    diff_p = pred[:, None] - pred[None, :]
    ordered = (target[:, None] > target[None, :]).to(pred.dtype)
    per_pair = F.relu(margin - diff_p) if kind == "hinge" else F.softplus(-diff_p)
    return (per_pair * ordered).sum() / ordered.sum().clamp_min(1.0)


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
