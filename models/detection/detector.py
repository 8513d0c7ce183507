"""The two-stage detector of Decoupled IoU Regression (DIR, ACM MM 2021) with its IoU-head variants.

One shared detector (backbone + FPN + RPN + box head) and one IoU branch per variant, each trained
on detached features, so every variant ranks the very same candidate boxes and only the IoU
estimate differs. Inference is split: ``candidates`` runs the network once and returns every head's
predictions; ``postprocess`` ranks and suppresses them for one variant (no new forward pass).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from models.detection.backbone import BackboneFPN
from models.detection.ops import batched_nms, clip_boxes, iou_guided_nms
from models.detection.roi_heads import (
    IOU_HEADS,
    BoxHead,
    MultiLevelRoIAlign,
    box_losses,
    iou_samples,
    iou_targets,
    sample_proposals,
    to_rois,
)
from models.detection.rpn import RPN

PREDICTIONS = ("iou", "purity", "integrity")
# IoU-guided NMS (IoU-Net): visits boxes by this head's predicted IoU; a variant of the detector
# whenever it has that head. "direct" is IoU-Net's own head (one IoU from the proposal's features).
IOU_NMS_HEAD = "direct"


def _plain(v):
    """Tuples -> lists, recursively: config stays JSON/YAML friendly and rebuilds the same model."""
    return [_plain(x) for x in v] if isinstance(v, (list, tuple)) else v


class Detector(nn.Module):
    def __init__(self, *, num_classes: int, channels: Sequence[int] = (16, 32, 64, 96), norm: str = "gn",
                 fpn_channels: int = 64,
                 fpn_levels: Sequence[int] = (3, 4, 5), anchor_sizes: Sequence = (32, 64, 128),
                 anchor_ratios: Sequence[float] = (0.5, 1.0, 2.0), roi_size: int = 7, roi_sampling_ratio: int = 1,
                 head_dim: int = 128,
                 iou_heads: Sequence[str] = ("direct", "decoupled", "dir"),
                 rpn_pre_nms_topk: Sequence[int] = (200, 200), rpn_post_nms_topk: Sequence[int] = (100, 100),
                 rpn_batch_per_image: int = 256, roi_batch_per_image: int = 64, roi_fg_fraction: float = 0.25,
                 iou_samples_per_image: int = 32, iou_min_target: float = 0.4, iou_low_fraction: float = 0.0,
                 cls_agnostic_box: bool = False, box_loss_beta: float = 1.0, max_candidates: int = 1000):
        super().__init__()
        unknown = [h for h in iou_heads if h not in IOU_HEADS]
        if unknown or "none" in iou_heads:
            raise ValueError(f"unknown IoU heads {unknown or ['none']}; registered: {sorted(IOU_HEADS)}")
        if len(anchor_sizes) != len(fpn_levels):
            raise ValueError(f"anchor_sizes needs one entry per FPN level {tuple(fpn_levels)}")
        self._config = _plain(dict(
            num_classes=num_classes, channels=channels, norm=norm, fpn_channels=fpn_channels, fpn_levels=fpn_levels,
            anchor_sizes=anchor_sizes, anchor_ratios=anchor_ratios, roi_size=roi_size,
            roi_sampling_ratio=roi_sampling_ratio, head_dim=head_dim,
            iou_heads=iou_heads, rpn_pre_nms_topk=rpn_pre_nms_topk, rpn_post_nms_topk=rpn_post_nms_topk,
            rpn_batch_per_image=rpn_batch_per_image, roi_batch_per_image=roi_batch_per_image,
            roi_fg_fraction=roi_fg_fraction, iou_samples_per_image=iou_samples_per_image,
            iou_min_target=iou_min_target, iou_low_fraction=iou_low_fraction, cls_agnostic_box=cls_agnostic_box,
            box_loss_beta=box_loss_beta, max_candidates=max_candidates))
        self.num_classes = int(num_classes)
        self.roi_batch_per_image, self.roi_fg_fraction = roi_batch_per_image, roi_fg_fraction
        self.iou_samples_per_image, self.iou_min_target = iou_samples_per_image, iou_min_target
        self.iou_low_fraction = float(iou_low_fraction)
        self.max_candidates = max_candidates
        self.box_loss_beta = float(box_loss_beta)
        # ImageNet statistics: inputs are RGB in [0, 1]
        self.register_buffer("pixel_mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

        self.backbone = BackboneFPN(channels=channels, fpn_channels=fpn_channels, fpn_levels=fpn_levels, norm=norm)
        sizes = [tuple(s) if isinstance(s, (list, tuple)) else (s,) for s in anchor_sizes]
        strides = self.backbone.strides
        self.rpn = RPN(channels=fpn_channels, strides=strides, anchor_sizes=sizes, anchor_ratios=anchor_ratios,
                       pre_nms_topk=tuple(rpn_pre_nms_topk), post_nms_topk=tuple(rpn_post_nms_topk),
                       batch_per_image=rpn_batch_per_image)
        mid = len(strides) // 2  # boxes the size of the middle level's anchors are pooled there
        self.pooler = MultiLevelRoIAlign(strides=strides, output_size=roi_size, sampling_ratio=roi_sampling_ratio,
                                         canonical_level=self.backbone.fpn_levels[mid], canonical_size=sizes[mid][0])
        in_features = fpn_channels * roi_size * roi_size
        self.box_head = BoxHead(in_features=in_features, num_classes=num_classes, dim=head_dim,
                                cls_agnostic=cls_agnostic_box)
        self.iou_heads = nn.ModuleDict({name: IOU_HEADS[name](in_features=in_features, num_classes=num_classes,
                                                               dim=head_dim) for name in iou_heads})

    @property
    def config(self) -> dict:
        """Constructor kwargs: ``Detector(**d.config)`` rebuilds the architecture."""
        return _plain(self._config)

    @property
    def variants(self) -> tuple[str, ...]:
        extra = ("iou_nms",) if IOU_NMS_HEAD in self.iou_heads else ()
        return ("none", *self.iou_heads.keys(), *extra)

    def features(self, images: Tensor) -> list[Tensor]:
        return self.backbone((images - self.pixel_mean) / self.pixel_std)

    def forward(self, images: Tensor, targets: list[dict] | None = None):
        """Training with targets: dict of losses. Otherwise: ``detect(images)`` (variant "dir")."""
        if self.training and targets is not None:
            return self.losses(images, targets)
        return self.detect(images, variant="dir" if "dir" in self.iou_heads else "none")

    # ---------------------------------------------------------------------------------- training
    def losses(self, images: Tensor, targets: list[dict]) -> dict[str, Tensor]:
        size = tuple(images.shape[-2:])
        targets = [{"boxes": t["boxes"].to(images).reshape(-1, 4), "labels": t["labels"].to(images.device).long()}
                   for t in targets]
        feats = self.features(images)
        proposals, losses = self.rpn(feats, size, [t["boxes"] for t in targets])
        boxes, labels, gt = sample_proposals(proposals, targets, num=self.roi_batch_per_image,
                                             fg_fraction=self.roi_fg_fraction)
        rois = to_rois(boxes)
        logits, deltas = self.box_head(self.pooler(feats, rois))
        losses.update(box_losses(logits, deltas, rois[:, 1:], labels, gt, beta=self.box_loss_beta))
        losses.update(self._iou_losses([f.detach() for f in feats], proposals, targets, size))
        return losses

    def _iou_losses(self, feats: list[Tensor], proposals: list[Tensor], targets: list[dict],
                    size: tuple[int, int]) -> dict[str, Tensor]:
        """Each IoU head learns P/I/IoU of the refined box R = box_head(Q) w.r.t. Q's GT. ``feats`` are
        detached and R is computed without grad: the IoU branch never changes the shared detector."""
        qs, gt, labels = iou_samples(proposals, targets, num=self.iou_samples_per_image,
                                     low_fraction=self.iou_low_fraction)
        q_rois = to_rois([clip_boxes(q, size) for q in qs])
        with torch.no_grad():
            xq = self.pooler(feats, q_rois)
            _, deltas = self.box_head(xq)
            refined = self.box_head.refine(deltas, q_rois[:, 1:], size)
            refined = refined[torch.arange(len(xq), device=xq.device), labels - 1]  # R for the GT's class
            tgt = iou_targets(refined, gt)
            keep = tgt["iou"] >= self.iou_min_target  # the heads are for boxes that could be true positives
        xq, labels, tgt = xq[keep], labels[keep], {k: v[keep] for k, v in tgt.items()}
        r_rois = torch.cat([q_rois[keep, :1], refined[keep]], dim=1)
        need_r = any(h.pool_on == "refined" for h in self.iou_heads.values())
        xr = self.pooler(feats, r_rois) if need_r else None
        out = {}
        for name, head in self.iou_heads.items():
            x = xr if head.pool_on == "refined" else xq
            if len(x):
                out[f"loss_iou_{name}"] = head.loss(head(x, labels), tgt)
            else:  # no GT in the batch: a zero that still touches the head's parameters
                out[f"loss_iou_{name}"] = sum(p.sum() for p in head.parameters()) * 0.0
        return out

    # --------------------------------------------------------------------------------- inference
    @torch.no_grad()
    def candidates(self, images: Tensor, *, score_threshold: float = 0.05) -> list[dict[str, Tensor]]:
        """Per image: every (proposal, class) with class score > ``score_threshold`` (at most
        ``max_candidates``, best first): refined ``boxes``, ``scores``, ``labels`` (1..num_classes),
        the ``proposals`` Q they came from, and each IoU head's ``iou_<name>`` (+ ``purity_<name>``,
        ``integrity_<name>`` for decoupled heads). Nothing suppressed yet."""
        size = tuple(images.shape[-2:])
        feats = self.features(images)
        proposals, _ = self.rpn(feats, size)
        rois = to_rois(proposals)
        x = self.pooler(feats, rois)
        logits, deltas = self.box_head(x)
        probs = logits.softmax(dim=1)[:, 1:]
        boxes = self.box_head.refine(deltas, rois[:, 1:], size)  # [P, C, 4]
        r, c = (probs > score_threshold).nonzero().unbind(1)
        batch, score = rois[r, 0].long(), probs[r, c]
        # best max_candidates per image: sort by score, then (stably) by image
        order = score.argsort(descending=True)
        order = order[batch[order].argsort(stable=True)]
        first = torch.searchsorted(batch[order], batch[order])
        order = order[(torch.arange(len(order), device=order.device) - first) < self.max_candidates]
        r, c, batch = r[order], c[order], batch[order]
        labels = c + 1
        cand = {"boxes": boxes[r, c], "scores": probs[r, c], "labels": labels, "proposals": rois[r, 1:]}
        if any(h.pool_on == "refined" for h in self.iou_heads.values()):
            xr = self.pooler(feats, torch.cat([batch[:, None].to(boxes), cand["boxes"]], dim=1))
        for name, head in self.iou_heads.items():
            inp = xr if head.pool_on == "refined" else x[r]
            pred = head.predict(head(inp, labels))
            cand.update({f"{k}_{name}": v for k, v in pred.items()})
        return [{k: v[batch == i] for k, v in cand.items()} for i in range(len(images))]

    def postprocess(self, candidates: list[dict[str, Tensor]], variant: str, *, nms_threshold: float = 0.5,
                    max_detections: int = 100) -> list[dict[str, Tensor]]:
        """Rank by score x predicted IoU (score alone for "none"), class-wise NMS by that rank, keep
        the best ``max_detections``. "iou_nms": IoU-guided NMS (:func:`ops.iou_guided_nms`) by the
        ``IOU_NMS_HEAD`` head's predicted IoU; ``scores`` and ``rank`` are then the class score each
        kept box inherits (the max over the boxes it suppressed). ``iou``/``purity``/``integrity`` are NaN where the variant has none."""
        if variant not in self.variants:
            raise ValueError(f"unknown variant {variant!r}; this detector has {self.variants}")
        out = []
        for cand in candidates:
            scores = cand["scores"]
            nan = torch.full_like(scores, float("nan"))
            if variant == "iou_nms":  # suppress by predicted IoU, rank by the inherited class score
                pred = {k: cand.get(f"{k}_{IOU_NMS_HEAD}", nan) for k in PREDICTIONS}
                keep, inherited = iou_guided_nms(cand["boxes"], pred["iou"], scores, cand["labels"],
                                                 nms_threshold, max_keep=max_detections)
                out.append({"boxes": cand["boxes"][keep], "scores": inherited, "labels": cand["labels"][keep],
                            **{k: v[keep] for k, v in pred.items()}, "rank": inherited})
                continue
            pred = {k: cand.get(f"{k}_{variant}", nan) for k in PREDICTIONS}
            rank = scores if variant == "none" else scores * pred["iou"]
            keep = batched_nms(cand["boxes"], rank, cand["labels"], nms_threshold, max_keep=max_detections)
            out.append({"boxes": cand["boxes"][keep], "scores": scores[keep], "labels": cand["labels"][keep],
                        **{k: v[keep] for k, v in pred.items()}, "rank": rank[keep]})
        return out

    def detect(self, images: Tensor, variant: str = "dir", *, score_threshold: float = 0.05,
               nms_threshold: float = 0.5, max_detections: int = 100) -> list[dict[str, Tensor]]:
        """``candidates`` + ``postprocess`` for one variant."""
        cands = self.candidates(images, score_threshold=score_threshold)
        return self.postprocess(cands, variant, nms_threshold=nms_threshold, max_detections=max_detections)
