"""Evaluate the trained model on the held-out test clip pairs, beside its ablations.

Variants, all on the same test features: the model (``relationship.model.fusion``, default ``sync``,
every modality); the same model predicting from one modality alone (``visual``, ``audio``, ``text``:
the others masked at inference, as served with ``params={"modalities": [...]}``); the same model with
one modality missing (``without_audio``...: the other two); and each other fusion the train stage fitted (``relationship.evaluate.ablation_fusions``: ``concat``, ``late``).

Per variant: accuracy, macro-F1 (over the classes present in truth or predictions), per-class F1 and
coarse accuracy (negative / neutral / positive, from the coarse head), each with a 95 % bootstrap
interval over test clip pairs (``relationship.evaluate.bootstrap`` resamples, one set of draws for all:
paired). The paper's two claims, on macro-F1, as paired differences model - other with a verdict:
*holds* (interval above 0 for every comparison), *reversed* (below 0 for one), *not shown* otherwise
or with fewer than ``min_clips_for_verdict`` test pairs:

- ``fusion_beats_single_modality``: the model beats each of visual, audio, text alone;
- ``sync_beats_other_fusion``: the model's fusion beats each other fusion trained.

A test clip that cannot be read is left out and listed in metrics.json's ``skipped_clips`` with the
reason. Writes ``<evaluate.out_dir>/``: metrics.json (the summary, with the fine and coarse confusion
matrices and ``relationship.evaluate.n_examples`` example clips), per_clip.csv (truth and each variant's
prediction), examples/<clip_id>.png (the examples' middle frames with the pair's boxes). Logs ``test_<metric>[_ci_low|_ci_high]`` (model) and ``test_<variant>_<metric>`` to the
pipeline's MLflow run.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from tasks.core import MokuflowError, ci_text, log, resolve, write_csv, write_json
from tasks.core.tracking import finite, log_evaluation

SINGLE = ("visual", "audio", "text")
METRICS = ("accuracy", "macro_f1", "coarse_accuracy")


def run(params: dict, **kwargs) -> dict:
    import torch

    from models.relationship.inference import COARSE_LABELS, ModelFileError, load_ablations, load_model, predict_proba
    from models.relationship.network import COARSE_OF_FINE
    from tasks.core.tracking import current_run_id
    from tasks.relationship import dataset

    cfg = params["relationship"]["evaluate"]
    run_id = current_run_id(params, "relationship")  # before the slow part: no run to log into is an error
    rows = dataset.labelled_rows(params, "test")
    try:
        model = load_model(dataset.model_file(params))
        ablation_path = dataset.model_file(params).parent / "ablations.pt"
        ablations = load_ablations(ablation_path) if ablation_path.is_file() else {}
    except ModelFileError as e:
        raise MokuflowError(str(e)) from None
    if model.labels != list(params["relationship"]["clean"]["labels"]):
        raise MokuflowError(f"{dataset.model_file(params)}: trained on labels {model.labels}, "
                            f"relationship.clean.labels is {params['relationship']['clean']['labels']} (re-train)")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    feats, rows, skipped = dataset.readable_features(params, rows, model.vocab, model.features)
    y = dataset.label_ids(params, rows)
    fusion = model.net.config["fusion"]
    predictions = {fusion: predict_proba(model.net, feats, device=device)}
    for m in SINGLE:
        if m in model.net.modalities:
            predictions[m] = predict_proba(model.net, feats, modalities=[m], device=device)
    for m in SINGLE:  # one modality missing at test time (as a clip without audio or subtitles is served)
        rest = [x for x in model.net.modalities if x != m]
        if m in model.net.modalities and len(rest) > 1:
            predictions[f"without_{m}"] = predict_proba(model.net, feats, modalities=rest, device=device)
    for name, net in ablations.items():
        predictions[name] = predict_proba(net, feats, device=device)
    log(f"evaluate: {len(rows)} test clip pairs, variants {list(predictions)} ({device})")
    metrics = summarise(y, {k: (f.argmax(1), c.argmax(1)) for k, (f, c) in predictions.items()},
                        labels=model.labels, main=fusion, ablations=list(ablations), n_boot=int(cfg["bootstrap"]),
                        seed=int(cfg["seed"]), min_n=int(cfg["min_clips_for_verdict"]))
    metrics["coarse_labels"] = list(COARSE_LABELS)
    metrics["coarse_confusion"] = _confusion(np.asarray(COARSE_OF_FINE)[y], predictions[fusion][1].argmax(1), 3)
    metrics["skipped_clips"] = skipped
    out_dir = resolve(params, cfg["out_dir"])
    files = [write_csv(out_dir / "per_clip.csv", per_clip_table(rows, predictions, model.labels))]
    metrics["examples"] = write_examples(dataset.raw_root(params), out_dir / "examples", rows, predictions[fusion][0],
                                         y, model.labels, n=int(cfg["n_examples"]))
    metrics_file = write_json(out_dir / "metrics.json", metrics)  # last: its presence means all are new
    log_evaluation(params, run_id, mlflow_metrics(metrics), [metrics_file, *files])
    c = metrics["claims"]
    log(f"evaluate: macro-F1 {ci_text(metrics['macro_f1'])}, accuracy {ci_text(metrics['accuracy'])}; fusion beats every "
        f"single modality: {c['fusion_beats_single_modality']['verdict']}; {fusion} beats other fusion: "
        f"{c['sync_beats_other_fusion']['verdict']}")
    return {"metrics": str(metrics_file), "n_test": len(rows), "mlflow_run_id": run_id,
            **{k: metrics[k]["value"] for k in METRICS},
            "verdicts": {k: v["verdict"] for k, v in c.items()}}


# ------------------------------------------------------------------------------------------ scores

def _stat(point: float, samples: np.ndarray | None) -> dict:
    from models.common.stats import percentile_interval

    lo, hi = percentile_interval(samples) if samples is not None and len(samples) else (None, None)
    return {"value": None if not np.isfinite(point) else float(point), "ci_low": lo, "ci_high": hi}


def _scores(y, fine, coarse_pred, idx, n_classes):
    """Point values and resampled values of every metric of one variant."""
    from models.relationship.metrics import accuracy, confusions, f1_from_confusions
    from models.relationship.network import COARSE_OF_FINE

    yc = np.asarray(COARSE_OF_FINE)[y]
    out = {}
    for tag, ix in (("point", None), ("boot", idx)):
        if ix is None and tag == "boot":
            out[tag] = None
            continue
        conf = confusions(y, fine, n_classes, ix)
        f1, macro = f1_from_confusions(conf)
        ci = np.arange(len(y))[None] if ix is None else ix
        out[tag] = {"accuracy": accuracy(conf), "macro_f1": macro, "per_class_f1": f1,
                    "coarse_accuracy": (yc[ci] == np.asarray(coarse_pred)[ci]).mean(1)}
    return out


def verdict(diff: dict, n: int, min_n: int) -> str:
    """"holds" (interval above 0), "reversed" (below 0), "not shown" (contains 0, no interval, too few clips)."""
    from models.common.stats import interval_verdict

    return interval_verdict(diff, n=n, min_n=min_n)


def _claim(statement: str, diffs: dict, n: int, min_n: int) -> dict:
    each = {k: verdict(d["macro_f1"], n, min_n) for k, d in diffs.items()}
    if not each:
        v = "not shown"
    elif "reversed" in each.values():
        v = "reversed"
    elif all(x == "holds" for x in each.values()):
        v = "holds"
    else:
        v = "not shown"
    return {"statement": statement, "against": list(diffs), "each": each, "verdict": v, "holds": v == "holds"}


def summarise(y, predicted: dict, *, labels: list[str], main: str, ablations: list[str], n_boot: int = 1000,
              seed: int = 0, min_n: int = 10) -> dict:
    """The metrics dict: ``predicted`` is {variant: (fine predictions, coarse predictions)}; module docstring."""
    from models.common.stats import resample_indices

    y = np.asarray(y, np.int64)
    n, K = len(y), len(labels)
    idx = resample_indices(n, n_boot, seed) if n_boot and n else None
    raw = {k: _scores(y, f, c, idx, K) for k, (f, c) in predicted.items()}
    variants = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # classes absent from a resample
        for k, s in raw.items():
            b = s["boot"]
            variants[k] = {m: _stat(s["point"][m][0], None if b is None else b[m]) for m in METRICS}
            variants[k]["per_class_f1"] = {
                lab: _stat(s["point"]["per_class_f1"][0, j], None if b is None else b["per_class_f1"][:, j])
                for j, lab in enumerate(labels)}
        diffs = {}
        for k in raw:
            if k == main:
                continue
            d = {}
            for m in METRICS:
                point = raw[main]["point"][m][0] - raw[k]["point"][m][0]
                boot = None if idx is None else raw[main]["boot"][m] - raw[k]["boot"][m]
                d[m] = _stat(point, boot)
            diffs[k] = d
    singles = {k: diffs[k] for k in SINGLE if k in diffs}
    others = {k: diffs[k] for k in ablations if k in diffs}
    claims = {
        "fusion_beats_single_modality": _claim(
            f"fusing the modalities ({main}) beats every single modality of the same model (macro-F1, paired)",
            singles, n, min_n),
        "sync_beats_other_fusion": _claim(
            f"{main} fusion beats the other fusions trained ({', '.join(others) or 'none: set relationship.evaluate.ablation_fusions'}; "
            "macro-F1, paired)", others, n, min_n),
    }
    if not others:
        claims["sync_beats_other_fusion"]["note"] = "no other fusion trained (relationship.evaluate.ablation_fusions)"
    counts = np.bincount(y, minlength=K)
    return {"n_test": n, "n_boot": int(n_boot), "seed": int(seed), "labels": list(labels), "model": main,
            "class_counts": dict(zip(labels, counts.tolist())), "min_clips_for_verdict": int(min_n),
            **{m: variants[main][m] for m in METRICS}, "per_class_f1": variants[main]["per_class_f1"],
            "variants": variants, "differences": diffs, "claims": claims,
            "confusion": _confusion(y, predicted[main][0], K)}


def _confusion(y, pred, K) -> list[list[int]]:
    from models.relationship.metrics import confusions

    return confusions(y, pred, K)[0].tolist()


def write_examples(root: Path, folder: Path, rows: list[dict], probs: np.ndarray, y: np.ndarray, labels: list[str],
                   *, n: int = 6) -> list[dict]:
    """A few test clip pairs for the report, half predicted right and half wrong (by clip id, those
    with subtitles first): the pair's subtitles, true and predicted label, and a PNG of the clip's middle
    frame with the pair's boxes (``folder/<clip_id>.png``; A green, B orange). Returns their records."""
    import shutil

    import cv2

    from tasks.core import atomic_path
    from tasks.relationship.data import clip_inputs

    pred = probs.argmax(1)
    order = sorted(range(len(rows)), key=lambda i: (not rows[i].get("subtitle_path"), str(rows[i]["clip_id"])))
    right = [i for i in order if pred[i] == y[i]][: (n + 1) // 2]
    wrong = [i for i in order if pred[i] != y[i]][: n - len(right)]
    chosen = sorted(right + wrong, key=lambda i: str(rows[i]["clip_id"]))
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    out = []
    for i in chosen:
        r = rows[i]
        frames, _, a, b, _, cues = clip_inputs(root, r)
        both = np.intersect1d(a[:, 0], b[:, 0])  # frames where both characters are on screen
        t = int(both[len(both) // 2]) if len(both) else len(frames) // 2
        image = np.ascontiguousarray(frames[min(t, len(frames) - 1)][..., ::-1])  # BGR for cv2
        for boxes, colour in ((a, (60, 180, 60)), (b, (0, 140, 255))):
            k = np.flatnonzero(boxes[:, 0] == t)
            if len(k):
                x0, y0, x1, y1 = (int(round(v)) for v in boxes[k[0], 1:5])
                cv2.rectangle(image, (x0, y0), (x1, y1), colour, 2)
        name = f"{_safe(str(r['clip_id']))}.png"
        with atomic_path(folder / name) as tmp:
            tmp.write_bytes(cv2.imencode(".png", image)[1].tobytes())
        out.append({"clip_id": str(r["clip_id"]), "char_a": str(r["char_a"]), "char_b": str(r["char_b"]),
                    "label": labels[int(y[i])], "predicted": labels[int(pred[i])],
                    "p_predicted": float(probs[i, pred[i]]), "p_true": float(probs[i, y[i]]),
                    "subtitles": [{"start_s": round(c[0], 2), "end_s": round(c[1], 2), "text": c[2]} for c in cues or []],
                    "image": f"examples/{name}"})
    return out


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def per_clip_table(rows: list[dict], predictions: dict, labels: list[str]):
    import pandas as pd

    table = pd.DataFrame({"clip_id": [r["clip_id"] for r in rows], "char_a": [r["char_a"] for r in rows],
                          "char_b": [r["char_b"] for r in rows], "label": [r["label"] for r in rows]})
    for k, (fine, _) in predictions.items():
        table[f"pred_{k}"] = [labels[i] for i in fine.argmax(1)]
    return table


def mlflow_metrics(metrics: dict) -> dict[str, float]:
    out: dict[str, float] = {}

    def put(name: str, stat: dict) -> None:
        if stat["value"] is not None:
            out[name] = stat["value"]
        for side in ("ci_low", "ci_high"):
            if stat.get(side) is not None:
                out[f"{name}_{side}"] = stat[side]

    for m in METRICS:
        put(f"test_{m}", metrics[m])
    for lab, stat in metrics["per_class_f1"].items():
        put(f"test_f1_{lab}", stat)
    for k, v in metrics["variants"].items():
        if k != metrics["model"]:
            for m in METRICS:
                put(f"test_{k}_{m}", v[m])
    out["test_n"] = metrics["n_test"]
    return finite(out)
