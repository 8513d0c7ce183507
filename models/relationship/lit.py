"""Lightning wrappers for the relationship network: the training module and a data module over
precomputed features (``models.relationship.features``: one array per key, a leading clip axis).

No params.yaml here: the train stage maps its params to these explicit arguments.
"""
from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from models.common.lit import HistoryCheckpoint
from models.relationship.network import COARSE_OF_FINE, RelationshipNet

VAL_KEYS = ("val_loss", "val_accuracy", "val_macro_f1", "val_coarse_accuracy")


def class_weights(labels: Sequence[int], n_classes: int) -> list[float]:
    """Inverse-frequency weights (mean 1 over the classes seen) so rare classes count as much;
    a class absent from ``labels`` gets weight 1 (it cannot be fitted anyway)."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_classes).astype(float)
    seen = counts > 0
    if not seen.any():
        return [1.0] * n_classes
    w = np.ones(n_classes)
    w[seen] = 1.0 / counts[seen]
    w[seen] /= w[seen].mean()
    return [float(v) for v in w]


def coarse_of(fine: Tensor) -> Tensor:
    return torch.as_tensor(COARSE_OF_FINE, device=fine.device)[fine.long()]


def scores(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict[str, float]:
    """Accuracy and macro-F1 (scikit-learn) over the classes; 0 for an empty split."""
    from sklearn.metrics import accuracy_score, f1_score

    if len(y_true) == 0:
        return {"accuracy": 0.0, "macro_f1": 0.0}
    return {"accuracy": float(accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, labels=list(range(n_classes)), average="macro",
                                       zero_division=0))}


# ------------------------------------------------------------------------------------------- module

class RelationshipLitModule(HistoryCheckpoint, L.LightningModule):
    """RelationshipNet + class-weighted cross-entropy on the fine and the coarse head + AdamW with
    warm-up then cosine. Validation: accuracy and macro-F1 of the fine head over the whole split
    (``val_macro_f1``, the checkpoint monitor). ``net_config`` rebuilds the net from a checkpoint."""

    history_val_keys = VAL_KEYS

    def __init__(self, net: RelationshipNet | None = None, *, net_config: dict | None = None, lr: float = 3e-3,
                 weight_decay: float = 1e-4, warmup_steps: int = 20, fine_weights: Sequence[float] | None = None,
                 coarse_weights: Sequence[float] | None = None, coarse_loss_weight: float = 0.5):
        super().__init__()
        if net is None:
            if net_config is None:
                raise ValueError("RelationshipLitModule needs a net or a net_config")
            net = RelationshipNet(**net_config)
        # logger=False: the pipeline logs params itself under params.yaml's names.
        self.save_hyperparameters(ignore=["net"], logger=False)
        self.hparams["net_config"] = net.config
        self.net = net
        n_fine, n_coarse = net.config["n_fine"], net.config["n_coarse"]
        self.register_buffer("fine_weights", torch.tensor(fine_weights or [1.0] * n_fine, dtype=torch.float32))
        self.register_buffer("coarse_weights", torch.tensor(coarse_weights or [1.0] * n_coarse, dtype=torch.float32))
        self._init_history()  # one row per finished epoch; saved in checkpoints (resume)
        self._val: list[tuple[Tensor, ...]] = []  # (index, label, fine pred, coarse pred, loss sum) per batch

    def forward(self, batch: dict[str, Tensor], *, modalities: Sequence[str] | None = None) -> dict[str, Tensor]:
        return self.net(batch, modalities=modalities)

    def loss(self, out: dict[str, Tensor], label: Tensor) -> Tensor:
        # late fusion answers log-probabilities: cross_entropy's log_softmax leaves them unchanged
        fine = F.cross_entropy(out["fine"].float(), label, weight=self.fine_weights)
        coarse = F.cross_entropy(out["coarse"].float(), coarse_of(label), weight=self.coarse_weights)
        return fine + self.hparams.coarse_loss_weight * coarse

    # -- steps ---------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        label = batch["label"]
        loss = self.loss(self(batch), label)
        n = len(label)
        self._add_train_loss(loss.detach(), n)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=n)
        return loss

    def validation_step(self, batch, batch_idx):
        out = self(batch)
        label = batch["label"]
        n = torch.tensor(float(len(label)), device=label.device)
        self._val.append((batch["index"], label, out["fine"].argmax(-1), out["coarse"].argmax(-1),
                          self.loss(out, label).detach() * n))

    def on_validation_epoch_start(self) -> None:
        self._val = []

    def on_validation_epoch_end(self) -> None:
        # Scores need the whole split: every rank gathers all predictions (DistributedSampler pads
        # shards to equal length; first occurrences kept) and logs the same values.
        if not self._val:
            return
        index, label, fine, coarse, loss = (torch.cat([v[k].reshape(-1) for v in self._val]) for k in range(5))
        g = self.all_gather({"index": index, "label": label, "fine": fine, "coarse": coarse,
                             "loss": loss.sum().reshape(1), "n": torch.tensor([float(len(index))], device=index.device)})
        idx = g["index"].reshape(-1).cpu().numpy()
        _, first = np.unique(idx, return_index=True)
        y, p, pc = (g[k].reshape(-1).cpu().numpy()[first] for k in ("label", "fine", "coarse"))
        s = scores(y, p, self.net.config["n_fine"])
        metrics = {"val_loss": float(g["loss"].sum() / g["n"].sum().clamp_min(1)), "val_accuracy": s["accuracy"],
                   "val_macro_f1": s["macro_f1"],
                   "val_coarse_accuracy": float((np.asarray(COARSE_OF_FINE)[y] == pc).mean())}
        self.log_dict(metrics, on_epoch=True, prog_bar=True)
        if not self.trainer.sanity_checking:
            self._last_val = metrics

    # -- optimisation --------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------- data

class FeatureDataset(Dataset):
    """Item ``i`` of ``index``: every feature array's row as a tensor, plus ``label`` and ``index``
    (the position in the whole feature set, so validation can drop DistributedSampler's repeats)."""

    def __init__(self, features: dict[str, np.ndarray], labels: np.ndarray, index: Sequence[int]):
        self.features, self.labels = features, np.asarray(labels, dtype=np.int64)
        self.index = np.asarray(index, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        j = int(self.index[i])
        item = {k: torch.from_numpy(np.ascontiguousarray(v[j])) for k, v in self.features.items()}
        item["label"] = torch.tensor(self.labels[j])
        item["index"] = torch.tensor(j)
        return item


class RelationshipDataModule(L.LightningDataModule):
    """Precomputed features (one array per key, all clips) with fine labels; ``train_index`` /
    ``val_index`` select the splits. The test split is the evaluate stage's: training never reads it."""

    def __init__(self, *, features: dict[str, np.ndarray], labels: Sequence[int], train_index: Sequence[int],
                 val_index: Sequence[int], batch_size: int = 32, num_workers: int = 0, seed: int = 0):
        super().__init__()
        if len(train_index) == 0:
            raise ValueError("RelationshipDataModule: the train split is empty")
        sizes = {k: len(v) for k, v in features.items()}
        if len(set(sizes.values()) | {len(labels)}) != 1:
            raise ValueError(f"features and labels disagree on the number of clips: {sizes}, labels {len(labels)}")
        self.features, self.labels = features, np.asarray(labels, dtype=np.int64)
        self.train_index, self.val_index = list(train_index), list(val_index)
        self.batch_size, self.num_workers, self.seed = int(batch_size), int(num_workers), int(seed)

    def _loader(self, index: Sequence[int], *, train: bool) -> DataLoader:
        gen = torch.Generator().manual_seed(self.seed)
        return DataLoader(FeatureDataset(self.features, self.labels, index), batch_size=self.batch_size,
                          shuffle=train, generator=gen if train else None, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0, pin_memory=torch.cuda.is_available(),
                          drop_last=False)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_index, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_index, train=False)
