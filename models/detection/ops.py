"""Box and RoI operators in plain torch (torchvision does not load here).

Each fast op has a slow, obviously-correct ``*_reference`` twin that the tests compare it with.
Boxes are xyxy in image pixels throughout.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

# dw/dh above this would overflow exp(); log(1000/16) as in detectron2.
SCALE_CLAMP = math.log(1000.0 / 16)


def _pair(size) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))


# --------------------------------------------------------------------------------------- RoIAlign

def _sample_coords(rois: Tensor, out: tuple[int, int], spatial_scale: float, sampling_ratio: int,
                   aligned: bool) -> tuple[Tensor, Tensor]:
    """Sample positions in feature-map pixels: y [K, oh*sr], x [K, ow*sr] (torchvision's grid)."""
    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (rois[:, i] * spatial_scale - offset for i in range(1, 5))
    w, h = x2 - x1, y2 - y1
    if not aligned:  # legacy Detectron: rois are at least one pixel wide
        w, h = w.clamp(min=1.0), h.clamp(min=1.0)
    (oh, ow), sr = out, sampling_ratio
    # bin index + (sample index + 0.5) / sr, for every sample of every bin along one axis
    ty = (torch.arange(oh * sr, device=rois.device, dtype=rois.dtype) + 0.5) / sr
    tx = (torch.arange(ow * sr, device=rois.device, dtype=rois.dtype) + 0.5) / sr
    ys = y1[:, None] + ty[None] * (h / oh)[:, None]
    xs = x1[:, None] + tx[None] * (w / ow)[:, None]
    return ys, xs


def roi_align(features: Tensor, rois: Tensor, output_size, spatial_scale: float,
              sampling_ratio: int = 2, aligned: bool = True) -> Tensor:
    """torchvision.ops.roi_align for a fixed ``sampling_ratio`` > 0: [N,C,H,W] x [K,5] -> [K,C,oh,ow].

    ``rois`` rows are (batch index, x1, y1, x2, y2) in image pixels. Samples come from grid_sample
    with border padding (= torchvision's clamp to the edge inside [-1, H]) times a mask that zeroes
    samples beyond it; each bin averages its sr x sr samples. Differentiable w.r.t. ``features``.
    """
    if sampling_ratio <= 0:
        raise ValueError("roi_align: sampling_ratio must be > 0 (the adaptive grid is not vectorised)")
    (oh, ow), sr = _pair(output_size), int(sampling_ratio)
    n, c, hgt, wid = features.shape
    k = rois.shape[0]
    if k == 0:
        return features.new_zeros((0, c, oh, ow))
    rois = rois.to(features.dtype)
    ys, xs = _sample_coords(rois, (oh, ow), spatial_scale, sr, aligned)
    valid = (((ys >= -1) & (ys <= hgt)).to(features.dtype)[:, :, None]
             * ((xs >= -1) & (xs <= wid)).to(features.dtype)[:, None, :])  # [K, oh*sr, ow*sr]
    # grid_sample(align_corners=False) maps pixel p to (2p + 1) / size - 1
    gy = ((2 * ys + 1) / hgt - 1)[:, :, None].expand(-1, -1, ow * sr)
    gx = ((2 * xs + 1) / wid - 1)[:, None, :].expand(-1, oh * sr, -1)
    grid = torch.stack([gx, gy], dim=-1)  # [K, oh*sr, ow*sr, 2]
    # One grid_sample for the whole batch: image b's RoIs are stacked along the output height, and
    # images with fewer RoIs are padded (padding samples are computed, then dropped).
    batch = rois[:, 0].long()
    counts = torch.bincount(batch, minlength=n)
    order = batch.argsort(stable=True)
    rank = torch.empty_like(batch)
    rank[order] = torch.arange(k, device=rois.device) - (counts.cumsum(0) - counts)[batch[order]]
    full = grid.new_zeros((n, int(counts.max()), oh * sr, ow * sr, 2))
    full[batch, rank] = grid
    s = F.grid_sample(features, full.reshape(n, -1, ow * sr, 2), mode="bilinear", padding_mode="border",
                      align_corners=False)
    s = s.reshape(n, c, -1, oh * sr, ow * sr)[batch, :, rank]  # [K, C, oh*sr, ow*sr]
    if not bool(valid.all()):  # clipped boxes never sample outside: skip a full-size multiply
        s = s * valid[:, None]
    return F.avg_pool2d(s, sr) if sr > 1 else s


def _bilinear(fmap: Tensor, y: float, x: float) -> Tensor:
    """torchvision's bilinear_interpolate, one point, written out."""
    hgt, wid = fmap.shape[-2:]
    if y < -1.0 or y > hgt or x < -1.0 or x > wid:
        return fmap.new_zeros(fmap.shape[0])
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(y), int(x)
    if y0 >= hgt - 1:
        y0 = y1 = hgt - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= wid - 1:
        x0 = x1 = wid - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    hy, hx = 1 - ly, 1 - lx
    return (hy * hx * fmap[:, y0, x0] + hy * lx * fmap[:, y0, x1]
            + ly * hx * fmap[:, y1, x0] + ly * lx * fmap[:, y1, x1])


def roi_align_reference(features: Tensor, rois: Tensor, output_size, spatial_scale: float,
                        sampling_ratio: int = 2, aligned: bool = True) -> Tensor:
    """Loop-per-RoI/bin/sample roi_align (torchvision's CPU kernel in Python). Tests only: slow."""
    (oh, ow) = _pair(output_size)
    offset = 0.5 if aligned else 0.0
    out = features.new_zeros((rois.shape[0], features.shape[1], oh, ow))
    for k, roi in enumerate(rois.tolist()):
        fmap = features[int(roi[0])]
        x1, y1, x2, y2 = (v * spatial_scale - offset for v in roi[1:])
        w, h = x2 - x1, y2 - y1
        if not aligned:
            w, h = max(w, 1.0), max(h, 1.0)
        bh, bw = h / oh, w / ow
        gh = sampling_ratio if sampling_ratio > 0 else math.ceil(h / oh)
        gw = sampling_ratio if sampling_ratio > 0 else math.ceil(w / ow)
        for ph in range(oh):
            for pw in range(ow):
                acc = fmap.new_zeros(fmap.shape[0])
                for iy in range(gh):
                    y = y1 + ph * bh + (iy + 0.5) * bh / gh
                    for ix in range(gw):
                        acc = acc + _bilinear(fmap, y, x1 + pw * bw + (ix + 0.5) * bw / gw)
                out[k, :, ph, pw] = acc / max(gh * gw, 1)
    return out


# ------------------------------------------------------------------------------------ box geometry

def box_area(boxes: Tensor) -> Tensor:
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(min=0)


def _inter(a: Tensor, b: Tensor) -> Tensor:
    """Intersection areas of broadcastable box tensors."""
    wh = (torch.minimum(a[..., 2:], b[..., 2:]) - torch.maximum(a[..., :2], b[..., :2])).clamp(min=0)
    return wh[..., 0] * wh[..., 1]


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise IoU [N, M]; 0 where both boxes are empty."""
    inter = _inter(a[:, None], b[None])
    union = box_area(a)[:, None] + box_area(b)[None] - inter
    return inter / union.clamp(min=1e-9)


def purity_integrity(boxes: Tensor, gt: Tensor) -> tuple[Tensor, Tensor]:
    """Elementwise DIR targets: P = |B n G| / |B| (how much of B is object), I = |B n G| / |G|."""
    inter = _inter(boxes, gt)
    return inter / box_area(boxes).clamp(min=1e-9), inter / box_area(gt).clamp(min=1e-9)


def iou_from_pi(purity: Tensor, integrity: Tensor) -> Tensor:
    """IoU = P*I / (P + I - P*I): with P = X/|B|, I = X/|G| this is X / (|B| + |G| - X)."""
    pi = purity * integrity
    return pi / (purity + integrity - pi).clamp(min=1e-9)


def clip_boxes(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Clamp xyxy boxes into an image of ``size`` = (height, width)."""
    h, w = size
    x = boxes[..., 0::2].clamp(0, w)
    y = boxes[..., 1::2].clamp(0, h)
    return torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], dim=-1)


# ---------------------------------------------------------------------------------- box transform

def encode_boxes(boxes: Tensor, targets: Tensor, weights=(1.0, 1.0, 1.0, 1.0)) -> Tensor:
    """Deltas (dx, dy, dw, dh) that take ``boxes`` to ``targets`` (R-CNN parameterisation)."""
    wx, wy, ww, wh = weights
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    cx, cy = boxes[:, 0] + 0.5 * w, boxes[:, 1] + 0.5 * h
    tw, th = targets[:, 2] - targets[:, 0], targets[:, 3] - targets[:, 1]
    tx, ty = targets[:, 0] + 0.5 * tw, targets[:, 1] + 0.5 * th
    return torch.stack([wx * (tx - cx) / w, wy * (ty - cy) / h,
                        ww * torch.log(tw / w), wh * torch.log(th / h)], dim=1)


def decode_boxes(deltas: Tensor, boxes: Tensor, weights=(1.0, 1.0, 1.0, 1.0)) -> Tensor:
    """Apply deltas [K, 4*m] to boxes [K, 4] -> [K, 4*m] (m = 1, or one box per class)."""
    wx, wy, ww, wh = weights
    boxes = boxes.to(deltas.dtype)
    w, h = boxes[:, 2:3] - boxes[:, 0:1], boxes[:, 3:4] - boxes[:, 1:2]
    cx, cy = boxes[:, 0:1] + 0.5 * w, boxes[:, 1:2] + 0.5 * h
    dx, dy = deltas[:, 0::4] / wx, deltas[:, 1::4] / wy
    dw = (deltas[:, 2::4] / ww).clamp(max=SCALE_CLAMP)
    dh = (deltas[:, 3::4] / wh).clamp(max=SCALE_CLAMP)
    pcx, pcy, pw, ph = dx * w + cx, dy * h + cy, torch.exp(dw) * w, torch.exp(dh) * h
    out = torch.stack([pcx - 0.5 * pw, pcy - 0.5 * ph, pcx + 0.5 * pw, pcy + 0.5 * ph], dim=2)
    return out.reshape(deltas.shape)


# ------------------------------------------------------------------------------------------- NMS

def nms(boxes: Tensor, scores: Tensor, iou_threshold: float, *, max_keep: int | None = None) -> Tensor:
    """Greedy NMS; kept indices by decreasing score (ties: lower index first); ``max_keep`` stops
    early once that many are kept (the RPN's top-k after NMS)."""
    return nms_per_image(boxes[None], scores[None], iou_threshold, max_keep=max_keep)[0]


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float, *,
                max_keep: int | None = None) -> Tensor:
    """NMS within each ``idxs`` group: boxes are shifted apart per group so groups never overlap."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    span = boxes.max() - boxes.min() + 1
    shifted = boxes + (idxs.to(boxes) * span)[:, None]
    return nms(shifted, scores, iou_threshold, max_keep=max_keep)


def nms_per_image(boxes: Tensor, scores: Tensor, iou_threshold: float, *, max_keep: int | None = None,
                  valid: Tensor | None = None) -> list[Tensor]:
    """Greedy NMS of B images at once on padded [B, N, 4] boxes / [B, N] scores (``valid`` masks the
    padding). Returns per image the kept indices into N, by decreasing score.

    Each step keeps, in every image, its best surviving box and drops the boxes it overlaps by more
    than ``iou_threshold``: the loop runs (most boxes kept in one image) times for the whole batch.
    The loop is numpy on the CPU: per step it is a dozen tiny array ops, where torch's per-op
    overhead (and a GPU's launches) would cost ~10x more; only [B, N, 4] numbers cross over.
    """
    b, n = scores.shape
    if n == 0:
        return [torch.zeros(0, dtype=torch.long, device=boxes.device) for _ in range(b)]
    valid = torch.ones_like(scores, dtype=torch.bool) if valid is None else valid
    order = torch.sort(scores.masked_fill(~valid, float("-inf")), dim=1, descending=True, stable=True).indices
    bx = boxes.detach().gather(1, order[..., None].expand(-1, -1, 4)).cpu().double().numpy()
    alive = valid.gather(1, order).cpu().numpy()
    x1, y1, x2, y2 = bx[..., 0], bx[..., 1], bx[..., 2], bx[..., 3]
    area = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    keep = np.zeros_like(alive)
    rows = np.arange(b)
    for _ in range(n if max_keep is None else min(n, max_keep)):
        if not alive.any():
            break
        cur = alive.argmax(axis=1)  # the first alive box: the best one left (boxes are sorted)
        keep[rows, cur] |= alive[rows, cur]  # |=: an image with none alive points at 0, keeps it as is
        c = (rows, cur)
        w = np.maximum(np.minimum(x2[c][:, None], x2) - np.maximum(x1[c][:, None], x1), 0)
        h = np.maximum(np.minimum(y2[c][:, None], y2) - np.maximum(y1[c][:, None], y1), 0)
        inter = w * h
        alive &= inter <= iou_threshold * np.maximum(area[c][:, None] + area - inter, 1e-9)
        alive[c] = False
    keep = torch.from_numpy(keep).to(order.device)
    return [order[i][keep[i]] for i in range(b)]


def nms_reference(boxes: Tensor, scores: Tensor, iou_threshold: float, idxs: Tensor | None = None) -> list[int]:
    """Textbook greedy NMS in Python (tests only); ``idxs``: only same-group boxes suppress."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    keep: list[int] = []
    for i in order:
        if all((idxs is not None and int(idxs[i]) != int(idxs[j]))
               or float(box_iou(boxes[i:i + 1], boxes[j:j + 1])[0, 0]) <= iou_threshold for j in keep):
            keep.append(i)
    return keep


def iou_guided_nms(boxes: Tensor, ious: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float, *,
                   max_keep: int | None = None) -> tuple[Tensor, Tensor]:
    """IoU-guided NMS (IoU-Net, Jiang et al. ECCV 2018, Algorithm 1) within each ``labels`` class.

    Boxes are visited by decreasing *predicted IoU* ``ious`` (ties: lower index first); the best box
    left is kept and suppresses the boxes of its class that overlap it by more than
    ``iou_threshold``, and it takes the highest classification ``scores`` among itself and the boxes
    it suppressed. Returns (kept indices, their new scores), ordered by decreasing new score (ties:
    the IoU visiting order); ``max_keep`` keeps the best that many of those (after all suppression,
    since the final order is not the visiting order).
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device), scores.new_zeros(0)
    order = torch.sort(ious, descending=True, stable=True).indices
    bx = boxes.detach()[order].cpu().double().numpy()
    sc = scores.detach()[order].cpu().double().numpy()
    lab = labels[order].cpu().numpy()
    x1, y1, x2, y2 = bx[:, 0], bx[:, 1], bx[:, 2], bx[:, 3]
    area = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    alive = np.ones(len(sc), dtype=bool)
    kept, new = [], []
    while alive.any():
        c = int(alive.argmax())  # the first alive box: highest predicted IoU left
        w = np.maximum(np.minimum(x2[c], x2) - np.maximum(x1[c], x1), 0)
        h = np.maximum(np.minimum(y2[c], y2) - np.maximum(y1[c], y1), 0)
        inter = w * h
        group = alive & (lab == lab[c]) & (inter > iou_threshold * np.maximum(area[c] + area - inter, 1e-9))
        group[c] = True
        kept.append(c)
        new.append(float(sc[group].max()))
        alive &= ~group
    kept_np, new_np = np.asarray(kept), np.asarray(new)
    final = np.argsort(-new_np, kind="stable")
    if max_keep is not None:
        final = final[:max_keep]
    keep = order[torch.from_numpy(kept_np[final]).to(order.device)]
    return keep, torch.from_numpy(new_np[final]).to(scores)


def iou_guided_nms_reference(boxes: Tensor, ious: Tensor, scores: Tensor, labels: Tensor,
                             iou_threshold: float) -> list[tuple[int, float]]:
    """IoU-Net's Algorithm 1 in plain Python (tests only): [(kept index, new score)] by new score."""
    left = sorted(range(len(ious)), key=lambda i: (-float(ious[i]), i))
    out = []
    while left:
        i = left.pop(0)
        s = float(scores[i])
        rest = []
        for j in left:
            same = int(labels[j]) == int(labels[i])
            if same and float(box_iou(boxes[i:i + 1], boxes[j:j + 1])[0, 0]) > iou_threshold:
                s = max(s, float(scores[j]))
            else:
                rest.append(j)
        left = rest
        out.append((i, s))
    return [out[k] for k in sorted(range(len(out)), key=lambda k: -out[k][1])]
