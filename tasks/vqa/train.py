"""Train STDAM on the cleaned scores (Lightning; resumable; epoch curves to MLflow).

Reads ``<raw_dir>/videos.csv`` (path, split) joined with ``<clean_dir>/scores.csv`` (quality) on
video_id. Each run gets a folder ``<runs_dir>/<hash>-<timestamp>`` where ``hash`` covers the train /
model / frames params and the data version (DVC md5 of clean_dir): an unfinished folder with the same
hash and a ``checkpoints/last.ckpt`` is resumed (same MLflow run) instead of starting over.
Writes ``<train.out_dir>/``: model.pt, history.csv, run.json (atomically, as one folder).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

from tasks.common import (MokuflowError, atomic_dir, dvc_dir_hash, log, read_json, resolve, write_csv,
                          write_json)
from tasks.vqa.data import frames_cfg, scores_csv, split_items, videos_csv

# Keys that do not change what is learned: left out of the run hash so e.g. more workers still resume.
_NOT_HASHED = {"train": {"out_dir", "runs_dir", "num_workers", "checkpoint_every_n_steps"},
               "frames": {"cache_dir"}}
# Set for Lightning's DDP child processes (they re-run this stage): they join rank 0's run folder.
RUN_DIR_ENV = "MOKUFLOW_VQA_RUN_DIR"


# -------------------------------------------------------------------------------------------- data

def load_items(params: dict) -> dict[str, list[tuple[str, float]]]:
    """{'train'|'val': [(absolute video path, quality)]}; neither may be empty."""
    table = split_items(params, ("train", "val"))
    items = {s: list(zip(g["path"], g["quality"].astype(float))) for s, g in table.groupby("split")}
    for split in ("train", "val"):
        if not items.get(split):
            raise MokuflowError(f"{videos_csv(params)}: no '{split}' videos with a quality in "
                                f"{scores_csv(params)}")
    return items


# --------------------------------------------------------------------------------------- run folder

def run_hash(params: dict, data_version: str) -> str:
    vqa = params["vqa"]
    keyed = {sec: {k: v for k, v in vqa[sec].items() if k not in _NOT_HASHED.get(sec, ())}
             for sec in ("train", "model", "frames")}
    keyed["data_version"] = data_version
    return hashlib.sha256(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()[:12]


def find_resumable(runs_dir: Path, key: str) -> Path | None:
    """Newest unfinished run folder of this hash that has a last checkpoint."""
    if not runs_dir.is_dir():
        return None
    candidates = [d for d in runs_dir.glob(f"{key}-*") if d.is_dir() and not (d / "COMPLETED").exists()
                  and (d / "checkpoints" / "last.ckpt").is_file() and (d / "run.json").is_file()]
    return max(candidates, key=lambda d: d.name, default=None)


def _run_id_of(run_dir: Path) -> str:
    info = read_json(run_dir / "run.json")
    if "mlflow_run_id" not in info:
        raise MokuflowError(f"{run_dir / 'run.json'}: no mlflow_run_id (delete the folder to start afresh)")
    return info["mlflow_run_id"]


def open_run(params: dict, data_version: str) -> tuple[Path, str, bool]:
    """(run folder, MLflow run id, resumed?): resume an unfinished run of the same hash or start one."""
    from tasks import tracking

    env_dir = os.environ.get(RUN_DIR_ENV)
    if env_dir and (Path(env_dir) / "run.json").is_file():  # a DDP child of rank 0's run
        return Path(env_dir), _run_id_of(Path(env_dir)), True
    runs_dir = resolve(params, params["vqa"]["train"]["runs_dir"])
    key = run_hash(params, data_version)
    found = find_resumable(runs_dir, key)
    if found is not None:
        run_id = _run_id_of(found)
        log(f"train: resuming {found} (MLflow run {run_id})")
        return found, run_id, True
    name = f"{key}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    run_dir = runs_dir / name
    tags = tracking.run_tags(params, "vqa", data_version=data_version)
    run_id = tracking.start_run(params, "vqa", run_name=name, tags=tags)
    write_json(run_dir / "run.json", {"mlflow_run_id": run_id, "hash": key, "data_version": data_version,
                                      "git_commit": tags["git_commit"], "git_dirty": tags["git_dirty"],
                                      "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
    log(f"train: new run {run_dir} (MLflow run {run_id})")
    return run_dir, run_id, False


# ------------------------------------------------------------------------------------------ trainer

def _precision(value) -> str:
    import torch

    if str(value) == "auto":
        return "bf16-mixed" if torch.cuda.is_available() else "32-true"
    return str(value)


def _callbacks(ckpt_dir: Path, every_n_steps: int):
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    class StartStep(L.Callback):
        """The global step training (re)starts from: > 0 when resumed from a checkpoint."""
        step = 0

        def on_train_start(self, trainer, pl_module):
            StartStep.step = int(trainer.global_step)

    class EpochLog(L.Callback):
        """One line per epoch, for logs with no progress bar (dvc repro, Prefect, CI)."""
        t0 = 0.0

        def on_train_epoch_start(self, trainer, pl_module):
            self.t0 = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module):  # after the epoch's validation
            if trainer.is_global_zero:
                m = {k: float(v) for k, v in trainer.callback_metrics.items()}
                shown = "  ".join(f"{k} {m[k]:.3f}" for k in ("train_loss", "val_loss", "val_srcc") if k in m)
                log(f"train: epoch {trainer.current_epoch + 1}/{trainer.max_epochs}  {shown}  "
                    f"({time.perf_counter() - self.t0:.1f} s)")

    # "last": one file, overwritten (Lightning writes it through a temp file, so a kill leaves the
    # previous one intact); by steps when asked, else once per epoch.
    last = ModelCheckpoint(dirpath=ckpt_dir, filename="last", save_top_k=1, enable_version_counter=False,
                           every_n_train_steps=every_n_steps if every_n_steps > 0 else None,
                           every_n_epochs=None if every_n_steps > 0 else 1)
    best = ModelCheckpoint(dirpath=ckpt_dir, filename="best-{epoch}-{step}", monitor="val_srcc",
                           mode="max", save_top_k=1)
    return last, best, StartStep(), EpochLog()


def build_trainer(params: dict, run_dir: Path, run_id: str, callbacks, n_batches: int):
    import lightning as L
    from lightning.pytorch.loggers import MLFlowLogger

    from tasks import tracking

    t = params["vqa"]["train"]
    logger = MLFlowLogger(tracking_uri=tracking.tracking_uri(params), run_id=run_id, log_model=False)
    return L.Trainer(
        accelerator=t["accelerator"], devices=t["devices"], num_nodes=int(t["num_nodes"]),
        strategy=t["strategy"], precision=_precision(t["precision"]), max_epochs=int(t["max_epochs"]),
        callbacks=list(callbacks), logger=logger, default_root_dir=str(run_dir),
        enable_progress_bar=sys.stderr.isatty(), enable_model_summary=False,
        log_every_n_steps=max(1, min(50, n_batches)), num_sanity_val_steps=0)


def model_kwargs(params: dict) -> dict:
    from models.vqa.video import MOTIONS

    m, motion = params["vqa"]["model"], frames_cfg(params)["motion"]
    pretrained = resolve(params, m["pretrained"]) if m.get("pretrained") else None
    return dict(backbone_channels=list(m["backbone_channels"]), gcn_layers=int(m["gcn_layers"]),
                gcn_dim=int(m["gcn_dim"]), attention_heads=int(m["attention_heads"]),
                motion_in_channels=MOTIONS[motion], motion_channels=int(m["motion_channels"]),
                lstm_hidden=int(m["lstm_hidden"]), dropout=float(m["dropout"]),
                pretrained=str(pretrained) if pretrained else None)


# ---------------------------------------------------------------------------------------------- run

def run(params: dict, **kwargs) -> dict:
    import lightning as L

    from models.vqa.lit import VQADataModule, VQALitModule
    from models.vqa.stdam import PretrainedWeightsError

    t, fr = params["vqa"]["train"], params["vqa"]["frames"]
    items = load_items(params)
    data_version = dvc_dir_hash(resolve(params, params["vqa"]["data"]["clean_dir"]))
    L.seed_everything(int(t["seed"]), workers=True, verbose=False)
    frames = frames_cfg(params)
    dm = VQADataModule(train_items=items["train"], val_items=items["val"],
                       **frames, cache_dir=resolve(params, fr["cache_dir"]),
                       batch_size=int(t["batch_size"]), num_workers=int(t["num_workers"]), seed=int(t["seed"]))
    stats, kw = dm.target_stats, model_kwargs(params)
    loss = t["loss"]
    try:
        lit = VQALitModule(model_kwargs=kw, lr=float(t["lr"]), weight_decay=float(t["weight_decay"]),
                           plcc_weight=float(loss["plcc_weight"]), rank_weight=float(loss["rank_weight"]),
                           mse_weight=float(loss["mse_weight"]), target_mean=stats["mean"], target_std=stats["std"])
    except PretrainedWeightsError as e:
        raise MokuflowError(f"vqa.model.pretrained: {e}") from None

    run_dir, run_id, resumed = open_run(params, data_version)
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    last_cb, best_cb, start_cb, epoch_cb = _callbacks(run_dir / "checkpoints",
                                                      int(t["checkpoint_every_n_steps"] or 0))
    n_batches = -(-len(items["train"]) // int(t["batch_size"]))
    trainer = build_trainer(params, run_dir, run_id, [last_cb, best_cb, start_cb, epoch_cb], n_batches)
    log(f"train: {len(items['train'])} train / {len(items['val'])} val videos, "
        f"{t['max_epochs']} epochs, data {data_version}")
    os.environ[RUN_DIR_ENV] = str(run_dir)
    try:
        trainer.fit(lit, datamodule=dm, ckpt_path=str(ckpt) if resumed and ckpt.is_file() else None)
    finally:
        os.environ.pop(RUN_DIR_ENV, None)
    if not trainer.is_global_zero:
        return {}
    return _finish(params, trainer, lit, best_cb, last_cb, run_dir, run_id, frames, stats,
                   start_cb.step)


def _finish(params, trainer, lit, best_cb, last_cb, run_dir: Path, run_id: str, frames_cfg: dict,
            stats: dict, resumed_from_step: int) -> dict:
    """Write model.pt (best val checkpoint) + history.csv + run.json; mark the run folder COMPLETED."""
    import pandas as pd
    import torch

    from models.vqa.inference import save_model
    from models.vqa.stdam import STDAM

    best_path = best_cb.best_model_path or last_cb.last_model_path or last_cb.best_model_path
    ckpt = torch.load(best_path, map_location="cpu", weights_only=False)
    model = STDAM(**dict(lit.hparams.model_kwargs, pretrained=None))
    model.load_state_dict({k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")})
    history = pd.DataFrame(lit.history, columns=["epoch", "train_loss", "val_loss", "val_srcc", "val_plcc"])
    best_srcc = float(best_cb.best_model_score) if best_cb.best_model_score is not None else None
    started = read_json(run_dir / "run.json")  # provenance fixed when the run began
    info = {"mlflow_run_id": run_id, "run_dir": str(run_dir), "resumed_from_step": int(resumed_from_step),
            **{k: started.get(k) for k in ("data_version", "git_commit", "git_dirty")},
            "global_step": int(trainer.global_step), "epochs": int(len(history)),
            "best_val_srcc": best_srcc, "best_checkpoint": Path(best_path).name}
    out_dir = resolve(params, params["vqa"]["train"]["out_dir"])
    with atomic_dir(out_dir) as tmp:
        save_model(tmp / "model.pt", model, frames_cfg, stats)
        write_csv(tmp / "history.csv", history)
        write_json(tmp / "run.json", info)
    if best_srcc is not None:
        trainer.logger.experiment.log_metric(run_id, "best_val_srcc", best_srcc)
    write_json(run_dir / "COMPLETED", {"global_step": info["global_step"], "out_dir": str(out_dir)})
    log(f"train: done, {info['epochs']} epochs, best val SRCC {best_srcc}, model in {out_dir / 'model.pt'}")
    return info
