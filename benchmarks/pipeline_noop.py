"""What a run with nothing changed costs, after `make run`: a no-op `dvc repro`, and each study's Prefect
flow when DVC finds every stage up to date (every task ends Skipped).

    .venv/bin/python benchmarks/pipeline_noop.py [--repeat 3]

Run from the repo root after `make run` (the stages must be up to date). The Prefect figure is the flow
call inside one process after a first warm-up call, so the temporary API server's start (6-17 s, see
../shared/notes/stack-recipe.md) is not counted; against `make serve`'s server a run adds its
scheduling. Writes results/pipeline_noop.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def dvc_noop() -> None:
    out = subprocess.run([str(Path(sys.executable).parent / "dvc"), "repro"], cwd=REPO, capture_output=True, text=True)
    if out.returncode != 0 or "Running stage" in out.stdout:
        raise SystemExit(f"dvc repro is not a no-op here (run `make run` first):\n{out.stdout[-2000:]}{out.stderr[-2000:]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    os.chdir(REPO)
    os.environ.setdefault("PREFECT_HOME", str(REPO / ".prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # the temporary in-process server, whatever make exports or prefect.toml says (empty = none)
    os.environ["PREFECT_API_URL"] = ""

    result = {"dvc_repro_noop_s": statistics.median(timed(dvc_noop) for _ in range(args.repeat))}
    from flows.pipeline import FLOWS

    for name, flow in FLOWS.items():
        first = flow()  # warm-up: starts the temporary server
        skipped = all(v.get("status") == "skipped" for v in first.values() if isinstance(v, dict))
        if not skipped:
            raise SystemExit(f"{name}: some stage ran; run `make run` first ({first})")
        result[f"prefect_{name}_noop_s"] = statistics.median(timed(flow) for _ in range(args.repeat))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pipeline_noop.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["| run with nothing changed | seconds (median) |", "|---|---:|"]
    lines += [f"| {k.removesuffix('_s').replace('_', ' ')} | {v:.2f} |" for k, v in result.items()]
    (RESULTS / "pipeline_noop.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
