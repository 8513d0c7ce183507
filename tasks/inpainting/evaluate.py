"""Evaluate the trained model on the held-out test sequences with the simulated user, against the baselines.

Per test video (:mod:`tasks.inpainting.evaluation`): ``inpainting.evaluate.rounds`` robot rounds (round 1
the sequence's own scribble file when it has one, then a corrective stroke on the worst frame each
round), J / F / J&F per round and their AUC; after the last round PSNR and SSIM of the restored frames
in the true hole and on the whole frame against the true background, for the model, OpenCV Telea per
frame (true and predicted masks) and a copy from homography-aligned frames (true and predicted masks).
Means over videos with paired bootstrap 95 % intervals and the paper's two claims with a verdict.

Writes ``<evaluate.out_dir>/``: metrics.json (the summary; ``jf_last`` is J&F after the last round),
per_video.csv and examples/{best,worst}.npz (four frames of the best and worst video by final J&F:
input, predicted mask, result, truth) for the report. Logs ``test_<metric>[_ci_low|_ci_high]`` and
the files to the pipeline's MLflow run.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tasks.core import MokuflowError, ci_text, log, progress, resolve, write_csv, write_json
from tasks.core.tracking import finite, log_evaluation
from tasks.inpainting.data import clean_root, model_file, split_names

N_EXAMPLE_FRAMES = 4


def run(params: dict, **kwargs) -> dict:
    import torch

    from models.inpainting.inference import ModelFileError, load_model
    from tasks.core.tracking import current_run_id
    from tasks.inpainting import evaluation

    cfg = params["inpainting"]["evaluate"]
    run_id = current_run_id(params, "inpainting")  # before the slow part: no run to log into is an error
    names = split_names(params, "test")
    if cfg["max_videos"]:
        names = names[:int(cfg["max_videos"])]
    try:
        net, meta = load_model(model_file(params))
    except ModelFileError as e:
        raise MokuflowError(str(e)) from None
    device = "cuda" if torch.cuda.is_available() else "cpu"
    root, rounds, seed = clean_root(params), int(cfg["rounds"]), int(cfg["seed"])
    log(f"evaluate: {len(names)} test videos, {rounds} robot rounds each ({device})")
    records, best, worst = [], None, None
    with torch.inference_mode():
        for k, name in progress(list(enumerate(names)), "evaluate videos"):
            video = evaluation.load_video(root, name)
            rec = evaluation.evaluate_video(net, video, rounds=rounds, internal_size=tuple(meta["internal_size"]),
                                            max_memory=int(meta["max_memory"]), seed=seed + k, device=device,
                                            keep_arrays=True)
            example = _example(video, rec.pop("arrays"))
            if best is None or rec["jf_last"] > best[0]:
                best = (rec["jf_last"], name, example)
            if worst is None or rec["jf_last"] < worst[0]:
                worst = (rec["jf_last"], name, example)
            records.append(rec)
    metrics = evaluation.summarise(records, n_boot=int(cfg["bootstrap"]), seed=seed)
    metrics["jf_last"] = metrics[f"jf_round_{rounds}"]
    metrics["n_test"] = len(records)
    out_dir = resolve(params, cfg["out_dir"])
    files = [write_csv(out_dir / "per_video.csv", per_video_table(records))]
    for tag, (_, name, example) in (("best", best), ("worst", worst)):
        files.append(_save_npz(out_dir / "examples" / f"{tag}.npz", name=name, **example))
    metrics_file = write_json(out_dir / "metrics.json", metrics)  # last: its presence means all are new
    log_evaluation(params, run_id, mlflow_metrics(metrics), [metrics_file, *files])
    m, claim = metrics, metrics["claim"]
    log(f"evaluate: J&F round 1 {ci_text(m['jf_round_1'])}, round {rounds} {ci_text(m['jf_last'])}, AUC {ci_text(m['auc_jf'])}; "
        f"corrections raise J&F: {claim['corrections_raise_jf']['verdict']}; shared memory vs per-frame: "
        f"{claim['shared_memory_vs_per_frame']['verdict']}")
    return {"metrics": str(metrics_file), "n_test": len(records), "mlflow_run_id": run_id,
            **{k: m[k]["value"] for k in ("jf_round_1", "jf_last", "auc_jf")},
            "hole_psnr": (m["restoration"] or {}).get("model", {}).get("hole_psnr", {}).get("value")}


def per_video_table(records: list[dict]):
    import pandas as pd

    rows = []
    for r in records:
        row = {"sequence": r["name"], "n_frames": r["n_frames"], "jf_round_1": r["jf_first"], "jf_last": r["jf_last"],
               "auc_jf": r["auc_jf"], "peak_memory_frames": r["peak_memory_frames"]}
        for method, scores in (r["restoration"] or {}).items():
            row |= {f"{method}_{k}": v for k, v in scores.items()}
        rows.append(row)
    return pd.DataFrame(rows)


def _example(video: dict, arrays: dict) -> dict:
    """Four evenly spaced frames: input, predicted mask, the model's result, the truth (or the input)."""
    n = len(video["frames"])
    idx = np.unique(np.linspace(0, n - 1, min(N_EXAMPLE_FRAMES, n)).round().astype(int))
    truth = video["backgrounds"] if video["backgrounds"] is not None else video["frames"]
    return {"frames": video["frames"][idx], "masks": arrays["masks"][idx].astype(np.uint8),
            "results": arrays["model"][idx], "truth": truth[idx], "gt": (video["gt"][idx] == 1).astype(np.uint8),
            "index": idx}


def _save_npz(path: Path, **arrays) -> Path:
    from tasks.core import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    return path


def mlflow_metrics(metrics: dict) -> dict[str, float]:
    """``test_<m>[_ci_low|_ci_high]`` for the segmentation summaries and the model's restoration,
    ``test_<baseline>_<m>`` for the baselines' restoration."""
    out: dict[str, float] = {}

    def put(name: str, stat: dict) -> None:
        out[name] = stat["value"]
        for side in ("ci_low", "ci_high"):
            if stat.get(side) is not None:
                out[f"{name}_{side}"] = stat[side]

    for m in ("jf_round_1", "jf_last", "auc_jf", "J", "F", "JF"):
        put(f"test_{m}", metrics[m])
    for method, scores in (metrics["restoration"] or {}).items():
        for k, stat in scores.items():
            put(f"test_{k}" if method == "model" else f"test_{method}_{k}", stat)
    out["test_n"] = metrics["n_test"]
    return finite({k: v for k, v in out.items() if v is not None})  # MLflow rejects NaN
