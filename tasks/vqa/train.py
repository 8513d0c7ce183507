"""Train STDAM on the cleaned scores (Lightning; resumable; epoch curves to MLflow).

Reads ``<raw_dir>/videos.csv`` (path, split) joined with ``<clean_dir>/scores.csv`` (quality) on
video_id. The run folder, resume after a kill and the trainer are the core's (tasks/core/training.py):
the run hash covers the train / model / frames params and the data version (DVC md5 of clean_dir).
Writes ``<train.out_dir>/``: model.pt, history.csv, run.json (atomically, as one folder).
"""
from __future__ import annotations

from tasks.core import MokuflowError, log, resolve
from tasks.vqa.data import frames_cfg, scores_csv, split_items, videos_csv
from tasks.vqa.study import STUDY

HASHED_SECTIONS = ("train", "model", "frames")


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


def model_kwargs(params: dict) -> dict:
    from models.vqa.video import MOTIONS

    m, motion = params["vqa"]["model"], frames_cfg(params)["motion"]
    pretrained = resolve(params, m["pretrained"]) if m.get("pretrained") else None
    return dict(backbone_channels=list(m["backbone_channels"]), gcn_layers=int(m["gcn_layers"]),
                gcn_dim=int(m["gcn_dim"]), attention_heads=int(m["attention_heads"]),
                motion_in_channels=MOTIONS[motion], motion_channels=int(m["motion_channels"]),
                lstm_hidden=int(m["lstm_hidden"]), dropout=float(m["dropout"]),
                motion_branch=bool(m.get("motion_branch", True)), spatial=str(m.get("spatial", "graph")),
                temporal=str(m.get("temporal", "lstm")), pretrained=str(pretrained) if pretrained else None)


# ---------------------------------------------------------------------------------------------- run

def run(params: dict, **kwargs) -> dict:
    import lightning as L

    from models.vqa.lit import VQADataModule, VQALitModule
    from models.vqa.stdam import PretrainedWeightsError
    from tasks.core import training

    t, fr = params["vqa"]["train"], params["vqa"]["frames"]
    items = load_items(params)
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

    run = training.open_run(params, STUDY, HASHED_SECTIONS)
    log(f"train: {len(items['train'])} train / {len(items['val'])} val videos, "
        f"{t['max_epochs']} epochs, data {run.data_version}")
    fitted = training.fit(params, STUDY, run, lit, dm, n_train=len(items["train"]),
                          shown=("train_loss", "val_loss"))
    if fitted is None:  # a DDP rank > 0
        return {}
    return _finish(params, run, fitted, lit, frames, stats)


def _finish(params, run, fitted, lit, frames_cfg: dict, stats: dict) -> dict:
    """model.pt (best val checkpoint) + history.csv + run.json (the core's publish)."""
    import pandas as pd

    from models.vqa.inference import save_model
    from models.vqa.stdam import STDAM
    from tasks.core import training

    model = STDAM(**dict(lit.hparams.model_kwargs, pretrained=None))
    model.load_state_dict(training.best_weights(fitted, "model."))
    history = pd.DataFrame(lit.history, columns=["epoch", "train_loss", "val_loss", "val_srcc", "val_pearson"])
    return training.publish(params, STUDY, run, fitted, history=history, info={},
                            save_model=lambda path: save_model(path, model, frames_cfg, stats))
