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
    """Mixin for a LightningModule with ``history`` (one row per finished epoch: ``epoch``,
    ``train_loss`` and the ``history_val_keys``) and the running epoch's ``_train_sum``, ``_train_n``,
    ``_train_epoch``, ``_last_val``: all saved in and restored from the checkpoint, so a resumed run's
    history.csv is whole. The module calls :meth:`_init_history` in ``__init__``, :meth:`_add_train_loss`
    in ``training_step`` and sets ``_last_val`` (a dict of the keys, or the one value) after validation;
    ``configure_optimizers`` is AdamW + warm-up + cosine over ``hparams.lr`` / ``weight_decay``."""

    history_val_keys: tuple[str, ...] = ()

    def _init_history(self) -> None:
        self.history: list[dict] = []
        self._train_sum, self._train_n, self._train_epoch = 0.0, 0, -1
        self._last_val = None

    def _add_train_loss(self, loss, n: int) -> None:
        if self._train_n and self._train_epoch != int(self.current_epoch):
            # Resumed from a checkpoint taken after an epoch's last step but before its end hooks:
            # Lightning goes on with the next epoch, so record that one now (without validation).
            self._close_epoch(self._train_epoch)
        self._train_sum += float(loss) * n
        self._train_n += n
        self._train_epoch = int(self.current_epoch)

    def on_train_epoch_end(self) -> None:
        self._close_epoch(int(self.current_epoch))

    def _close_epoch(self, epoch: int) -> None:
        nan = float("nan")
        row = {"epoch": epoch, "train_loss": self._train_sum / self._train_n if self._train_n else nan}
        val = self._last_val
        if not isinstance(val, dict):
            val = {} if val is None else {self.history_val_keys[0]: val}
        row.update({k: float(val.get(k, nan)) for k in self.history_val_keys})
        self.history.append(row)
        self._train_sum, self._train_n, self._last_val = 0.0, 0, None

    def warmup_steps(self, total: int) -> int:
        """``hparams.warmup_steps``, at most a quarter of the run (short runs still decay)."""
        return min(int(self.hparams.warmup_steps), max(1, total // 4))

    def configure_optimizers(self):
        total = max(1, int(self.trainer.estimated_stepping_batches))
        return adamw_warmup_cosine(self, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay,
                                   total_steps=total, warmup_steps=self.warmup_steps(total))

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["mokuflow_history"] = list(self.history)
        checkpoint["mokuflow_train_running"] = (self._train_sum, self._train_n, self._train_epoch, self._last_val)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.history = list(checkpoint.get("mokuflow_history", []))
        self._train_sum, self._train_n, self._train_epoch, self._last_val = checkpoint.get(
            "mokuflow_train_running", (0.0, 0, -1, None))
