"""What every study's LightningModule shares: AdamW with linear warm-up then cosine decay, and the
per-epoch history that survives a resume (kept in the checkpoint with the running epoch's loss)."""
from __future__ import annotations

import math

import torch


def adamw_warmup_cosine(module, *, lr: float, weight_decay: float, total_steps: int, warmup_steps: int) -> dict:
    """``configure_optimizers``' answer: AdamW, LR ramped over ``warmup_steps`` then cosine to 0, per step."""
    opt = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay)
    total, warmup = max(1, int(total_steps)), max(1, int(warmup_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class HistoryCheckpoint:
    """Mixin for a LightningModule with ``history`` (one row per finished epoch) and the running epoch's
    ``_train_sum``, ``_train_n``, ``_train_epoch``, ``_last_val``: all saved in and restored from the
    checkpoint, so a resumed run's history.csv is whole."""

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["mokuflow_history"] = list(self.history)
        checkpoint["mokuflow_train_running"] = (self._train_sum, self._train_n, self._train_epoch, self._last_val)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.history = list(checkpoint.get("mokuflow_history", []))
        self._train_sum, self._train_n, self._train_epoch, self._last_val = checkpoint.get(
            "mokuflow_train_running", (0.0, 0, -1, None))
