"""The VQA study, declared once: what the shared core (CLI, flows, dvc, register, serving) needs."""
from tasks.core.study import MAX, MIN, Study

STUDY = Study(
    name="vqa",
    title="No-reference video quality (STDAM)",
    stages={
        "acquire": "acquire raw videos + per-rater scores (synthetic, a local folder, or a URL)",
        "clean": "clean per-rater opinion scores with SUREAL's maximum-likelihood subject model",
        "train": "train STDAM on the cleaned scores (Lightning; resumable)",
        "baseline": "fit the hand-crafted baseline (StandardScaler + Ridge on clip features)",
        "evaluate": "score STDAM and the baseline on the held-out test split with bootstrap CIs, and "
                    "STDAM's per-kind sensitivity to graded distortions",
        "ablation": "train STDAM without each module and score it beside STDAM (vqa.ablation.enabled; "
                    "off by default)",
        "report": "write the HTML report",
        "register": "register the model in MLflow; promote to champion if it beats the current one",
    },
    metrics={"srcc": MAX, "plcc": MAX, "krcc": MAX, "rmse": MIN},
    primary_metric="srcc",
    monitor=("val_srcc", MAX),
    serving="tasks.vqa.serving:VQAPyfunc",
    schema="tasks.vqa.schema:VQAParams",
)
