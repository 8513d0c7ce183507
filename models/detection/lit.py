"""Lightning wrappers for the DIR detector: the training module and a COCO-format data module.

No params.yaml here: the pipeline maps its params to these explicit arguments.
"""
from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from models.common.lit import HistoryCheckpoint
from models.detection.detector import Detector
from models.detection.inference import letterbox, read_rgb, to_tensor
from models.detection.metrics import ap50

# (image path, COCO boxes [[x, y, w, h], ...], COCO category id per box)
Item = tuple[str, Sequence[Sequence[float]], Sequence[int]]


def merge_val_rows(per_rank: Sequence[Sequence[dict]]) -> list[dict]:
    """Validation rows gathered from every rank -> one row per split image, ordered by ``index``.
    DistributedSampler pads the split with repeats so ranks get equal counts; the first is kept."""
    seen: dict[int, dict] = {}
    for rows in per_rank:
        for r in rows:
            seen.setdefault(int(r["index"]), r)
    return [seen[i] for i in sorted(seen)]


# ------------------------------------------------------------------------------------------- module

class DetectionLitModule(HistoryCheckpoint, L.LightningModule):
    """Detector + AdamW with linear warm-up then cosine decay. Validation: AP@0.5 of ``val_variant``
    over the whole val split (``val_ap50``, the checkpoint monitor). ``net_config`` lets a
    checkpoint rebuild the net: ``DetectionLitModule.load_from_checkpoint(path)`` needs no ``net``."""

    history_val_keys = ("val_ap50",)

    def __init__(self, net: Detector | None = None, *, net_config: dict | None = None, lr: float = 2e-3,
                 weight_decay: float = 1e-4, warmup_steps: int = 100, val_variant: str = "dir",
                 val_score_threshold: float = 0.05):
        super().__init__()
        if net is None:
            if net_config is None:
                raise ValueError("DetectionLitModule needs a net or a net_config")
            net = Detector(**net_config)
        if val_variant not in net.variants:
            raise ValueError(f"val_variant {val_variant!r} not among {net.variants}")
        # logger=False: the pipeline logs params itself under params.yaml's names.
        self.save_hyperparameters(ignore=["net"], logger=False)
        self.hparams["net_config"] = net.config
        self.net = net
        self._init_history()  # one row per finished epoch; saved in checkpoints (resume)
        self._val_rows: list[dict] = []
        self.val_images_seen = 0  # split images in the last validation (after merging ranks)

    def forward(self, images: Tensor, targets: list[dict] | None = None):
        return self.net(images, targets)

    # -- steps ---------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        images, targets = batch[0], batch[1]
        losses = self.net(images, targets)
        loss = sum(losses.values())
        n = len(images)
        self._add_train_loss(loss.detach(), n)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=n)
        self.log_dict({k: v.detach() for k, v in losses.items()}, on_step=False, on_epoch=True, batch_size=n)
        return loss

    def validation_step(self, batch, batch_idx):
        images, targets, index = batch[0], batch[1], batch[2]
        cands = self.net.candidates(images, score_threshold=self.hparams.val_score_threshold)
        dets = self.net.postprocess(cands, self.hparams.val_variant)
        for det, t, i in zip(dets, targets, index.tolist()):
            self._val_rows.append({"index": i, "boxes": det["boxes"].cpu().numpy(),
                                   "scores": det["rank"].cpu().numpy(), "labels": det["labels"].cpu().numpy(),
                                   "gt_boxes": t["boxes"].cpu().numpy(), "gt_labels": t["labels"].cpu().numpy()})

    def on_validation_epoch_start(self) -> None:
        self._val_rows = []

    def _gather_objects(self, obj) -> list:
        """[obj of rank 0, obj of rank 1, ...]; [obj] in a single process."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return [obj]
        out = [None] * dist.get_world_size()
        dist.all_gather_object(out, obj)
        return out

    def on_validation_epoch_end(self) -> None:
        # AP needs the whole split ranked together, not per-shard averages: every rank gathers all
        # rows and computes the same value, so it is logged without sync_dist.
        rows = merge_val_rows(self._gather_objects(self._val_rows))
        value = ap50(rows, self.net.num_classes)
        self.log("val_ap50", value, on_epoch=True, prog_bar=True)
        self.val_images_seen = len(rows)
        if not self.trainer.sanity_checking:
            self._last_val = value

    # -- optimisation --------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------- data

class DetectionDataset(Dataset):
    """(image float [3,S,S], target {boxes xyxy letterboxed px, labels 1..K}, index, info) per item.
    Decoded, letterboxed images are cached in memory (uint8), per worker process."""

    def __init__(self, items: Sequence[Item], *, category_ids: Sequence[int], image_size: int,
                 flip: bool = False):
        self.items, self.image_size, self.flip = list(items), int(image_size), flip
        self.label_of = {int(c): i + 1 for i, c in enumerate(category_ids)}
        for path, boxes, cats in self.items:
            unknown = {int(c) for c in cats} - set(self.label_of)
            if unknown or len(boxes) != len(cats):
                raise ValueError(f"{path}: {len(boxes)} boxes / {len(cats)} category ids; "
                                 f"unknown ids {sorted(unknown)}")
        self._cache: dict[int, tuple[np.ndarray, dict]] = {}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        path, boxes, cats = self.items[i]
        if i not in self._cache:
            self._cache[i] = letterbox(read_rgb(path), self.image_size)
        rgb, info = self._cache[i]
        xywh = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        sx, sy = info["scale"]
        xyxy = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1) * torch.tensor([sx, sy, sx, sy])
        labels = torch.tensor([self.label_of[int(c)] for c in cats], dtype=torch.int64)
        ok = ((xyxy[:, 2] - xyxy[:, 0]) >= 1) & ((xyxy[:, 3] - xyxy[:, 1]) >= 1)  # sub-pixel boxes: no target
        xyxy, labels = xyxy[ok], labels[ok]
        image = to_tensor(rgb)
        if self.flip and bool(torch.rand(()) < 0.5):
            image = image.flip(-1)
            xyxy = torch.stack([self.image_size - xyxy[:, 2], xyxy[:, 1], self.image_size - xyxy[:, 0], xyxy[:, 3]], 1)
        return image, {"boxes": xyxy, "labels": labels}, i, info


def collate(batch):
    """Images stacked; targets and infos as lists; item indices as a tensor."""
    images, targets, index, infos = zip(*batch)
    return torch.stack(images), list(targets), torch.tensor(index, dtype=torch.int64), list(infos)


class DetectionDataModule(L.LightningDataModule):
    """Explicit COCO-format train/val items; label = position in ``category_ids`` + 1."""

    def __init__(self, *, train_images: Sequence[Item], val_images: Sequence[Item], category_ids: Sequence[int],
                 image_size: int = 160, batch_size: int = 8, num_workers: int = 0, seed: int = 0, flip: bool = True):
        super().__init__()
        if not train_images:
            raise ValueError("DetectionDataModule: the train split is empty")
        self.category_ids = sorted(int(c) for c in category_ids)
        kw = {"category_ids": self.category_ids, "image_size": image_size}
        self.train_set = DetectionDataset(train_images, flip=flip, **kw)
        self.val_set = DetectionDataset(val_images, flip=False, **kw)
        self.batch_size, self.num_workers, self.seed = int(batch_size), int(num_workers), int(seed)

    def _loader(self, dataset: Dataset, *, train: bool) -> DataLoader:
        gen = torch.Generator().manual_seed(self.seed)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=train, generator=gen if train else None,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          collate_fn=collate, pin_memory=torch.cuda.is_available(),
                          # a last training batch of one image is dropped: BatchNorm needs more than one
                          # value per channel, and a 1 x 1 map of one image has one
                          drop_last=train and len(dataset) % self.batch_size == 1)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)
