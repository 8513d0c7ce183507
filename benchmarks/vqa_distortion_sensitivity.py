"""Does the VQA champion rank graded distortions of *real* videos? Spearman per kind on the fixtures.

    make run STUDY=vqa
    python benchmarks/vqa_distortion_sensitivity.py --out benchmarks/results/vqa_distortion_sensitivity.md

Each real fixture video (../shared/fixtures/vqa: a KoNViD-1k clip and VSFA's test clip) is decoded at
the model's frame size, distorted in memory by every kind of ``tasks.vqa.distortions`` at the graded
severities (spatial: blur, noise, JPEG, down-up scaling, exposure; temporal: flicker, shake, a low
frame rate shown as duplicates, irregular drops, freezes, frame-rate-conversion judder) and scored by
the model through the served sampling (``models.vqa.video.sample_clip``, what ``read_clip`` does to a
file). Per video and kind: Spearman's rho of severity vs minus the predicted quality (1 = ranked).
The same code as the evaluate stage's probes (``tasks.vqa.sensitivity``), on footage never trained on.

``--model``: a model.pt (default: the train stage's); ``--champion``: ``models:/vqa@champion``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FIXTURES = ROOT.parent / "shared" / "fixtures" / "vqa"
VIDEOS = ("konvid_10053703034.mp4", "vsfa_test.mp4")


def load(args):
    from models.vqa.inference import load_model

    if not args.champion:
        return load_model(args.model)
    import mlflow

    from tasks.core import load_params
    from tasks.core.tracking import setup

    setup(load_params(args.params))
    served = mlflow.pyfunc.load_model("models:/vqa@champion").unwrap_python_model()
    return served.model, served.frames_cfg


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--model", default=str(ROOT / "artifacts/vqa/train/model.pt"))
    ap.add_argument("--champion", action="store_true", help="score with models:/vqa@champion instead")
    ap.add_argument("--severities", default="0.25,0.5,0.75,1.0")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="a .md file (a .json beside it)")
    args = ap.parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    import torch

    from models.vqa.inference import predict_clips
    from models.vqa.video import read_frames
    from tasks.vqa.distortions import DELIVERY, KINDS, SPATIAL
    from tasks.vqa.sensitivity import measure

    torch.set_num_threads(args.threads)
    model, frames_cfg = load(args)
    videos = []
    for name in VIDEOS:
        p = FIXTURES / name
        if not p.is_file():
            sys.exit(f"{p}: fixture not found (the shared fixtures folder sits beside the repo)")
        videos.append((name, read_frames(p, height=frames_cfg["height"], width=frames_cfg["width"])))
    sev = [float(s) for s in args.severities.split(",")]
    t0 = time.perf_counter()
    res = measure(videos, lambda clips: predict_clips(model, clips, batch_size=16),
                  kinds=list(KINDS), severities=sev, seed=args.seed, frames_cfg=frames_cfg, n_boot=0)
    seconds = time.perf_counter() - t0

    lines = [f"`benchmarks/vqa_distortion_sensitivity.py` ({'champion' if args.champion else args.model}; "
             f"frames {frames_cfg}; severities 0, {', '.join(map(str, sev))}; {seconds:.0f} s for "
             f"{len(videos) * len(KINDS) * (len(sev) + 1)} clips)", "",
             "| kind | group | " + " | ".join(f"{n} ({len(f)} frames)" for n, f in videos) + " | mean |",
             "|---|---|" + "---|" * (len(videos) + 1)]
    for k in KINDS:
        group = "spatial" if k in SPATIAL else "temporal (delivery)" if k in DELIVERY else "temporal (capture)"
        per = res["kinds"][k]["per_video"]
        lines.append(f"| {k} | {group} | " + " | ".join(f"{per[n]:.2f}" for n, _ in videos)
                     + f" | {res['kinds'][k]['value']:.2f} |")
    lines += ["", "Scores (predicted quality at severity 0 ... 1), per video:", ""]
    for n, _ in videos:
        lines.append(f"- {n}: " + "; ".join(f"{k} " + " ".join(f"{s:.2f}" for s in res["scores"][n][k])
                                            for k in KINDS))
    text = "\n".join(lines)
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
        out.with_suffix(".json").write_text(json.dumps({"frames": frames_cfg, "seconds": seconds, **res},
                                                       indent=1, sort_keys=True))
    return res


if __name__ == "__main__":
    main()
