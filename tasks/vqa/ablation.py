"""Which of STDAM's modules earn their place: each ablation trained like STDAM, scored beside it.

Variants (``vqa.ablation.variants``; switches of ``models.vqa.stdam.STDAM``):

- ``no_motion``: without the motion branch (the BiLSTM reads the runs' spatial features only);
- ``no_graph``: without graph convolution + attention pooling (globally pooled CNN features);
- ``mean_pool``: mean pooling of the step features instead of the BiLSTM + attention over time.

Each is trained by the train stage's own code with only its switch changed (same data, seed,
schedule and frames), as an MLflow run of the vqa experiment tagged ``mokuflow.ablation``, and
scored on the held-out test split and on the per-kind probes. Paired bootstrap intervals of
STDAM's SRCC minus the variant's (same resampled videos) say whether the module matters.

Off by default (``vqa.ablation.enabled: false``): three more trainings do not fit ``make run``'s
budget. Disabled, the stage writes ``ablation.json`` saying so, and the report says how to run it.
Writes ``<vqa.ablation.out_dir>/ablation.json``, ``predictions.csv`` and ``models/<variant>/``.
"""
from __future__ import annotations

import copy

from tasks.core import MokuflowError, log, read_json, resolve, write_csv, write_json

VARIANTS = {
    "no_motion": ({"motion_branch": False}, "without the motion branch"),
    "no_graph": ({"spatial": "pool"}, "without graph convolution + attention (pooled CNN features)"),
    "mean_pool": ({"temporal": "mean"}, "mean pooling instead of the BiLSTM"),
}


def variant_params(params: dict, variant: str) -> dict:
    """params for training ``variant``: STDAM's, with its switch, its own runs and output folders."""
    cfg = params["vqa"]["ablation"]
    p = copy.deepcopy(params)
    p["vqa"]["model"].update(VARIANTS[variant][0])
    p["vqa"]["train"]["runs_dir"] = f"{cfg['runs_dir']}/{variant}"
    p["vqa"]["train"]["out_dir"] = f"{cfg['out_dir']}/models/{variant}"
    return p


def run(params: dict, **kwargs) -> dict:
    cfg = params["vqa"]["ablation"]
    out_dir = resolve(params, cfg["out_dir"])
    if not cfg["enabled"]:
        info = {"enabled": False, "variants": {},
                "note": "not run: set vqa.ablation.enabled: true in params.yaml (3 more trainings, about 3x "
                        "the train stage), then make run STUDY=vqa"}
        write_json(out_dir / "ablation.json", info)
        log("ablation: off (vqa.ablation.enabled: false); nothing trained")
        return {"ablation": str(out_dir / "ablation.json"), "enabled": False}
    return _run_variants(params, list(cfg["variants"]), out_dir)


def _run_variants(params: dict, variants: list[str], out_dir) -> dict:
    import pandas as pd

    from models.common.stats import interval_verdict
    from models.vqa.metrics import paired_srcc_difference, score_all
    from tasks.core.tracking import current_run_id, log_evaluation, setup
    from tasks.vqa import train
    from tasks.vqa.data import test_items
    from tasks.vqa.evaluate import load_stdam, predict_stdam, probe_sensitivity

    ev = params["vqa"]["evaluate"]
    n_boot, seed = int(ev["bootstrap"]), int(ev["seed"])
    items = test_items(params)
    y = items["quality"].to_numpy(float)
    # STDAM as the evaluate stage scored it (same test videos, same bootstrap): not predicted again
    ev_dir = resolve(params, ev["out_dir"])
    evaluated = read_json(ev_dir / "metrics.json")
    scored = pd.read_csv(ev_dir / "predictions.csv", dtype={"video_id": str}).set_index("video_id")
    missing = sorted(set(items["video_id"]) - set(scored.index))
    if missing:
        raise MokuflowError(f"{ev_dir / 'predictions.csv'}: no STDAM score for test videos {missing[:5]} "
                            f"(re-run the evaluate stage)")
    preds = {"stdam": scored.loc[list(items["video_id"]), "stdam"].to_numpy(float)}
    result: dict = {"enabled": True, "n_test": int(len(y)), "variants": {},
                    "stdam": {"metrics": evaluated["stdam"], "sensitivity": evaluated.get("sensitivity", {})}}
    for v in variants:
        log(f"ablation: training {v} ({VARIANTS[v][1]})")
        vp = variant_params(params, v)
        train.run(vp)
        run_id = current_run_id(vp, "vqa")
        setup(params).MlflowClient().set_tag(run_id, "mokuflow.ablation", v)
        model = load_stdam(vp)
        preds[v] = predict_stdam(vp, list(items["path"]), model)
        sens = probe_sensitivity(vp, items, model, n_boot=n_boot, seed=seed)["kinds"]
        m = score_all(y, preds[v], n_boot=n_boot, seed=seed)
        diff = paired_srcc_difference(y, preds["stdam"], preds[v], n_boot=n_boot, seed=seed)
        result["variants"][v] = {
            "label": VARIANTS[v][1], "mlflow_run_id": run_id, "metrics": m,
            "stdam_minus_variant_srcc": diff, "verdict": interval_verdict(diff),
            "sensitivity": {k: {f: s[f] for f in ("value", "ci_low", "ci_high")} for k, s in sens.items()},
        }
        log_evaluation(params, run_id, {f"test_{k}": m[k]["value"] for k in m}
                       | {f"test_sensitivity_{k}": s["value"] for k, s in sens.items() if s["value"] is not None})
        verdict = result["variants"][v]["verdict"]
        log(f"ablation: {v} SRCC {m['srcc']['value']:.3f}; STDAM - {v} {diff['value']:+.3f} "
            f"[{_fmt(diff['ci_low'])}, {_fmt(diff['ci_high'])}]: the module matters? {verdict}")
    write_csv(out_dir / "predictions.csv", pd.DataFrame({"video_id": items["video_id"], "quality": y, **preds}))
    write_json(out_dir / "ablation.json", result)
    return {"ablation": str(out_dir / "ablation.json"), "enabled": True}


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:+.3f}"
