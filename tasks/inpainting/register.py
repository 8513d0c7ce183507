"""Register the inpainting model as ``inpainting``: challenger always, champion when it beats the current one
on round-1 J&F (``inpainting.register.metric``), both re-scored through their registered pyfunc on
today's test split: each test video's frame folder and its round-1 scribbles (the sequence's own
scribble file, or the simulated user's first stroke) go in, the masks written to ``masks_dir`` are
read back and scored against the annotations. Why round-1 J&F: it is what the served model (and
``cloak``) answers, one scribble round, and every removal starts from these masks; the other metrics
(AUC over 8 rounds, hole PSNR) need the interactive robot or a true background and are recorded on
the version as ``eval_*`` tags. The machinery is the core's (tasks/core/register.py).
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from tasks.core import MokuflowError, log, read_json, resolve
from tasks.core.register import metric_of, register
from tasks.inpainting.data import clean_root, model_file, split_names
from tasks.inpainting.study import STUDY

SCORABLE = ("jf_round_1", "J", "F", "JF")  # what one served round gives (J, F, JF: after that round)


def run(params: dict, **kwargs) -> dict:
    metric = metric_of(params, STUDY)
    if metric not in SCORABLE:
        raise MokuflowError(f"{params.get('_file', 'params.yaml')}: inpainting.register.metric: {metric!r} needs "
                            f"the interactive robot or a true background; the registry re-scores one served "
                            f"round: one of {list(SCORABLE)}")
    names = split_names(params, "test")
    cfg = params["inpainting"]["evaluate"]
    if cfg["max_videos"]:
        names = names[:int(cfg["max_videos"])]
    metrics_file = resolve(params, cfg["out_dir"]) / "metrics.json"
    evaluated = read_json(metrics_file) if metrics_file.is_file() else {}
    eval_metrics = {m: evaluated[m]["value"] for m in STUDY.metrics if isinstance(evaluated.get(m), dict)}
    model = (evaluated.get("restoration") or {}).get("model") or {}
    eval_metrics |= {k: v["value"] for k, v in model.items() if isinstance(v, dict)}
    root = clean_root(params)
    return register(params, STUDY, model_file=model_file(params), n_eval=len(names),
                    score=lambda uri: score(uri, root, names, metric), eval_metrics=eval_metrics)


def score(model_uri: str, root: Path, names: list[str], metric: str) -> float:
    """``metric`` (round-1 J&F, or J / F) of the registered pyfunc's masks on the test sequences."""
    import mlflow
    import numpy as np
    import pandas as pd

    from models.common.frames import read_mask
    from models.inpainting import metrics
    from models.inpainting.robot import Robot
    from tasks.inpainting.evaluation import load_video

    log(f"scoring {model_uri} on {len(names)} test videos (one scribble round each)")
    served = mlflow.pyfunc.load_model(model_uri)
    with tempfile.TemporaryDirectory(prefix="mokuflow-register-") as tmp:
        videos = [load_video(root, n) for n in names]
        scribbles = [_first_round(root, v, Path(tmp) / "scribbles", Robot(seed=0)) for v in videos]
        out = served.predict(pd.DataFrame({"video": [str(root / "JPEGImages" / n) for n in names],
                                           "scribbles": scribbles}), params={"out_dir": str(Path(tmp) / "out")})
        scores = []
        for v, (_, row) in zip(videos, out.iterrows()):
            if row["error"]:
                raise MokuflowError(f"{model_uri}: {v['name']}: {row['error']}")
            masks = sorted(Path(row["masks_dir"]).glob("*.png"))
            pred = np.stack([read_mask(p) > 0 for p in masks]).astype(np.uint8)
            s = metrics.video_scores(pred, v["gt"], objects=[1], void_label=255)
            scores.append(s["JF" if metric in ("jf_round_1", "JF") else metric])
    return float(np.mean(scores))


def _first_round(root: Path, video: dict, folder: Path, robot) -> str:
    """The sequence's round-1 scribble file, or the simulated user's first stroke written to ``folder``."""
    own = root / "Scribbles" / video["name"] / "001.json"
    if own.is_file():
        return str(own)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{video['name']}.json"
    path.write_text(json.dumps(robot.first(video["gt"], sequence=video["name"])), encoding="utf-8")
    return str(path)
