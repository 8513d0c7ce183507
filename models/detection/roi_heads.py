"""RoI stage: multi-level RoIAlign, the box head, and the registry of IoU heads (IoU-Net / DIR).

Every head here is a plain module: ``forward`` maps pooled features to raw outputs, loss and
inference helpers are separate functions, and the detector (detector.py) decides what is pooled
where. An IoU head says which box it reads (``pool_on``: the proposal Q or the refined box R) and
what it predicts (``outputs``); adding ``IOU_HEADS["mine"] = MyHead`` is all a new variant needs.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.detection.ops import (
    box_area,
    box_iou,
    clip_boxes,
    decode_boxes,
    encode_boxes,
    iou_from_pi,
    purity_integrity,
    roi_align,
)
from models.detection.rpn import match, sample

BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # detectron2's RoI-head delta scaling


def to_rois(boxes: Sequence[Tensor]) -> Tensor:
    """Per-image box lists -> [K, 5] rows (batch index, x1, y1, x2, y2)."""
    return torch.cat([torch.cat([b.new_full((len(b), 1), i), b], dim=1) for i, b in enumerate(boxes)])


class MultiLevelRoIAlign(nn.Module):
    """RoIAlign each box on one FPN level, k = floor(k0 + log2(sqrt(wh) / s0)) (FPN paper, eq. 1).
    The paper's s0 = 224 suits 800 px images; here s0 is the anchor size of level k0, so a box is
    pooled from the level whose anchors it resembles."""

    def __init__(self, *, strides: Sequence[int], output_size: int = 7, sampling_ratio: int = 2,
                 canonical_level: int = 4, canonical_size: float = 64.0):
        super().__init__()
        self.strides = tuple(int(s) for s in strides)
        self.min_level = int(round(math.log2(self.strides[0])))
        self.output_size, self.sampling_ratio = int(output_size), int(sampling_ratio)
        self.canonical_level, self.canonical_size = canonical_level, canonical_size

    def assign(self, boxes: Tensor) -> Tensor:
        """Index into ``strides`` of each box's level."""
        size = box_area(boxes).clamp(min=1e-6).sqrt()
        level = torch.floor(self.canonical_level + torch.log2(size / self.canonical_size) + 1e-6)
        return (level.long() - self.min_level).clamp(0, len(self.strides) - 1)

    def forward(self, feats: list[Tensor], rois: Tensor) -> Tensor:
        s = self.output_size
        out = feats[0].new_zeros((len(rois), feats[0].shape[1], s, s))
        level = self.assign(rois[:, 1:])
        for i, (f, stride) in enumerate(zip(feats, self.strides)):  # a loop over levels, not RoIs
            idx = (level == i).nonzero().squeeze(1)
            if len(idx):
                out[idx] = roi_align(f, rois[idx], s, 1.0 / stride, self.sampling_ratio, aligned=True)
        return out


class FCTrunk(nn.Sequential):
    """flatten -> fc -> relu -> fc -> relu: detectron2's 2fc box head."""

    def __init__(self, *, in_features: int, dim: int):
        super().__init__(nn.Flatten(), nn.Linear(in_features, dim), nn.ReLU(inplace=True),
                         nn.Linear(dim, dim), nn.ReLU(inplace=True))


# ------------------------------------------------------------------------------------- box head

class BoxHead(nn.Module):
    """Class logits (background = column 0) and box deltas, class-specific unless ``cls_agnostic``."""

    def __init__(self, *, in_features: int, num_classes: int, dim: int = 128, cls_agnostic: bool = False):
        super().__init__()
        self.num_classes, self.cls_agnostic = num_classes, cls_agnostic
        self.trunk = FCTrunk(in_features=in_features, dim=dim)
        self.cls = nn.Linear(dim, num_classes + 1)
        self.box = nn.Linear(dim, 4 * (1 if cls_agnostic else num_classes))
        nn.init.normal_(self.cls.weight, std=0.01)
        nn.init.normal_(self.box.weight, std=0.001)
        nn.init.zeros_(self.cls.bias)
        nn.init.zeros_(self.box.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.trunk(x)
        return self.cls(h), self.box(h)

    def refine(self, deltas: Tensor, boxes: Tensor, image_size: tuple[int, int]) -> Tensor:
        """Refined boxes for every class [K, num_classes, 4], clipped to the image."""
        out = decode_boxes(deltas, boxes, BOX_WEIGHTS).reshape(len(boxes), deltas.shape[1] // 4, 4)
        return clip_boxes(out.expand(-1, self.num_classes, -1), image_size)


def sample_proposals(proposals: list[Tensor], targets: list[dict], *, num: int,
                     fg_fraction: float) -> tuple[list[Tensor], Tensor, Tensor]:
    """Per image, proposals + GT boxes matched at IoU 0.5 and subsampled: (boxes per image,
    labels [K] with 0 = background, matched GT box [K, 4]; meaningless where label is 0)."""
    boxes_out, labels, gts = [], [], []
    for props, t in zip(proposals, targets):
        gt, gl = t["boxes"], t["labels"]
        cand = torch.cat([props, gt])  # GT as proposals: the head sees perfect boxes from step one
        idx, lab = match(box_iou(gt, cand), high=0.5, low=0.5)
        fg, bg = sample(lab, num=num, fg_fraction=fg_fraction)
        keep = torch.cat([fg, bg])
        boxes_out.append(cand[keep])
        lab = torch.cat([gl[idx[fg]] if len(gt) else gl[:0], torch.zeros_like(bg)])
        labels.append(lab)
        gts.append(gt[idx[keep]] if len(gt) else cand[keep])
    return boxes_out, torch.cat(labels), torch.cat(gts)


def box_losses(logits: Tensor, deltas: Tensor, boxes: Tensor, labels: Tensor, gt: Tensor, *,
               beta: float = 1.0) -> dict[str, Tensor]:
    """CE over all sampled RoIs; smooth-L1 (``beta``; 0 = plain L1, detectron2's later default) on
    the foreground ones' deltas for their class, averaged over all sampled RoIs (detectron2):
    background RoIs dilute, not skip, the box loss."""
    # no RoI at all (no proposal survived, no GT): a zero, not the NaN of an empty mean
    loss_cls = F.cross_entropy(logits, labels) if len(labels) else logits.sum() * 0.0
    fg = (labels > 0).nonzero().squeeze(1)
    if deltas.shape[1] == 4:
        d = deltas[fg]
    else:
        d = deltas.reshape(len(deltas), -1, 4)[fg, labels[fg] - 1]
    target = encode_boxes(boxes[fg], gt[fg], BOX_WEIGHTS)
    # smooth-L1 at beta 0 is L1 (torch takes that branch itself)
    loss_box = F.smooth_l1_loss(d, target, beta=float(beta), reduction="sum") / max(1, len(labels))
    return {"loss_cls": loss_cls, "loss_box": loss_box}


# ------------------------------------------------------------------------------------- IoU heads

class IoUHead(nn.Module):
    """FC trunk -> one logit per (class, output). ``outputs`` names what the sigmoids estimate."""
    outputs: tuple[str, ...] = ("iou",)
    pool_on: str = "proposal"  # "proposal": features of Q; "refined": re-pooled on R (hindsight)

    def __init__(self, *, in_features: int, num_classes: int, dim: int = 128):
        super().__init__()
        self.num_classes = num_classes
        self.trunk = FCTrunk(in_features=in_features, dim=dim)
        self.out = nn.Linear(dim, num_classes * len(self.outputs))
        nn.init.normal_(self.out.weight, std=0.01)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, labels: Tensor) -> Tensor:
        """Logits [K, len(outputs)] for each sample's class (labels in 1..num_classes)."""
        o = self.out(self.trunk(x)).reshape(len(x), self.num_classes, len(self.outputs))
        return o[torch.arange(len(x), device=x.device), labels - 1]

    def predict(self, logits: Tensor) -> dict[str, Tensor]:
        return {name: logits[:, i].sigmoid() for i, name in enumerate(self.outputs)}

    def loss(self, logits: Tensor, targets: dict[str, Tensor]) -> Tensor:
        """BCE with soft targets: gradient sigmoid - target, well scaled on all of [0, 1]."""
        target = torch.stack([targets[n] for n in self.outputs], dim=1)
        return F.binary_cross_entropy_with_logits(logits, target)


class DirectIoUHead(IoUHead):
    """IoU-Net: IoU(R, G) straight from the features of the proposal Q."""


class DecoupledIoUHead(IoUHead):
    """Purity and integrity of R from Q's features, IoU recombined (DIR without re-alignment)."""
    outputs = ("purity", "integrity")

    def predict(self, logits: Tensor) -> dict[str, Tensor]:
        out = super().predict(logits)
        return {**out, "iou": iou_from_pi(out["purity"], out["integrity"])}


class DIRHead(DecoupledIoUHead):
    """DIR: purity and integrity from features re-pooled on the refined box R itself."""
    pool_on = "refined"


IOU_HEADS: dict[str, type[IoUHead]] = {"direct": DirectIoUHead, "decoupled": DecoupledIoUHead, "dir": DIRHead}


def jitter_boxes(gt: Tensor, n: int, *, low: float = 0.5, candidates: int = 8) -> tuple[Tensor, Tensor]:
    """``n`` boxes per GT with IoU(box, GT) roughly uniform on [low, 1]: for each uniform target IoU
    the closest of ``candidates`` random shift/scale jitters (of random magnitude) is kept.
    Returns (boxes [G*n, 4], GT index [G*n])."""
    g = len(gt)
    if g == 0 or n == 0:
        return gt.new_zeros((0, 4)), torch.zeros(0, dtype=torch.long, device=gt.device)
    w, h = (gt[:, 2] - gt[:, 0])[:, None, None], (gt[:, 3] - gt[:, 1])[:, None, None]
    cx, cy = gt[:, None, None, 0] + w / 2, gt[:, None, None, 1] + h / 2
    mag = torch.rand(g, n, candidates, 1, device=gt.device)
    d = (torch.rand(g, n, candidates, 4, device=gt.device) * 2 - 1) * mag * gt.new_tensor([0.3, 0.3, 0.5, 0.5])
    cx, cy = cx + d[..., 0] * w, cy + d[..., 1] * h
    nw, nh = w * d[..., 2].exp(), h * d[..., 3].exp()
    boxes = torch.stack([cx - nw / 2, cy - nh / 2, cx + nw / 2, cy + nh / 2], dim=-1)  # [G, n, c, 4]
    p, i = purity_integrity(boxes, gt[:, None, None].expand_as(boxes))
    want = low + (1 - low) * torch.rand(g, n, 1, device=gt.device)
    pick = (iou_from_pi(p, i) - want).abs().argmin(dim=2)  # [G, n]
    boxes = boxes.gather(2, pick[..., None, None].expand(-1, -1, 1, 4)).reshape(-1, 4)
    return boxes, torch.arange(g, device=gt.device).repeat_interleave(n)


def iou_samples(proposals: list[Tensor], targets: list[dict], *, num: int, proposal_fraction: float = 0.5,
                low_fraction: float = 0.0) -> tuple[list[Tensor], Tensor, Tensor]:
    """IoU-branch samples Q per image: positive proposals (IoU >= 0.5, up to num*proposal_fraction),
    proposals below IoU 0.5 with their best-overlapping GT (up to num*low_fraction: what inference
    feeds the heads too, so they learn to score a poor box low), topped up with jittered GT boxes.
    Returns (Q per image, matched GT [K, 4], labels [K])."""
    qs, gts, labels = [], [], []
    for props, t in zip(proposals, targets):
        gt, gl = t["boxes"], t["labels"]
        if len(gt) == 0:
            qs.append(gt.new_zeros((0, 4)))
            continue
        best, idx = box_iou(gt, props).max(dim=0)
        pos = (best >= 0.5).nonzero().squeeze(1)
        pos = pos[torch.randperm(len(pos), device=pos.device)[:int(num * proposal_fraction)]]
        if low_fraction > 0:  # (no draw otherwise: the default keeps the random stream, and the models, as they were)
            low = (best < 0.5).nonzero().squeeze(1)
            pos = torch.cat([pos, low[torch.randperm(len(low), device=low.device)[:int(num * low_fraction)]]])
        jit, jidx = jitter_boxes(gt, math.ceil(max(0, num - len(pos)) / len(gt)))
        gidx = torch.cat([idx[pos], jidx])[:num]
        qs.append(torch.cat([props[pos], jit])[:num])
        gts.append(gt[gidx])
        labels.append(gl[gidx])
    empty = proposals[0].new_zeros((0, 4))
    return qs, torch.cat(gts) if gts else empty, torch.cat(labels) if labels else empty[:, 0].long()


def iou_targets(refined: Tensor, gt: Tensor) -> dict[str, Tensor]:
    """Targets of every IoU head for refined boxes R and their GT G (elementwise)."""
    p, i = purity_integrity(refined, gt)
    return {"purity": p, "integrity": i, "iou": iou_from_pi(p, i)}
