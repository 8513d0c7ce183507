"""The detection study (two-stage detector + Decoupled IoU Regression), declared once."""
from tasks.core.study import MAX, Study

# COCO's 12 + AP90 (AP at IoU 0.90, from COCOeval's precision array: tasks/detection/cocoeval.py)
STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl", "AP90")

STUDY = Study(
    name="detection",
    title="Object detection with Decoupled IoU Regression (DIR)",
    stages={
        "acquire": "acquire COCO-format images + annotations (synthetic, a local COCO layout, or a URL)",
        "clean": "clean COCO annotations (drop degenerate / outside / duplicate / unknown, clip)",
        "train": "train the detector with every IoU head on one shared trunk (Lightning; resumable)",
        "evaluate": "COCO AP (+ AP90) of every variant on the held-out split, bootstrap CIs, paired gains, "
                    "the two claims' verdicts, IoU calibration (also by IoU bin before NMS)",
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
