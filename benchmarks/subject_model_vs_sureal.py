"""Time SUREAL's MLE subject model against ours (models.vqa.subject_model) on real score tables.

    .venv/bin/python benchmarks/subject_model_vs_sureal.py [--runs 3] [--sureal-python /work/sureal-venv/bin/python]

SUREAL runs in its own venv (``python3 -m venv /work/sureal-venv && /work/sureal-venv/bin/pip install sureal``)
so the project venv is untouched; this script calls it in a subprocess (``--worker`` mode). Without it,
ours is compared with the stored SUREAL results (``*_sureal_mle.json``) only. Writes
benchmarks/results/subject_model.md.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures" / "vqa"
DATASETS = ["NFLX_dataset_public_raw", "VQEGHD3_dataset_raw", "AGH_quality_variation_2017"]


def sureal_worker(csv: str, runs: int) -> None:
    """Runs inside the SUREAL venv: fit SUREAL's MLE ``runs`` times, print JSON on stdout."""
    import contextlib
    import io
    import types

    import pandas as pd
    from sureal.dataset_reader import RawDatasetReader
    from sureal.subjective_model import MaximumLikelihoodEstimationModel

    df = pd.read_csv(csv, dtype={"rater_id": str})
    names = df.drop_duplicates("content_id").set_index("content_id")["content_name"]
    ds = types.SimpleNamespace(
        dataset_name="bench",
        ref_videos=[{"content_id": int(c), "content_name": str(names[c]), "path": ""} for c in sorted(names.index)],
        dis_videos=[{"content_id": int(g.content_id.iloc[0]), "asset_id": int(vid),
                     "os": dict(zip(g.rater_id, g.score.astype(float)))} for vid, g in df.groupby("video_id")],
    )
    times = []
    for _ in range(runs):
        reader = RawDatasetReader(ds)
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # SUREAL prints every iteration
            res = MaximumLikelihoodEstimationModel(reader).run_modeling(force_subjbias_zeromean=False)
        times.append(time.perf_counter() - t0)
    print(json.dumps({"seconds": times, "iterations": res["num_iter"],
                      "video_ids": [d["asset_id"] for d in ds.dis_videos], "rater_ids": res["observers"],
                      "quality": res["quality_scores"], "bias": res["observer_bias"],
                      "inconsistency": res["observer_inconsistency"], "ambiguity": res["content_ambiguity"]}))


def run_sureal(python: str, csv: Path, runs: int) -> dict | None:
    if not Path(python).exists():
        return None
    proc = subprocess.run([python, __file__, "--worker", str(csv), "--runs", str(runs)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"SUREAL failed on {csv.name}: {proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench(name: str, runs: int, python: str) -> dict:
    import numpy as np
    import pandas as pd

    sys.path.insert(0, str(REPO))
    from models.vqa.subject_model import fit, log_likelihood

    csv = FIXTURES / f"{name}_scores.csv"
    ref = json.loads((FIXTURES / f"{name}_sureal_mle.json").read_text())
    sureal = run_sureal(python, csv, runs)
    if sureal is not None:  # live SUREAL output, in its own order
        ref = {"video_ids": sureal["video_ids"], "rater_ids": sureal["rater_ids"],
               "mle_quality_scores": sureal["quality"], "mle_observer_bias": sureal["bias"],
               "mle_observer_inconsistency": sureal["inconsistency"], "mle_content_ambiguity": sureal["ambiguity"]}
    table = pd.read_csv(csv, dtype={"rater_id": str})
    u = table.pivot(index="video_id", columns="rater_id", values="score")
    u = u.reindex(index=ref["video_ids"], columns=[str(r) for r in ref["rater_ids"]]).to_numpy(float)
    cids = table.groupby("video_id")["content_id"].first().reindex(ref["video_ids"]).to_numpy()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        res = fit(u, content_ids=cids)
        times.append(time.perf_counter() - t0)
    ll_sureal = log_likelihood(u, ref["mle_quality_scores"], ref["mle_observer_bias"],
                               ref["mle_observer_inconsistency"], ref["mle_content_ambiguity"], content_ids=cids)
    return {
        "dataset": name, "shape": f"{u.shape[0]} x {u.shape[1]}", "n_ratings": int(np.isfinite(u).sum()),
        "max_dq": float(np.max(np.abs(res.quality - np.asarray(ref["mle_quality_scores"])))),
        "ll_ours": res.log_likelihood, "ll_sureal": ll_sureal, "iters": res.iterations,
        "sureal_iters": None if sureal is None else sureal["iterations"],
        "ours_s": statistics.median(times),
        "sureal_s": None if sureal is None else statistics.median(sureal["seconds"]),
    }


def to_markdown(rows: list[dict], runs: int, live: bool) -> str:
    ref = "live SUREAL (pip `sureal`, MLE, force_subjbias_zeromean=False)" if live else \
        "stored SUREAL results (*_sureal_mle.json); SUREAL itself not installed, so no SUREAL timing"
    lines = [
        "# Subject model: ours vs SUREAL MLE", "",
        f"Reference: {ref}. Times are the median of {runs} runs on this machine (shared 2-core CPU).", "",
        "| dataset | videos x raters (ratings) | max abs dquality vs SUREAL | loglik ours | loglik SUREAL "
        "| iterations ours / SUREAL | SUREAL s | ours s | speed-up |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        sureal_s = "n/a" if r["sureal_s"] is None else f"{r['sureal_s']:.3f}"
        speed = "n/a" if r["sureal_s"] is None else f"{r['sureal_s'] / r['ours_s']:.1f}x"
        lines.append(f"| {r['dataset']} | {r['shape']} ({r['n_ratings']}) | {r['max_dq']:.1e} | {r['ll_ours']:.4f} "
                     f"| {r['ll_sureal']:.4f} | {r['iters']} / {r['sureal_iters'] or 'n/a'} | {sureal_s} "
                     f"| {r['ours_s']:.3f} | {speed} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sureal-python", default="/work/sureal-venv/bin/python")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        sureal_worker(args.worker, args.runs)
        return
    if not FIXTURES.is_dir():
        sys.exit(f"{FIXTURES}: fixtures not found")
    rows = [bench(name, args.runs, args.sureal_python) for name in DATASETS]
    md = to_markdown(rows, args.runs, live=all(r["sureal_s"] is not None for r in rows))
    out = REPO / "benchmarks" / "results" / "subject_model.md"
    out.write_text(md)
    print(md)


if __name__ == "__main__":
    main()
