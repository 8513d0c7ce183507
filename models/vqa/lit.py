"""Lightning wrappers for STDAM: the training module and the data module over cached clips.

No params.yaml here: tasks/vqa/train.py maps params to these explicit arguments.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import lightning as L
import numpy as np
import torch
from scipy import stats
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from models.common.lit import HistoryCheckpoint
from models.vqa.losses import QualityLoss
from models.vqa.stdam import STDAM, to_model_inputs
from models.vqa.video import MOTIONS, FrameCache

Item = tuple[str, float]  # (video path, quality)


def merge_shards(index: Tensor, *values: Tensor) -> tuple[np.ndarray, ...]:
    """Per-rank validation outputs gathered as [world, N] (or [N] for one process) -> one entry per
    split item, ordered by item index. DistributedSampler pads the split with repeated items so all
    ranks get the same count; each item's first occurrence is kept."""
    idx = index.reshape(-1).cpu().numpy()
    _, first = np.unique(idx, return_index=True)  # sorted by item index
    return tuple(v.reshape(-1).cpu().numpy()[first] for v in values)


def correlations(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, float]:
    """(SRCC, PLCC); 0 when undefined (constant input, < 2 items) so checkpoint selection still works."""
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    if len(y_true) < 2 or np.ptp(y_true) == 0 or np.ptp(y_pred) == 0:
        return 0.0, 0.0
    return float(stats.spearmanr(y_true, y_pred)[0]), float(stats.pearsonr(y_true, y_pred)[0])


# ------------------------------------------------------------------------------------------- module

class VQALitModule(HistoryCheckpoint, L.LightningModule):
    """STDAM + QualityLoss + AdamW/cosine. Targets are standardised with the train split's mean/std
    (kept as buffers and hparams) so losses are scale-free; ``predict_quality`` maps back."""

    history_val_keys = ("val_loss", "val_srcc", "val_pearson")

    def __init__(self, *, model_kwargs: dict, lr: float = 2e-3, weight_decay: float = 1e-4,
                 plcc_weight: float = 1.0, rank_weight: float = 1.0, mse_weight: float = 0.5,
                 target_mean: float = 0.0, target_std: float = 1.0):
        super().__init__()
        # logger=False: the pipeline logs params itself (tasks.core.tracking) under params.yaml's names.
        self.save_hyperparameters(logger=False)
        self.model = STDAM(**model_kwargs)
        self.loss = QualityLoss(plcc_weight=plcc_weight, rank_weight=rank_weight, mse_weight=mse_weight)
        std = float(target_std) if target_std and target_std > 0 else 1.0
        self.register_buffer("target_mean", torch.tensor(float(target_mean)))
        self.register_buffer("target_std", torch.tensor(std))
        self._init_history()  # one row per finished epoch; saved in checkpoints (resume)
        self._val_preds: list[Tensor] = []
        self._val_targets: list[Tensor] = []
        self._val_index: list[Tensor] = []
        self._val_losses: list[tuple[float, int]] = []

    def forward(self, frames: Tensor, motion: Tensor) -> Tensor:
        """Normalised-scale predictions."""
        return self.model(frames, motion)

    def predict_quality(self, frames: Tensor, motion: Tensor) -> Tensor:
        return self(frames, motion).float() * self.target_std + self.target_mean

    def _normalise(self, quality: Tensor) -> Tensor:
        return (quality.float() - self.target_mean) / self.target_std

    # -- steps ---------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        frames, motion = to_model_inputs(batch[0], batch[1])
        terms = self.loss(self(frames, motion), self._normalise(batch[2]))
        n = len(batch[2])
        self._add_train_loss(terms["loss"].detach(), n)
        self.log("train_loss", terms["loss"], on_step=False, on_epoch=True, batch_size=n)
        return terms["loss"]

    def validation_step(self, batch, batch_idx):
        frames, motion = to_model_inputs(batch[0], batch[1])
        pred = self(frames, motion).float()
        terms = self.loss(pred, self._normalise(batch[2]))
        self._val_preds.append(pred.detach() * self.target_std + self.target_mean)
        self._val_targets.append(batch[2].detach().float())
        self._val_index.append(batch[3].detach().long())
        self._val_losses.append((float(terms["loss"]), len(batch[2])))

    def on_validation_epoch_start(self) -> None:
        self._val_preds, self._val_targets, self._val_index, self._val_losses = [], [], [], []

    def _gathered_val(self) -> tuple[np.ndarray, np.ndarray, float]:
        """(targets, predictions) of the whole val split, from every rank, and the mean val loss."""
        empty = torch.zeros(0, device=self.device)
        preds = torch.cat(self._val_preds) if self._val_preds else empty
        targets = torch.cat(self._val_targets) if self._val_targets else empty
        index = torch.cat(self._val_index) if self._val_index else empty.long()
        loss_sum = torch.tensor([sum(l * n for l, n in self._val_losses),
                                 sum(n for _, n in self._val_losses)], dtype=torch.float32, device=self.device)
        # all_gather needs equal shapes on every rank: DistributedSampler pads shards to equal length.
        gathered = self.all_gather({"index": index, "pred": preds, "target": targets, "loss": loss_sum})
        targets_np, preds_np = merge_shards(gathered["index"], gathered["target"], gathered["pred"])
        loss = gathered["loss"].reshape(-1, 2).sum(dim=0)
        return targets_np, preds_np, float(loss[0] / loss[1].clamp_min(1))

    def on_validation_epoch_end(self) -> None:
        # Correlations need the whole split, not per-shard averages: under DDP every rank gathers all
        # predictions and computes the same values, so they are logged without sync_dist.
        targets, preds, val_loss = self._gathered_val()
        srcc, plcc = correlations(targets, preds)
        metrics = {"val_loss": val_loss, "val_srcc": srcc, "val_pearson": plcc}
        self.log_dict(metrics, on_epoch=True)
        if not self.trainer.sanity_checking:
            self._last_val = metrics

    # -- optimisation --------------------------------------------------------------------------
    def warmup_steps(self, total: int) -> int:
        return min(max(1, total // 20), 100)  # short warm-up: attention + LSTM from scratch dislike big first steps


# --------------------------------------------------------------------------------------------- data

class ClipDataset(Dataset):
    """(frames uint8 [T,H,W,3], motion float32 [T,H,W,C], quality float32, item index int64) from the
    frame cache. The index lets validation drop DistributedSampler's padding repeats.

    ``flip``: random horizontal flip (quality-preserving); flow's x component changes sign with it.
    """

    def __init__(self, items: Sequence[Item], cache: FrameCache, *, flip: bool = False):
        self.items, self.cache, self.flip = list(items), cache, flip

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        path, quality = self.items[i]
        frames, motion = self.cache.get(path)
        frames, motion = torch.from_numpy(np.ascontiguousarray(frames)), torch.from_numpy(np.ascontiguousarray(motion))
        if self.flip and bool(torch.rand(()) < 0.5):
            frames, motion = frames.flip(2), motion.flip(2)  # flip copies: negating below is safe
            if motion.shape[-1] == 2:
                motion[..., 0].neg_()
        return frames, motion, torch.tensor(float(quality), dtype=torch.float32), torch.tensor(i, dtype=torch.int64)


class VQADataModule(L.LightningDataModule):
    """Explicit (path, quality) lists for train and val; ``prepare_data`` decodes each video once into
    the cache. The test split is the evaluate stage's: training never reads it."""

    def __init__(self, *, train_items: Sequence[Item], val_items: Sequence[Item],
                 n_clips: int, clip_len: int, height: int, width: int,
                 motion: str = "diff", cache_dir: str | os.PathLike, batch_size: int = 8,
                 num_workers: int = 0, seed: int = 0, flip: bool = True):
        super().__init__()
        if not train_items:
            raise ValueError("VQADataModule: the train split is empty")
        self.train_items, self.val_items = list(train_items), list(val_items)
        self.frames_cfg = {"n_clips": int(n_clips), "clip_len": int(clip_len), "height": int(height),
                           "width": int(width), "motion": motion}
        self.cache_dir = str(cache_dir)
        self.batch_size, self.num_workers, self.seed, self.flip = int(batch_size), int(num_workers), int(seed), flip

    @property
    def motion_channels(self) -> int:
        return MOTIONS[self.frames_cfg["motion"]]

    @property
    def target_stats(self) -> dict:
        """Mean / std of the train split's quality: the normalisation the module learns on."""
        q = np.array([q for _, q in self.train_items], dtype=float)
        return {"mean": float(q.mean()), "std": float(q.std()) if q.std() > 0 else 1.0}

    def cache(self) -> FrameCache:
        return FrameCache(self.cache_dir, **self.frames_cfg)

    def prepare_data(self) -> None:
        # Decoding is the slow part; done once here (rank 0), training then reads .npy files.
        self.cache().fill(p for p, _ in self.train_items + self.val_items)

    def _loader(self, items: Sequence[Item], *, train: bool) -> DataLoader:
        gen = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            ClipDataset(items, self.cache(), flip=train and self.flip),
            batch_size=self.batch_size, shuffle=train, generator=gen if train else None,
            num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(), drop_last=False)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_items, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_items, train=False)
