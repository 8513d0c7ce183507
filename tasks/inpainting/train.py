"""Train the shared-memory inpainting network on clips of the clean DAVIS-layout folder (Lightning;
seeded, resumable after a kill, bf16 on GPU; epoch curves to MLflow).

Clips and losses are the model's (:mod:`models.inpainting.lit`): a scribbled reference frame and
``clip_len - 1`` targets segmented from the memory of the frames before them (BCE + Dice), each frame
restored from the others (L1 + SSIM in the hole against the true background). The run folder, resume
and trainer are the core's (tasks/core/training.py); the checkpoint is chosen by ``val_j``.
Writes ``<train.out_dir>/``: model.pt (network + the session settings it runs with), history.csv, run.json.
"""
from __future__ import annotations

from tasks.core import log
from tasks.inpainting.data import clean_root, split_names
from tasks.inpainting.study import STUDY

HASHED_SECTIONS = ("train", "model")


def net_config(params: dict) -> dict:
    m = params["inpainting"]["model"]
    return {"width": int(m["width"]), "key_dim": int(m["key_dim"]), "value_dim": int(m["value_dim"])}


def session_meta(params: dict) -> dict:
    """What the session runs the network with, stored in model.pt (cloak / serving read it back)."""
    m = params["inpainting"]["model"]
    return {"internal_size": [int(v) for v in m["internal_size"]], "max_memory": int(m["max_memory"])}


def run(params: dict, **kwargs) -> dict:
    import lightning as L

    from models.inpainting.lit import InpaintingDataModule, InpaintingLitModule
    from models.inpainting.network import InpaintingNet
    from tasks.core import training

    t, m = params["inpainting"]["train"], params["inpainting"]["model"]
    train, val = split_names(params, "train"), split_names(params, "val")
    L.seed_everything(int(t["seed"]), workers=True, verbose=False)
    dm = InpaintingDataModule(root=clean_root(params), train_sequences=train, val_sequences=val,
                              size=tuple(m["internal_size"]), clip_len=int(t["clip_len"]), max_gap=int(t["max_gap"]),
                              batch_size=int(t["batch_size"]), samples_per_epoch=int(t["samples_per_epoch"]),
                              num_workers=int(t["num_workers"]), seed=int(t["seed"]), corrective=float(t["corrective"]))
    loss = t["loss"]
    lit = InpaintingLitModule(InpaintingNet(**net_config(params)), lr=float(t["lr"]),
                              weight_decay=float(t["weight_decay"]), warmup_steps=int(t["warmup_steps"]),
                              mask_weight=float(loss["mask_weight"]), restore_weight=float(loss["restore_weight"]),
                              ssim_weight=float(loss["ssim_weight"]))
    run = training.open_run(params, STUDY, HASHED_SECTIONS)
    log(f"train: {len(train)} train / {len(val)} val sequences, {t['samples_per_epoch']} clips an epoch, "
        f"{t['max_epochs']} epochs, data {run.data_version}")
    fitted = training.fit(params, STUDY, run, lit, dm, n_train=int(t["samples_per_epoch"]),
                          shown=("train_loss", "val_hole_psnr"))
    if fitted is None:  # a DDP rank > 0
        return {}
    return _finish(params, run, fitted, lit)


def _finish(params, run, fitted, lit) -> dict:
    import pandas as pd

    from models.inpainting.inference import save_model
    from models.inpainting.network import InpaintingNet
    from tasks.core import training

    net = InpaintingNet(**lit.hparams.net_config)
    net.load_state_dict(training.best_weights(fitted, "net."))
    history = pd.DataFrame(lit.history, columns=["epoch", "train_loss", "val_j"])
    return training.publish(params, STUDY, run, fitted, history=history, info={},
                            save_model=lambda path: save_model(path, net, session_meta(params)))
