"""Served VQA model on CPU: clips/s end to end (decode + sample + network), this checkout beside another.

    git worktree add /tmp/vqa-before <commit>          # e.g. the commit before the temporal sampling
    python benchmarks/vqa_serving_throughput.py --before /tmp/vqa-before \
        --out benchmarks/results/vqa_serving_throughput.md

What a served batch does per row (``tasks.vqa.serving``): ``read_clip`` on the file, then the network
on the batch. Timed through ``models.vqa.inference.predict_paths`` (the same two steps, no frame
cache) on real and synthetic videos, with a model of ``params.yaml``'s architecture and sampling as
each checkout defines them (``tasks.vqa.train.model_kwargs`` / ``tasks.vqa.data.frames_cfg``; weights
do not change the time). Each checkout runs in its own process, one after the other, best of
``--repeats``; ``--threads`` torch threads.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures" / "vqa"


def measure(checkout: Path, videos: list[str], repeats: int, threads: int) -> dict:
    """Run inside ``checkout`` (sys.path): time predict_paths over ``videos``."""
    sys.path.insert(0, str(checkout))
    import torch

    from models.vqa.inference import load_model, predict_paths, save_model
    from models.vqa.stdam import STDAM
    from tasks.core import load_params
    from tasks.vqa.data import frames_cfg
    from tasks.vqa.train import model_kwargs

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    params = load_params(checkout / "params.yaml")
    frames = frames_cfg(params)
    with tempfile.TemporaryDirectory() as tmp:
        save_model(Path(tmp) / "model.pt", STDAM(**model_kwargs(params)), frames, {"mean": 3.0, "std": 1.0})
        model, frames = load_model(Path(tmp) / "model.pt")
    predict_paths(model, frames, videos[:2], batch_size=8)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        predict_paths(model, frames, videos, batch_size=8)
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    from models.vqa.video import read_clip

    clips = [read_clip(v, **frames) for v in videos]
    decode = time.perf_counter() - t0
    return {"checkout": str(checkout), "frames": frames, "n_videos": len(videos), "seconds": min(times),
            "clips_per_s": len(videos) / min(times), "decode_share": decode / min(times),
            "motion_steps": int(clips[0][1].shape[0]), "spatial_frames": int(clips[0][0].shape[0])}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default=None, help="another checkout of the project to time beside this one")
    ap.add_argument("--synthetic", default=str(ROOT / "data/vqa/raw/videos"), help="folder of synthetic videos")
    ap.add_argument("--n-synthetic", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    ap.add_argument("--_measure", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_videos", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._measure:  # the child process: one checkout
        print(json.dumps(measure(Path(args._measure), json.loads(args._videos), args.repeats, args.threads)))
        return
    videos = [str(FIXTURES / n) for n in ("konvid_10053703034.mp4", "vsfa_test.mp4") if (FIXTURES / n).is_file()]
    synth = sorted(Path(args.synthetic).glob("*.mp4"))[:args.n_synthetic]
    videos += [str(p) for p in synth]
    if not videos:
        sys.exit("no videos: run make run STUDY=vqa (synthetic videos) or put ../shared/fixtures beside the repo")
    rows = []
    for checkout in ([Path(args.before)] if args.before else []) + [ROOT]:
        out = subprocess.run([sys.executable, __file__, "--_measure", str(checkout), "--_videos", json.dumps(videos),
                              "--repeats", str(args.repeats), "--threads", str(args.threads)],
                             capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(checkout)})
        if out.returncode:
            sys.exit(f"{checkout}: {out.stderr.strip().splitlines()[-1]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    lines = [f"`benchmarks/vqa_serving_throughput.py`: {len(videos)} videos ({len(videos) - len(synth)} real "
             f"fixtures + {len(synth)} synthetic), batch 8, {args.threads} torch threads, best of {args.repeats}", "",
             "| checkout | sampling | spatial frames | motion steps | clips/s | decode share |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['checkout']} | {r['frames']} | {r['spatial_frames']} | {r['motion_steps']} | "
                     f"{r['clips_per_s']:.1f} | {100 * r['decode_share']:.0f} % |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
        Path(args.out).with_suffix(".json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
