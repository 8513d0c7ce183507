"""Training runs every study shares: the run folder (hash, resume after a kill), the MLflow run it logs
into, the Lightning trainer and its callbacks, and the finished run's bookkeeping.

A run folder ``<train.runs_dir>/<hash>-<timestamp>-<pid>`` is keyed by a hash of the params sections
that change what is learned plus the data version (from DVC's md5 of the raw and clean data). An unfinished
folder of the same hash with ``checkpoints/last.ckpt`` is resumed in the same MLflow run instead of
starting over; a finished one holds ``COMPLETED``. Lightning and torch are imported inside functions.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tasks.core import MokuflowError, log, read_json, relative, resolve, write_json
from tasks.core.study import Study

# Train keys that do not change what is learned: left out of the run hash so e.g. more workers resume.
NOT_HASHED = {"out_dir", "runs_dir", "num_workers", "checkpoint_every_n_steps", "cache_dir"}


def run_dir_env(study: Study) -> str:
    """Set for Lightning's DDP child processes (they re-run the stage): they join rank 0's run folder."""
    return f"MOKUFLOW_{study.name.upper()}_RUN_DIR"


def data_version(params: dict, study: Study) -> str:
    from tasks.core.provenance import data_hashes
    from tasks.core.provenance import data_version as version

    return version(data_hashes(params, study.name))


def run_hash(params: dict, study: Study, sections: tuple[str, ...], data_ver: str) -> str:
    """Hash of ``params[study][section]`` for each section (minus :data:`NOT_HASHED`) + data version."""
    def strip(d):
        return {k: strip(v) if isinstance(v, dict) else v for k, v in d.items() if k not in NOT_HASHED}

    keyed = {sec: strip(params[study.name][sec]) for sec in sections}
    keyed["data_version"] = data_ver
    return hashlib.sha256(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()[:12]


def find_resumable(runs_dir: Path, key: str) -> Path | None:
    """Newest unfinished run folder of this hash that has a last checkpoint."""
    if not runs_dir.is_dir():
        return None
    candidates = [d for d in runs_dir.glob(f"{key}-*") if d.is_dir() and not (d / "COMPLETED").exists()
                  and (d / "checkpoints" / "last.ckpt").is_file() and (d / "run.json").is_file()]
    return max(candidates, key=lambda d: d.name, default=None)


def new_run_dir(runs_dir: Path, key: str) -> Path:
    """A new, empty run folder ``<key>-<time>-<pid>``, claimed by creating it. A second run started
    within the same second by the same process gets a ``-2``, ``-3``... suffix instead of writing
    into the first run's folder."""
    base = f"{key}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    runs_dir.mkdir(parents=True, exist_ok=True)
    for n in itertools.count(1):
        run_dir = runs_dir / (base if n == 1 else f"{base}-{n}")
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue


def _run_id_of(run_dir: Path) -> str:
    info = read_json(run_dir / "run.json")
    if "mlflow_run_id" not in info:
        raise MokuflowError(f"{run_dir / 'run.json'}: no mlflow_run_id (delete the folder to start afresh)")
    return info["mlflow_run_id"]


@dataclass
class Run:
    """An open training run: its folder, MLflow run id, whether it resumes, and its provenance."""
    dir: Path
    run_id: str
    resumed: bool
    data_version: str

    @property
    def last_ckpt(self) -> Path:
        return self.dir / "checkpoints" / "last.ckpt"


def open_run(params: dict, study: Study, sections: tuple[str, ...]) -> Run:
    """Resume an unfinished run of the same hash, or start one (folder + MLflow run + run.json)."""
    from tasks.core import tracking

    data_ver = data_version(params, study)
    env_dir = os.environ.get(run_dir_env(study))
    if env_dir and (Path(env_dir) / "run.json").is_file():  # a DDP child of rank 0's run
        return Run(Path(env_dir), _run_id_of(Path(env_dir)), True, data_ver)
    runs_dir = resolve(params, params[study.name]["train"]["runs_dir"])
    key = run_hash(params, study, sections, data_ver)
    found = find_resumable(runs_dir, key)
    if found is not None:
        run_id = _run_id_of(found)
        log(f"train: resuming {found} (MLflow run {run_id})")
        return Run(found, run_id, True, data_ver)
    run_dir = new_run_dir(runs_dir, key)
    name = run_dir.name
    run_id = tracking.start_run(params, study.name, run_name=name, tags={})
    tags = tracking.log_provenance(params, study.name, run_id)  # tags + dvc.lock as DVC has it now
    write_json(run_dir / "run.json", {"mlflow_run_id": run_id, "hash": key, "data_version": data_ver,
                                      "git_commit": tags["git_commit"], "git_dirty": tags["git_dirty"],
                                      "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
    log(f"train: new run {run_dir} (MLflow run {run_id})")
    return Run(run_dir, run_id, False, data_ver)


# ------------------------------------------------------------------------------------------ trainer

def precision(value) -> str:
    """``auto``: bf16-mixed on GPU, 32-true on CPU."""
    import torch

    if str(value) == "auto":
        return "bf16-mixed" if torch.cuda.is_available() else "32-true"
    return str(value)


def callbacks(study: Study, ckpt_dir: Path, every_n_steps: int, shown: tuple[str, ...]):
    """(last, best, start_step, epoch_log) callbacks; ``best`` follows the study's monitor."""
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
                text = "  ".join(f"{k} {m[k]:.3f}" for k in shown if k in m)
                log(f"train: epoch {trainer.current_epoch + 1}/{trainer.max_epochs}  {text}  "
                    f"({time.perf_counter() - self.t0:.1f} s)")

    metric, mode = study.monitor
    # "last": one file, overwritten (Lightning writes it through a temp file, so a kill leaves the
    # previous one intact); by steps when asked, else once per epoch.
    last = ModelCheckpoint(dirpath=ckpt_dir, filename="last", save_top_k=1, enable_version_counter=False,
                           every_n_train_steps=every_n_steps if every_n_steps > 0 else None,
                           every_n_epochs=None if every_n_steps > 0 else 1)
    best = ModelCheckpoint(dirpath=ckpt_dir, filename="best-{epoch}-{step}", monitor=metric,
                           mode=mode, save_top_k=1)
    return last, best, StartStep(), EpochLog()


def build_trainer(params: dict, study: Study, run: Run, cbs, n_batches: int):
    import lightning as L
    from lightning.pytorch.loggers import MLFlowLogger

    from tasks.core import tracking

    t = params[study.name]["train"]
    logger = MLFlowLogger(tracking_uri=tracking.tracking_uri(params), run_id=run.run_id, log_model=False)
    return L.Trainer(
        accelerator=t["accelerator"], devices=t["devices"], num_nodes=int(t["num_nodes"]),
        strategy=t["strategy"], precision=precision(t["precision"]), max_epochs=int(t["max_epochs"]),
        callbacks=list(cbs), logger=logger, default_root_dir=str(run.dir),
        enable_progress_bar=sys.stderr.isatty(), enable_model_summary=False,
        log_every_n_steps=max(1, min(50, n_batches)), num_sanity_val_steps=0)


@dataclass
class Fitted:
    """What :func:`fit` hands back to the study's train stage (rank 0 only)."""
    trainer: object
    best_path: str
    best_score: float | None
    resumed_from_step: int


def fit(params: dict, study: Study, run: Run, lit, datamodule, *, n_train: int,
        shown: tuple[str, ...] = ("train_loss",)) -> Fitted | None:
    """Fit ``lit`` on ``datamodule`` in ``run`` (resuming from its last checkpoint). None on DDP ranks > 0."""
    t = params[study.name]["train"]
    last_cb, best_cb, start_cb, epoch_cb = callbacks(study, run.dir / "checkpoints",
                                                     int(t.get("checkpoint_every_n_steps") or 0),
                                                     (*shown, study.monitor[0]))
    n_batches = -(-n_train // int(t["batch_size"]))
    trainer = build_trainer(params, study, run, [last_cb, best_cb, start_cb, epoch_cb], n_batches)
    env = run_dir_env(study)
    os.environ[env] = str(run.dir)
    try:
        trainer.fit(lit, datamodule=datamodule,
                    ckpt_path=str(run.last_ckpt) if run.resumed and run.last_ckpt.is_file() else None)
    finally:
        os.environ.pop(env, None)
    if not trainer.is_global_zero:
        return None
    best_path = best_cb.best_model_path or last_cb.last_model_path or last_cb.best_model_path
    score = float(best_cb.best_model_score) if best_cb.best_model_score is not None else None
    return Fitted(trainer, best_path, score, start_cb.step)


def finish(params: dict, study: Study, run: Run, fitted: Fitted, info: dict) -> dict:
    """Log the best monitored score, return run.json's content for ``<train.out_dir>``, mark COMPLETED.

    Call it after the study wrote its model into ``<train.out_dir>``.
    """
    metric = study.monitor[0]
    started = read_json(run.dir / "run.json")  # provenance fixed when the run began
    # no absolute path: DVC hashes this file, and two clones of one commit must agree
    out = {"mlflow_run_id": run.run_id, "run_dir": relative(params, run.dir),
           "resumed_from_step": int(fitted.resumed_from_step),
           **{k: started.get(k) for k in ("data_version", "git_commit", "git_dirty")},
           "global_step": int(fitted.trainer.global_step), f"best_{metric}": fitted.best_score,
           "best_checkpoint": Path(fitted.best_path).name, **info}
    if fitted.best_score is not None:
        fitted.trainer.logger.experiment.log_metric(run.run_id, f"best_{metric}", fitted.best_score)
    return out


def best_weights(fitted: Fitted, prefix: str) -> dict:
    """The best checkpoint's state_dict entries under ``prefix`` (the LightningModule's net attribute)."""
    import torch

    ckpt = torch.load(fitted.best_path, map_location="cpu", weights_only=False)
    return {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}


def publish(params: dict, study: Study, run: Run, fitted: Fitted, *, history, save_model, info: dict) -> dict:
    """Write ``<train.out_dir>/`` as one folder (``save_model(path)`` writes model.pt; history.csv;
    run.json), log the best monitored score, mark the run folder COMPLETED; returns run.json's content."""
    from tasks.core import atomic_dir, write_csv

    info = finish(params, study, run, fitted, {"epochs": int(len(history)), **info})
    out_dir = resolve(params, params[study.name]["train"]["out_dir"])
    with atomic_dir(out_dir) as tmp:
        save_model(tmp / "model.pt")
        write_csv(tmp / "history.csv", history)
        write_json(tmp / "run.json", info)
    write_json(run.dir / "COMPLETED", {"global_step": info["global_step"], "out_dir": relative(params, out_dir)})
    metric = study.monitor[0]
    log(f"train: done, {info['epochs']} epochs, best {metric} {info[f'best_{metric}']}, "
        f"model in {out_dir / 'model.pt'}")
    return info
