"""Crowd labels of clips -> one label per clip (Dawid-Skene), the core of `mokuflow relationship clean`.

Input: the tidy raw table ``clip_id, annotator_id, label`` (one row per label; read by the project's
one table reader, :func:`tasks.core.tables.read_table`: comma-, tab-, semicolon- or pipe-separated,
ids kept as written). A missing label (an empty cell or a missing-value marker such as ``NA`` /
``n/a``, unless that text is itself one of the labels) is skipped and counted
(``n_missing_labels``); a label outside the label set or an empty id is refused with one line naming
the file, the lines and the values. An annotator labelling one clip more than once is accepted, each
label one vote (``n_repeated_labels``).

Output folder (written atomically, :func:`tasks.core.outputs.atomic_dir`; it must hold nothing but a
previous clean output and must not hold the input):

- ``labels.csv``: ``clip_id, label, confidence`` (the most probable label and its posterior);
- ``annotators.csv``: ``annotator_id, n_labels, accuracy`` (expected share of their labels that are
  right) and the confusion matrix as ``p_<true>_<given>`` columns (each ``p_<true>_*`` row sums to 1);
- ``clean.json``: the summary :func:`clean` returns.

A clip whose every label is missing has no label: it is left out of labels.csv and counted
(``n_unlabelled_clips``). No torch, no pandas at import time.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from tasks.core import MokuflowError, atomic_dir, log, write_json
from tasks.core.tables import NA_TEXT, lines_of, read_table

LABELS = ("hostile", "tense", "neutral", "mild", "intimate")
COARSE = {"hostile": "negative", "tense": "negative", "neutral": "neutral", "mild": "positive",
          "intimate": "positive"}
COLUMNS = ("clip_id", "annotator_id", "label")
# What a previous clean output holds: adopted when the folder has no ownership manifest yet.
OWNS = ("labels.csv", "annotators.csv", "clean.json")


def clean(raw_csv, out_dir, *, labels: Sequence[str] = LABELS, max_iter: int = 100, tol: float = 1e-6) -> dict:
    """Aggregate the raw labels in ``raw_csv`` and write ``out_dir``; returns clean.json's dict + ``out``."""
    from models.relationship.annotators import AnnotationError, aggregate, majority_vote

    raw_csv, out_dir = Path(raw_csv), Path(out_dir)
    labels = _check_settings(labels, max_iter, tol)
    table, n_missing = read_labels(raw_csv, labels=labels)
    rated = table[table["label"] != ""]
    if rated.empty:
        raise MokuflowError(f"{raw_csv}: every label is missing")
    cols = [rated[c].to_numpy(dtype=str) for c in COLUMNS]
    t0 = time.perf_counter()
    try:
        res = aggregate(*cols, labels, max_iter=max_iter, tol=tol)
        mv = majority_vote(*cols, labels)
    except AnnotationError as e:
        raise MokuflowError(f"{raw_csv}: {e}") from None
    seconds = time.perf_counter() - t0
    n_unlabelled = table["clip_id"].nunique() - len(res.items)
    summary = _summary(raw_csv, res, mv, n_missing=n_missing, n_unlabelled=n_unlabelled, seconds=seconds,
                       max_iter=max_iter)
    summary["n_repeated_labels"] = repeated_labels(rated)
    write_clean(out_dir, res, summary, inputs=[raw_csv])
    return {**summary, "out": str(out_dir)}


def _check_settings(labels, max_iter, tol) -> list[str]:
    labels = [str(x).strip() for x in labels]
    if len(set(labels)) < 2 or len(set(labels)) != len(labels) or "" in labels:
        raise MokuflowError(f"labels: expected at least two distinct, non-empty labels, got {labels}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise MokuflowError(f"max_iter: expected an integer >= 1, got {max_iter!r}")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 < tol < 1:
        raise MokuflowError(f"tol: expected a number in (0, 1), got {tol!r}")
    return labels


# ----------------------------------------------------------------------------------------- input

def read_labels(path, *, labels: Sequence[str] = LABELS):
    """The raw table (text cells, index = line numbers) with missing labels as ``""``, and their count.

    Refused, one line each: a missing file or column, an empty ``clip_id`` / ``annotator_id``, a label
    outside ``labels`` (the lines and values).
    """
    path = Path(path)
    table = read_table(path, COLUMNS, id_columns=COLUMNS[:2], what="label table",
                       not_found="run `mokuflow relationship acquire` or pass --labels")
    if table.empty:
        raise MokuflowError(f"{path}: the label table has no rows")
    label = table["label"]
    known = label.isin(labels)
    missing = ~known & ((label == "") | label.str.lower().isin(NA_TEXT))
    bad = ~known & ~missing
    if bad.any():
        values = label[bad].tolist()[:5]
        raise MokuflowError(f"{path}: {int(bad.sum())} label(s) outside the label set {list(labels)} on lines "
                            f"{lines_of(table, bad)}: {values}")
    table = table.assign(label=label.where(~missing, ""))
    n_missing = int(missing.sum())
    if n_missing:
        log(f"clean: {path}: {n_missing} missing label(s) (empty or NA) skipped")
    return table[list(COLUMNS)], n_missing


def repeated_labels(table) -> int:
    """How many labels repeat an earlier (clip, annotator) pair. Accepted: real crowds have them
    (adult_content2: 2,922 repeats of 2,918 pairs, 149 pairs disagreeing with themselves) and the model counts each
    as one more vote, as crowd-kit does; clean.json reports how many."""
    return int(table.duplicated(["clip_id", "annotator_id"]).sum())


# ---------------------------------------------------------------------------------------- output

def _summary(path: Path, res, mv, *, n_missing: int, n_unlabelled: int, seconds: float, max_iter: int) -> dict:
    import numpy as np

    if not res.converged:
        log(f"clean: Dawid-Skene NOT converged in {max_iter} iterations (raise max_iter)")
    log(f"clean: Dawid-Skene on {int(res.n_labels.sum())} labels of {len(res.items)} clips by "
        f"{len(res.annotators)} annotators: {res.n_iter} iterations in {seconds:.2f} s")
    return {
        "labels_table": path.name,  # no absolute path in a file DVC hashes
        "method": "dawid-skene", "classes": res.classes.tolist(),
        "n_labels": int(res.n_labels.sum()), "n_missing_labels": n_missing, "n_clips": len(res.items),
        "n_unlabelled_clips": int(n_unlabelled), "n_annotators": len(res.annotators),
        "n_iter": res.n_iter, "converged": bool(res.converged), "log_likelihood": res.log_likelihood,
        "class_prior": dict(zip(res.classes.tolist(), res.prior.round(6).tolist())),
        "mean_confidence": float(res.confidence.mean()),
        # how often the model overrules the plain vote: a sanity figure for the report
        "agreement_with_majority_vote": float(np.mean(res.labels == mv.labels)),
    }


def frames(res) -> dict:
    """labels.csv and annotators.csv of an :class:`~models.relationship.annotators.Aggregation`."""
    import pandas as pd

    classes = res.classes.tolist()
    clips = pd.DataFrame({"clip_id": res.items, "label": res.labels, "confidence": res.confidence.round(6)})
    people = pd.DataFrame({"annotator_id": res.annotators, "n_labels": res.n_labels,
                           "accuracy": res.accuracy.round(6)})
    conf = res.confusion.reshape(len(res.annotators), -1).round(6)
    names = [f"p_{t}_{g}" for t in classes for g in classes]  # row-major: [true, given]
    people = pd.concat([people, pd.DataFrame(conf, columns=names)], axis=1)
    return {"labels.csv": clips, "annotators.csv": people}


def write_clean(out_dir, res, summary: dict, *, inputs: Sequence = ()) -> Path:
    """Write labels.csv, annotators.csv and clean.json into ``out_dir`` as one atomic swap."""
    out_dir = Path(out_dir)
    tables = frames(res)  # computed before the folder is touched: a failure leaves it as it was
    with atomic_dir(out_dir, inputs=inputs, owns=OWNS) as tmp:
        for name, frame in tables.items():
            frame.to_csv(tmp / name, index=False)
        write_json(tmp / "clean.json", summary)
    log(f"clean: {summary['n_clips']} clips -> {out_dir}")
    return out_dir
