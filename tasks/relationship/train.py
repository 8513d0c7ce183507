"""Train the pair-relationship network on the clean labels (Lightning; seeded, resumable after a kill,
bf16 on GPU; epoch curves to MLflow).

The manifest's train and val rows with a clean label become features once (faces, bodies, motion,
log-mel, subtitle words at ``relationship.features.n_steps`` steps; cached per clip under
``relationship.train.cache_dir``, :mod:`tasks.relationship.dataset`); the vocabulary is built from the
training subtitles. The network is :class:`models.relationship.network.RelationshipNet` with
``relationship.model.fusion`` (default ``sync``: the paper's synchronous modal-temporal attention),
class-weighted cross-entropy on the fine and the coarse head; the checkpoint is chosen by
``val_macro_f1``. The run folder, resume and trainer are the core's (tasks/core/training.py).

For the evaluate stage's fusion comparison, each fusion in ``relationship.evaluate.ablation_fusions``
(other than the model's) is trained afterwards on the same features, for
``relationship.evaluate.ablation_epochs`` epochs (its last epoch kept).

Writes ``<train.out_dir>/``: model.pt (network + vocabulary + feature config + labels: everything
serving needs), ablations.pt (the other fusions, possibly none), history.csv, run.json (whose
``skipped_clips`` lists the clip pairs left out because a file of theirs cannot be read, with the reason).
"""
from __future__ import annotations

from tasks.core import MokuflowError, log
from tasks.relationship.study import STUDY

HASHED_SECTIONS = ("train", "model", "features", "clean")


def net_config(params: dict, vocab_size: int, *, fusion: str | None = None) -> dict:
    m, f = params["relationship"]["model"], params["relationship"]["features"]
    return {"vocab_size": int(vocab_size), "fusion": fusion or m["fusion"], "modalities": list(m["modalities"]),
            "dim": int(m["dim"]), "heads": int(m["heads"]), "layers": int(m["layers"]), "n_steps": int(f["n_steps"]),
            "channels": int(m["channels"]), "n_mels": int(f["n_mels"]), "mel_steps": int(f["mel_steps"]),
            "dropout": float(m["dropout"]), "modality_dropout": float(m["modality_dropout"]),
            "n_fine": len(params["relationship"]["clean"]["labels"]), "n_coarse": 3}


def run(params: dict, **kwargs) -> dict:
    import lightning as L
    import numpy as np

    from models.relationship.lit import RelationshipDataModule, class_weights
    from models.relationship.network import COARSE_OF_FINE
    from tasks.core import training
    from tasks.relationship import dataset

    t = params["relationship"]["train"]
    train_rows = dataset.labelled_rows(params, "train")
    val_rows = dataset.labelled_rows(params, "val")
    vocab, cfg = dataset.build_vocab(params, train_rows), dataset.feature_config(params)
    # an unreadable clip is left out and listed (run.json -> the report), not a failed stage
    feats, rows, skipped = dataset.readable_features(params, train_rows + val_rows, vocab, cfg)
    train_rows, val_rows = [r for r in rows if r["split"] == "train"], [r for r in rows if r["split"] == "val"]
    if not train_rows or not val_rows:
        raise MokuflowError(f"{dataset.raw_root(params) / 'manifest.csv'}: {len(train_rows)} readable train and "
                            f"{len(val_rows)} val clip pairs after leaving out {len(skipped)} unreadable ones")
    rows = train_rows + val_rows  # readable_features keeps the order: train rows first
    labels = dataset.label_ids(params, rows)
    train_index, val_index = np.arange(len(train_rows)), np.arange(len(train_rows), len(rows))
    n_classes = len(params["relationship"]["clean"]["labels"])
    weights = class_weights(labels[train_index], n_classes) if t["class_weighted"] else None
    coarse = class_weights(np.asarray(COARSE_OF_FINE)[labels[train_index]], 3) if t["class_weighted"] else None

    def datamodule():
        return RelationshipDataModule(features=feats, labels=labels, train_index=train_index, val_index=val_index,
                                      batch_size=int(t["batch_size"]), num_workers=int(t["num_workers"]),
                                      seed=int(t["seed"]))

    def lit_module(fusion=None):
        from models.relationship.lit import RelationshipLitModule
        from models.relationship.network import RelationshipNet

        return RelationshipLitModule(RelationshipNet(**net_config(params, len(vocab), fusion=fusion)),
                                     lr=float(t["lr"]), weight_decay=float(t["weight_decay"]),
                                     warmup_steps=int(t["warmup_steps"]), fine_weights=weights,
                                     coarse_weights=coarse, coarse_loss_weight=float(t["coarse_loss_weight"]))

    L.seed_everything(int(t["seed"]), workers=True, verbose=False)
    lit = lit_module()
    run = training.open_run(params, STUDY, HASHED_SECTIONS)
    log(f"train: {len(train_rows)} train / {len(val_rows)} val clip pairs, vocabulary {len(vocab)} words, "
        f"fusion {params['relationship']['model']['fusion']}, {t['max_epochs']} epochs, data {run.data_version}")
    fitted = training.fit(params, STUDY, run, lit, datamodule(), n_train=len(train_rows),
                          shown=("train_loss", "val_accuracy"))
    if fitted is None:  # a DDP rank > 0
        return {}
    ablations = _ablations(params, lit_module, datamodule)
    return _finish(params, run, fitted, lit, vocab, cfg, ablations, skipped)


def _ablations(params: dict, lit_module, datamodule) -> dict:
    """The other fusions of ``evaluate.ablation_fusions``, each fitted for ``ablation_epochs``: {fusion: (net, val)}."""
    import lightning as L

    from tasks.core.training import precision

    t, e = params["relationship"]["train"], params["relationship"]["evaluate"]
    main = params["relationship"]["model"]["fusion"]
    out = {}
    for fusion in dict.fromkeys(e["ablation_fusions"]):
        if fusion == main:
            continue
        L.seed_everything(int(t["seed"]), workers=True, verbose=False)
        lit = lit_module(fusion)
        epochs = int(e["ablation_epochs"] or t["max_epochs"])
        trainer = L.Trainer(accelerator=t["accelerator"], devices=1, precision=precision(t["precision"]),
                            max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, num_sanity_val_steps=0)
        trainer.fit(lit, datamodule=datamodule())
        val = {k: v for k, v in (lit.history[-1] if lit.history else {}).items() if k != "epoch"}
        log(f"train: ablation fusion {fusion}: {epochs} epochs, val macro-F1 {val.get('val_macro_f1', float('nan')):.3f}")
        out[fusion] = (lit.net.cpu().eval(), {"epochs": epochs, **val})
    return out


def _finish(params, run, fitted, lit, vocab, cfg, ablations, skipped) -> dict:
    import pandas as pd

    from models.relationship.inference import save_ablations, save_model
    from models.relationship.lit import VAL_KEYS
    from models.relationship.network import RelationshipNet
    from tasks.core import training

    net = RelationshipNet(**lit.hparams.net_config)
    net.load_state_dict(training.best_weights(fitted, "net."))
    history = pd.DataFrame(lit.history, columns=["epoch", "train_loss", *VAL_KEYS])
    labels = list(params["relationship"]["clean"]["labels"])

    def save(path):
        save_model(path, net, vocab=vocab, features=cfg, labels=labels)
        save_ablations(path.parent / "ablations.pt", {k: v[0] for k, v in ablations.items()})

    return training.publish(params, STUDY, run, fitted, history=history, save_model=save,
                            info={"vocab_size": len(vocab), "fusion": net.config["fusion"],
                                  "ablations": {k: v[1] for k, v in ablations.items()},
                                  "skipped_clips": skipped})
