"""The pairwise emotional relationship recognition study (PERR: who feels what towards whom), declared once."""
from tasks.core.study import MAX, Study

STUDY = Study(
    name="relationship",
    title="Pairwise emotional relationship recognition: synchronous modal-temporal attention over "
          "faces, voice and subtitles",
    stages={
        "acquire": "acquire clips + tracks + subtitles + crowd labels (synthetic with known truth, or an "
                   "ERATO-like folder: manifest.csv + a raw label table)",
        "clean": "one label per clip from the crowd (Dawid-Skene); also a tool: --labels RAW.csv --out DIR",
        "train": "extract the pair's features once (cached), train the fusion network (Lightning; resumable)",
        "evaluate": "accuracy, macro-F1, per-class F1, coarse accuracy with bootstrap CIs; sync vs concat / "
                    "late fusion and single modalities, paired, with verdicts",
        "report": "write the HTML report (variants table, verdicts, per-class F1, annotator quality, curves)",
        "register": "register the model in MLflow; promote to champion if its test macro-F1 beats the current one",
    },
    metrics={"macro_f1": MAX, "accuracy": MAX, "coarse_accuracy": MAX},
    primary_metric="macro_f1",
    monitor=("val_macro_f1", MAX),
    serving="tasks.relationship.serving:RelationshipPyfunc",
    schema="tasks.relationship.schema:RelationshipParams",
)
