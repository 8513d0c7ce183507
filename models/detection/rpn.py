"""Region proposal network over FPN levels: anchors, head, proposals, losses (detectron2's RPN, small).

Also the IoU matcher and the fg/bg sampler, which the RoI heads reuse.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.detection.ops import box_iou, clip_boxes, decode_boxes, encode_boxes, nms_per_image

# ------------------------------------------------------------------------------ matching/sampling


def match(iou: Tensor, *, high: float, low: float, allow_low_quality: bool = False) -> tuple[Tensor, Tensor]:
    """iou [G, A] -> (matched gt index [A], label [A]): 1 if max IoU >= high, 0 if < low, -1 between.
    ``allow_low_quality``: each GT's best anchors are positive too, so no GT goes unmatched (RPN)."""
    n = iou.shape[1]
    if iou.shape[0] == 0:  # no GT: everything is background
        return iou.new_zeros(n, dtype=torch.long), iou.new_zeros(n, dtype=torch.long)
    best, idx = iou.max(dim=0)
    label = torch.full((n,), -1, dtype=torch.long, device=iou.device)
    label[best < low] = 0
    label[best >= high] = 1
    if allow_low_quality:
        per_gt = iou.max(dim=1, keepdim=True).values
        label[((iou == per_gt) & (per_gt > 0)).any(dim=0)] = 1
    return idx, label


def sample(label: Tensor, *, num: int, fg_fraction: float) -> tuple[Tensor, Tensor]:
    """Random fg (label 1) and bg (label 0) indices: at most num*fg_fraction fg, bg fills up to num."""
    fg = (label == 1).nonzero().squeeze(1)
    bg = (label == 0).nonzero().squeeze(1)
    n_fg = min(len(fg), int(num * fg_fraction))
    n_bg = min(len(bg), num - n_fg)
    fg = fg[torch.randperm(len(fg), device=fg.device)[:n_fg]]
    bg = bg[torch.randperm(len(bg), device=bg.device)[:n_bg]]
    return fg, bg


# ---------------------------------------------------------------------------------------- anchors

class Anchors(nn.Module):
    """One set of len(sizes[l]) * len(ratios) anchors centred on every cell of level l."""

    def __init__(self, *, strides: Sequence[int], sizes: Sequence[Sequence[float]], ratios: Sequence[float]):
        super().__init__()
        self.strides = tuple(int(s) for s in strides)
        self.cell = []  # [A, 4] per level, centred on 0
        for size in sizes:
            cell = []
            for s in size:
                for r in ratios:  # r = h / w at constant area s*s
                    w = s / math.sqrt(r)
                    cell.append([-w / 2, -w * r / 2, w / 2, w * r / 2])
            self.cell.append(torch.tensor(cell, dtype=torch.float32))
        self.num_anchors = len(self.cell[0])
        self._cache: dict = {}

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        """Per level [H*W*A, 4], ordered (y, x, anchor) like the head's flattened outputs."""
        out = []
        for level, (f, stride) in enumerate(zip(feats, self.strides)):
            key = (level, f.shape[-2], f.shape[-1], f.device)
            if key not in self._cache:
                ys = (torch.arange(f.shape[-2], device=f.device, dtype=torch.float32) + 0.5) * stride
                xs = (torch.arange(f.shape[-1], device=f.device, dtype=torch.float32) + 0.5) * stride
                cy, cx = torch.meshgrid(ys, xs, indexing="ij")
                shift = torch.stack([cx, cy, cx, cy], dim=-1).reshape(-1, 1, 4)
                self._cache[key] = (shift + self.cell[level].to(f.device)[None]).reshape(-1, 4)
            out.append(self._cache[key])
        return out


# ------------------------------------------------------------------------------------------- head

class RPNHead(nn.Module):
    """Shared 3x3 conv, then objectness (A) and deltas (4A) per cell, on every level."""

    def __init__(self, *, channels: int, num_anchors: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.cls = nn.Conv2d(channels, num_anchors, 1)
        self.box = nn.Conv2d(channels, 4 * num_anchors, 1)
        for m in (self.conv, self.cls, self.box):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)

    def forward(self, feats: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Per level: logits [B, H*W*A], deltas [B, H*W*A, 4]."""
        logits, deltas = [], []
        for f in feats:
            t = F.relu(self.conv(f))
            b = f.shape[0]
            logits.append(self.cls(t).permute(0, 2, 3, 1).reshape(b, -1))
            deltas.append(self.box(t).reshape(b, -1, 4, *t.shape[-2:]).permute(0, 3, 4, 1, 2).reshape(b, -1, 4))
        return logits, deltas


# -------------------------------------------------------------------------------------------- RPN

class RPN(nn.Module):
    def __init__(self, *, channels: int, strides: Sequence[int], anchor_sizes: Sequence[Sequence[float]],
                 anchor_ratios: Sequence[float] = (0.5, 1.0, 2.0), pre_nms_topk: tuple[int, int] = (200, 200),
                 post_nms_topk: tuple[int, int] = (100, 100), nms_threshold: float = 0.7,
                 batch_per_image: int = 256, fg_fraction: float = 0.5, min_size: float = 1.0):
        super().__init__()
        self.anchors = Anchors(strides=strides, sizes=anchor_sizes, ratios=anchor_ratios)
        self.head = RPNHead(channels=channels, num_anchors=self.anchors.num_anchors)
        self.pre_nms_topk, self.post_nms_topk = tuple(pre_nms_topk), tuple(post_nms_topk)
        self.nms_threshold, self.min_size = nms_threshold, min_size
        self.batch_per_image, self.fg_fraction = batch_per_image, fg_fraction

    def forward(self, feats: list[Tensor], image_size: tuple[int, int],
                gt_boxes: list[Tensor] | None = None) -> tuple[list[Tensor], dict[str, Tensor]]:
        """(proposals per image [P, 4], losses: empty unless ``gt_boxes`` is given)."""
        anchors = self.anchors(feats)
        logits, deltas = self.head(feats)
        proposals = self.proposals(anchors, [l.detach() for l in logits], [d.detach() for d in deltas],
                                   image_size)
        losses = {} if gt_boxes is None else self.losses(anchors, logits, deltas, gt_boxes)
        return proposals, losses

    @torch.no_grad()
    def proposals(self, anchors: list[Tensor], logits: list[Tensor], deltas: list[Tensor],
                  image_size: tuple[int, int]) -> list[Tensor]:
        """Top-k per level, decode, clip, drop tiny boxes, NMS per level, top-k over all levels."""
        mode = 0 if self.training else 1
        pre, post = self.pre_nms_topk[mode], self.post_nms_topk[mode]
        boxes, scores, levels = [], [], []
        for lvl, (a, lg, d) in enumerate(zip(anchors, logits, deltas)):
            k = min(pre, lg.shape[1])
            s, idx = lg.topk(k, dim=1)  # [B, k]
            dd = torch.gather(d, 1, idx[..., None].expand(-1, -1, 4))
            boxes.append(decode_boxes(dd.reshape(-1, 4), a[idx.reshape(-1)]).reshape(*idx.shape, 4))
            scores.append(s)
            levels.append(torch.full_like(idx, lvl))
        boxes, scores, levels = torch.cat(boxes, 1), torch.cat(scores, 1), torch.cat(levels, 1)
        boxes = clip_boxes(boxes, image_size)
        ok = ((boxes[..., 2] - boxes[..., 0]) > self.min_size) & ((boxes[..., 3] - boxes[..., 1]) > self.min_size)
        # NMS per level (detectron2): levels are shifted apart so they never overlap; one batched
        # NMS for all images, whose first ``post`` kept boxes are the top-k over levels.
        shift = (levels * (max(image_size) + 1)).to(boxes)[..., None]
        keep = nms_per_image(boxes + shift, scores, self.nms_threshold, max_keep=post, valid=ok & scores.isfinite())
        return [b[k] for b, k in zip(boxes, keep)]

    def losses(self, anchors: list[Tensor], logits: list[Tensor], deltas: list[Tensor],
               gt_boxes: list[Tensor]) -> dict[str, Tensor]:
        """BCE on sampled anchors + smooth-L1 on the positive ones, both per sampled anchor."""
        anchors = torch.cat(anchors)
        logits, deltas = torch.cat(logits, 1), torch.cat(deltas, 1)
        cls_terms, box_terms = [], []
        for lg, d, gt in zip(logits, deltas, gt_boxes):
            idx, label = match(box_iou(gt, anchors), high=0.7, low=0.3, allow_low_quality=True)
            fg, bg = sample(label, num=self.batch_per_image, fg_fraction=self.fg_fraction)
            both = torch.cat([fg, bg])
            target = torch.cat([torch.ones_like(fg), torch.zeros_like(bg)]).to(lg.dtype)
            cls_terms.append(F.binary_cross_entropy_with_logits(lg[both], target, reduction="sum"))
            if len(fg):
                t = encode_boxes(anchors[fg], gt[idx[fg]])
                box_terms.append(F.smooth_l1_loss(d[fg], t, beta=1 / 9, reduction="sum"))
        norm = float(self.batch_per_image * len(gt_boxes))
        zero = logits.sum() * 0.0  # keeps the graph when no image has a positive anchor
        return {"loss_rpn_cls": sum(cls_terms, zero) / norm, "loss_rpn_box": sum(box_terms, zero) / norm}
