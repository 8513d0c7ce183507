"""The detection study (two-stage detector + Decoupled IoU Regression), declared once."""
from tasks.core.study import MAX, Study

STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")

STUDY = Study(
    name="detection",
    title="Object detection with Decoupled IoU Regression (DIR)",
    stages={
        "acquire": "acquire COCO-format images + annotations (synthetic, a local COCO layout, or a URL)",
        "clean": "clean COCO annotations (drop degenerate / outside / duplicate / unknown, clip)",
        "train": "train the detector with every IoU head on one shared trunk (Lightning; resumable)",
        "evaluate": "COCO AP of every variant on the held-out split, bootstrap CIs, IoU calibration",
        "report": "write the HTML report (variants, per-class AP, PR curves, IoU plots, examples)",
        "register": "register the detector in MLflow; promote to champion if its AP beats the current one",
        "score": "score any COCO ground-truth / detections pair (the 12 COCO stats)",
    },
    tools=("score",),
    metrics={s: MAX for s in STATS},
    primary_metric="AP",
    monitor=("val_ap50", MAX),
    serving="tasks.detection.serving:DetectionPyfunc",
    schema="tasks.detection.schema:DetectionParams",
)
