"""A small AP@0.5 (COCO's 101-point interpolation) for validation-time checkpoint selection.

Not a COCOeval replacement (no crowd regions, no area ranges, one IoU threshold): a cheap proxy that
ranks checkpoints the same way. Each row is one image: ``boxes`` [D, 4] xyxy, ``scores`` [D] (the
ranking score), ``labels`` [D], ``gt_boxes`` [G, 4], ``gt_labels`` [G] (numpy or anything array-like).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(np.clip(x[:, 2:] - x[:, :2], 0, None), axis=1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None] - inter, 1e-9)


def match_image(boxes, scores, labels, gt_boxes, gt_labels, iou_threshold: float = 0.5) -> np.ndarray:
    """True positive flag per detection: greedily, best score first, each detection takes the
    unmatched same-class GT it overlaps most, if that IoU >= ``iou_threshold`` (COCO's rule)."""
    boxes, gt_boxes = np.asarray(boxes, float).reshape(-1, 4), np.asarray(gt_boxes, float).reshape(-1, 4)
    labels, gt_labels = np.asarray(labels).reshape(-1), np.asarray(gt_labels).reshape(-1)
    tp = np.zeros(len(boxes), dtype=bool)
    if len(boxes) == 0 or len(gt_boxes) == 0:
        return tp
    iou = _iou(boxes, gt_boxes) * (labels[:, None] == gt_labels[None])
    taken = np.zeros(len(gt_boxes), dtype=bool)
    for d in np.argsort(-np.asarray(scores, float), kind="stable"):  # sequential by nature
        cand = np.where(taken, -1.0, iou[d])
        j = int(cand.argmax())
        if cand[j] >= iou_threshold:
            tp[d], taken[j] = True, True
    return tp


def average_precision(scores: np.ndarray, tp: np.ndarray, n_gt: int) -> float:
    """101-point interpolated AP of one class from its detections' scores and TP flags."""
    if n_gt == 0:
        return float("nan")
    if len(scores) == 0:  # objects of this class, none detected (an early epoch): no recall at all
        return 0.0
    order = np.argsort(-scores, kind="stable")
    ctp = np.cumsum(tp[order])
    recall = ctp / n_gt
    precision = ctp / np.arange(1, len(ctp) + 1)
    precision = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision  # envelope
    at = np.searchsorted(recall, np.linspace(0, 1, 101), side="left")
    return float(np.where(at < len(precision), precision[np.minimum(at, len(precision) - 1)], 0.0).mean())


def ap50(rows: Sequence[dict], num_classes: int) -> float:
    """Mean over classes that have GT of AP@0.5; 0.0 when no image has GT (so 'max' monitoring works)."""
    per_class: dict[int, list] = {c: [[], [], 0] for c in range(1, num_classes + 1)}
    for r in rows:
        tp = match_image(r["boxes"], r["scores"], r["labels"], r["gt_boxes"], r["gt_labels"])
        labels, scores = np.asarray(r["labels"]).reshape(-1), np.asarray(r["scores"], float).reshape(-1)
        gt_labels = np.asarray(r["gt_labels"]).reshape(-1)
        for c, acc in per_class.items():
            m = labels == c
            acc[0].append(scores[m])
            acc[1].append(tp[m])
            acc[2] += int((gt_labels == c).sum())
    aps = [average_precision(np.concatenate(s) if s else np.zeros(0), np.concatenate(t) if t else np.zeros(0, bool), n)
           for s, t, n in per_class.values() if n > 0]
    return float(np.mean(aps)) if aps else 0.0
