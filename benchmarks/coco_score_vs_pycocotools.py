"""COCO bbox scoring as whole processes: `mokuflow detection score` (faster-coco-eval) vs a pycocotools script.

Generates a seeded COCO-like set (default 5,000 images x 100 detections: 80 non-contiguous category
ids, 1 - 15 objects an image of all sizes, ~1 % crowd regions; per object 1 - 3 detections moved
by varying amounts, the rest random boxes) into a temp folder, then times, interleaved, median of
--repeat runs, each as its own process started from the repo root:

- ours: ``.venv/bin/mokuflow detection score --gt GT --dt DT --out DIR`` when the CLI knows the
  detection study; otherwise ``python -m tasks.cli detection score ...``; and when neither works
  (the CLI not wired yet), ``python -c`` calling ``tasks.detection.score.run`` (the report says which);
- pycocotools: ``COCO(gt)``, ``loadRes(dt)``, ``COCOeval(..., "bbox")``, evaluate / accumulate / summarize.

Checks that the 12 stats agree to 1e-12 and writes benchmarks/results/coco_score.md and .json
(wall seconds, peak RSS of each process).

    .venv/bin/python benchmarks/coco_score_vs_pycocotools.py [--images 5000] [--dets 100] [--repeat 3]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
# COCO's 80 category ids (1..90 with gaps)
COCO_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]

PYCOCOTOOLS = """
import json, sys
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
gt, dt, out = sys.argv[1:4]
G = COCO(gt)
D = G.loadRes(dt)
E = COCOeval(G, D, "bbox")
E.evaluate()
E.accumulate()
E.summarize()
json.dump([float(v) for v in E.stats], open(out, "w"))
"""

OURS_PYTHON = """
import sys
sys.path.insert(0, {repo!r})
from tasks.detection.score import run
run({{}}, gt=sys.argv[1], dt=sys.argv[2], out=sys.argv[3])
"""


def make_data(folder: Path, *, n_images: int, n_dets: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    images, anns, dets = [], [], []
    for i in range(1, n_images + 1):
        w, h = int(rng.choice([640, 500, 480, 427])), int(rng.choice([480, 375, 640, 333]))
        images.append({"id": i, "file_name": f"{i:012d}.jpg", "width": w, "height": h})
        k = int(rng.integers(1, 16))
        side = np.exp(rng.uniform(np.log(8), np.log(0.9 * min(w, h)), k))
        aspect = np.exp(rng.uniform(-0.7, 0.7, k))
        bw, bh = np.minimum(side * aspect, w - 1), np.minimum(side / aspect, h - 1)
        bx, by = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
        cats = rng.choice(COCO_IDS, k)
        crowd = rng.random(k) < 0.01
        for j in range(k):
            box = [round(float(bx[j]), 2), round(float(by[j]), 2), round(float(bw[j]), 2), round(float(bh[j]), 2)]
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(cats[j]), "bbox": box,
                         "area": round(box[2] * box[3] * float(rng.uniform(0.5, 0.9)), 2), "iscrowd": int(crowd[j])})
            for _ in range(int(rng.integers(1, 4))):
                if len(dets) - (i - 1) * n_dets >= n_dets:
                    break
                noise = float(rng.uniform(0, 0.4))
                dx, dy = rng.normal(0, noise, 2) * box[2:]
                sw, sh = np.exp(rng.normal(0, noise, 2))
                cat = int(cats[j]) if rng.random() < 0.9 else int(rng.choice(COCO_IDS))
                dets.append({"image_id": i, "category_id": cat,
                             "bbox": [round(box[0] + dx, 2), round(box[1] + dy, 2),
                                      round(box[2] * sw, 2), round(box[3] * sh, 2)],
                             "score": round(float(np.clip(1 - noise * 2 + rng.normal(0, 0.15), 0.001, 1)), 4)})
        n_rand = n_dets - (len(dets) - (i - 1) * n_dets)
        side = np.exp(rng.uniform(np.log(6), np.log(min(w, h)), n_rand))
        rx, ry = rng.uniform(0, w - side / 2), rng.uniform(0, h - side / 2)
        rc = rng.choice(COCO_IDS, n_rand)
        rs = rng.uniform(0.001, 0.7, n_rand)
        for j in range(n_rand):
            dets.append({"image_id": i, "category_id": int(rc[j]),
                         "bbox": [round(float(rx[j]), 2), round(float(ry[j]), 2), round(float(side[j]), 2),
                                  round(float(side[j] * rng.uniform(0.5, 2)), 2)],
                         "score": round(float(rs[j]), 4)})
    gt = {"info": {"description": f"benchmark, seed {seed}"}, "images": images, "annotations": anns,
          "categories": [{"id": c, "name": f"class{c}", "supercategory": "x"} for c in COCO_IDS]}
    (folder / "gt.json").write_text(json.dumps(gt))
    (folder / "dt.json").write_text(json.dumps(dets))
    return {"images": n_images, "gt_annotations": len(anns), "crowd": sum(a["iscrowd"] for a in anns),
            "detections": len(dets), "categories": len(COCO_IDS),
            "gt_mb": round((folder / "gt.json").stat().st_size / 1e6, 1),
            "dt_mb": round((folder / "dt.json").stat().st_size / 1e6, 1)}


def timed(cmd: list[str], *, log: Path) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MB, exit code) of one process (its own rusage, via wait4)."""
    with open(log, "ab") as f:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_maxrss / 1024, proc.returncode


def ours_command(tmp: Path) -> tuple[list[str], str]:
    """The way to run our stage as a process, and how it was run (for the report)."""
    args = ["detection", "score", "--gt", str(tmp / "gt.json"), "--dt", str(tmp / "dt.json"), "--out", str(tmp / "ours")]
    exe = REPO / ".venv" / "bin" / "mokuflow"
    candidates = []
    if exe.is_file():
        candidates.append(([str(exe)], "`.venv/bin/mokuflow detection score`"))
    candidates.append(([sys.executable, "-m", "tasks.cli"], "`python -m tasks.cli detection score`"))
    for prefix, how in candidates:
        probe = subprocess.run([*prefix, "detection", "score", "--help"], cwd=REPO, capture_output=True, text=True)
        if probe.returncode == 0 and "--gt" in probe.stdout:
            return [*prefix, *args], how
    code = OURS_PYTHON.format(repo=str(REPO))
    return ([sys.executable, "-c", code, str(tmp / "gt.json"), str(tmp / "dt.json"), str(tmp / "ours")],
            "`python -c` calling `tasks.detection.score.run` (the CLI does not know the detection study yet)")


def versions() -> dict:
    out = {"python": platform.python_version()}
    for mod in ("faster_coco_eval", "pycocotools", "numpy"):
        try:
            from importlib.metadata import version

            out[mod] = version(mod.replace("_", "-"))
        except Exception:  # noqa: BLE001
            out[mod] = "?"
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--dets", type=int, default=100, help="detections per image")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "coco_score.md")
    ap.add_argument("--keep", action="store_true", help="keep the generated data (prints the folder)")
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="coco_score_bench."))
    try:
        t0 = time.perf_counter()
        data = make_data(tmp, n_images=args.images, n_dets=args.dets, seed=args.seed)
        print(f"data: {data} ({time.perf_counter() - t0:.1f} s) in {tmp}", flush=True)
        (tmp / "ours").mkdir()
        (tmp / "pyc").write_text(PYCOCOTOOLS)
        ours_cmd, how = ours_command(tmp)
        pyc_cmd = [sys.executable, str(tmp / "pyc"), str(tmp / "gt.json"), str(tmp / "dt.json"), str(tmp / "pyc.json")]
        runs = {"ours": [], "pycocotools": []}
        for r in range(args.repeat):
            for name, cmd in (("ours", ours_cmd), ("pycocotools", pyc_cmd)):
                wall, rss, rc = timed(cmd, log=tmp / f"{name}.log")
                if rc != 0:
                    print((tmp / f"{name}.log").read_text()[-3000:], file=sys.stderr)
                    raise SystemExit(f"{name} failed with exit code {rc}")
                runs[name].append({"wall_s": round(wall, 3), "peak_rss_mb": round(rss)})
                print(f"run {r + 1}/{args.repeat} {name}: {wall:.1f} s, {rss:.0f} MB", flush=True)
        ours = json.loads((tmp / "ours" / "metrics.json").read_text())
        pyc = json.loads((tmp / "pyc.json").read_text())
        diffs = {n: abs(ours[n] - p) for n, p in zip(STAT_NAMES, pyc)}
        max_diff = max(diffs.values())
        agree = max_diff <= 1e-12
        med = {k: statistics.median(r["wall_s"] for r in v) for k, v in runs.items()}
        rss = {k: max(r["peak_rss_mb"] for r in v) for k, v in runs.items()}
        result = {
            "data": data, "seed": args.seed, "repeat": args.repeat, "ours_command": how,
            "median_wall_s": med, "peak_rss_mb": rss, "speedup": round(med["pycocotools"] / med["ours"], 2),
            "runs": runs, "stats_ours": ours, "stats_pycocotools": dict(zip(STAT_NAMES, pyc)),
            "max_abs_stat_diff": max_diff, "stats_agree_1e-12": agree,
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count()}, "versions": versions(),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
        v = result["versions"]
        walls = {k: ", ".join(f"{r['wall_s']:.1f}" for r in runs[k]) for k in runs}
        lines = [
            "# COCO bbox scoring: `mokuflow detection score` vs pycocotools (whole processes)",
            "",
            f"Data (seeded, {args.seed}): {data['images']:,} images, {data['gt_annotations']:,} ground-truth boxes "
            f"({data['crowd']} crowd), {data['detections']:,} detections ({args.dets} an image), "
            f"{data['categories']} categories; GT {data['gt_mb']} MB, DT {data['dt_mb']} MB of JSON.",
            f"Each tool runs as its own process from the repo root, interleaved, median of {args.repeat}; "
            f"peak RSS is the process's own. Ours ran as {how}. "
            f"Machine: {os.cpu_count()} CPUs (shared), Python {v['python']}.",
            "",
            "| tool | median wall s | runs (s) | peak RSS MB |",
            "|---|---|---|---|",
            f"| ours: faster-coco-eval {v['faster_coco_eval']} | {med['ours']:.1f} | "
            f"{walls['ours']} | {rss['ours']} |",
            f"| pycocotools {v['pycocotools']} | {med['pycocotools']:.1f} | "
            f"{walls['pycocotools']} | {rss['pycocotools']} |",
            "",
            f"Speed-up: {result['speedup']}x. The 12 stats agree: max |difference| = {max_diff:.1e} "
            f"({'within' if agree else 'NOT within'} 1e-12); AP = {ours['AP']:.6f}.",
            "",
        ]
        args.out.write_text("\n".join(lines))
        print("\n".join(lines))
        return 0 if agree else 1
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
