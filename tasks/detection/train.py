"""Train the detector (backbone + FPN, RPN, box head, and every IoU head on one shared trunk).

Reads the cleaned ``train`` / ``val`` COCO files and acquire's images. The run folder, resume after a
kill and the Lightning trainer are the core's (tasks/core/training.py); the best checkpoint is chosen
by val AP50 of ``detection.train.val_variant``. Writes ``<train.out_dir>/``: model.pt (the detector,
its categories and input size), history.csv and run.json, atomically, as one folder.
"""
from __future__ import annotations

from tasks.core import MokuflowError, log
from tasks.detection.data import categories, items
from tasks.detection.study import STUDY

HASHED_SECTIONS = ("train", "model")


def net_kwargs(params: dict, num_classes: int) -> dict:
    m = params["detection"]["model"]
    first = int(m.get("fpn_min_level", 3))  # one FPN level per anchor size, from this one up
    return dict(num_classes=num_classes, channels=list(m["channels"]), norm=str(m.get("norm", "gn")),
                fpn_channels=int(m["fpn_channels"]),
                anchor_sizes=list(m["anchor_sizes"]), fpn_levels=list(range(first, first + len(m["anchor_sizes"]))),
                roi_size=int(m["roi_size"]), head_dim=int(m["head_dim"]),
                roi_batch_per_image=int(m.get("roi_batch_per_image", 64)),
                box_loss_beta=float(m.get("box_loss_beta", 1.0)),
                iou_heads=list(m["iou_heads"]),
                iou_min_target=float(m["iou_min_target"]), iou_low_fraction=float(m["iou_low_fraction"]))


def build(params: dict, *, num_workers: int | None = None):
    """The recipe of ``detection.model`` / ``detection.train`` on the cleaned train / val splits:
    (LightningModule, DataModule, category ids, category names), seeded. The train stage's, and
    benchmarks/gpu_detection_long.py's (``num_workers`` overrides ``detection.train.num_workers``)."""
    import lightning as L

    from models.detection.detector import Detector
    from models.detection.lit import DetectionDataModule, DetectionLitModule

    t, m = params["detection"]["train"], params["detection"]["model"]
    coco, train_items = items(params, "train")
    _, val_items = items(params, "val")
    cat_ids, cat_names = categories(coco)
    L.seed_everything(int(t["seed"]), workers=True, verbose=False)
    try:
        net = Detector(**net_kwargs(params, len(cat_ids)))
        lit = DetectionLitModule(net, lr=float(t["lr"]), weight_decay=float(t["weight_decay"]),
                                 warmup_steps=int(t["warmup_steps"]), val_variant=str(t["val_variant"]))
        dm = DetectionDataModule(train_images=train_items, val_images=val_items, category_ids=cat_ids,
                                 image_size=int(m["image_size"]), batch_size=int(t["batch_size"]),
                                 num_workers=int(t["num_workers"] if num_workers is None else num_workers),
                                 seed=int(t["seed"]))
    except ValueError as e:  # e.g. val_variant without its head, anchors vs levels
        raise MokuflowError(f"{params.get('_file', 'params.yaml')}: detection.model / train: {e}") from None
    return lit, dm, cat_ids, cat_names


def run(params: dict, **kwargs) -> dict:
    from tasks.core import training

    lit, dm, cat_ids, cat_names = build(params)
    run = training.open_run(params, STUDY, HASHED_SECTIONS)
    n_train = len(dm.train_set)
    log(f"train: {n_train} train / {len(dm.val_set)} val images, {len(cat_ids)} categories, "
        f"{params['detection']['train']['max_epochs']} epochs, data {run.data_version}")
    fitted = training.fit(params, STUDY, run, lit, dm, n_train=n_train, shown=("train_loss",))
    if fitted is None:  # a DDP rank > 0
        return {}
    return _finish(params, run, fitted, lit, cat_ids, cat_names)


def _finish(params, run, fitted, lit, cat_ids: list[int], cat_names: list[str]) -> dict:
    """model.pt from the best checkpoint + history.csv + run.json (the core's publish)."""
    import pandas as pd

    from models.detection.detector import Detector
    from models.detection.inference import save_model
    from tasks.core import training

    net = Detector(**lit.net.config)
    net.load_state_dict(training.best_weights(fitted, "net."))
    size = int(params["detection"]["model"]["image_size"])
    return training.publish(
        params, STUDY, run, fitted, history=pd.DataFrame(lit.history),
        save_model=lambda path: save_model(path, net, category_ids=cat_ids, category_names=cat_names, image_size=size),
        info={"categories": dict(zip(cat_ids, cat_names))})
