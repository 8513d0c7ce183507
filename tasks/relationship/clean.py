"""Clean the crowd's labels into one label per clip (Dawid-Skene), ``relationship.data.clean_dir``::

    <clean_dir>/labels.csv      clip_id, label, confidence (the most probable label and its posterior)
    <clean_dir>/annotators.csv  annotator_id, n_labels, accuracy, p_<true>_<given> (confusion matrix)
    <clean_dir>/clean.json      the summary (clips, annotators, iterations, agreement with majority vote)

In the pipeline it reads ``<raw_dir>/labels_raw.csv``; as a tool, ``mokuflow relationship clean --labels
RAW.csv --out DIR`` cleans any tidy table ``clip_id, annotator_id, label``. The label set is
``relationship.clean.labels``; a label outside it is refused naming the file, the lines and the values
(:mod:`tasks.relationship.labels`). Atomic: a failure leaves the previous output whole. No torch.
"""
from __future__ import annotations

from pathlib import Path

from tasks.core import resolve


def add_arguments(parser) -> None:
    parser.add_argument("--labels", default=None, metavar="PATH",
                        help="raw label table clip_id, annotator_id, label (default: <relationship.data.raw_dir>/labels_raw.csv)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="output folder (default: relationship.data.clean_dir)")


def run(params: dict, labels: str | None = None, out: str | None = None, **kwargs) -> dict:
    from tasks.relationship.labels import clean

    cfg, data = params["relationship"]["clean"], params["relationship"]["data"]
    # paths given on the command line are the user's: relative to the cwd, not to params.yaml
    raw_csv = Path(labels).resolve() if labels else resolve(params, data["raw_dir"]) / "labels_raw.csv"
    out_dir = Path(out).resolve() if out else resolve(params, data["clean_dir"])
    summary = clean(raw_csv, out_dir, labels=list(cfg["labels"]), max_iter=int(cfg["max_iter"]), tol=float(cfg["tol"]))
    return {k: summary[k] for k in ("out", "n_clips", "n_annotators", "n_labels", "n_missing_labels",
                                    "n_unlabelled_clips", "n_iter", "converged", "agreement_with_majority_vote")}
