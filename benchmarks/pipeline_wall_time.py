"""Wall time of the VQA pipeline on CPU with the default params, and how it splits between stages.

Copies the project (tracked files, no data, no dvc.lock, own MLflow store) into a temp folder, then
1. runs each stage command of dvc.yaml in order as its own process, timing each (imports included);
2. separately times a whole `dvc repro` there and a second, no-op `dvc repro`.

    python benchmarks/pipeline_wall_time.py [--out benchmarks/results/pipeline_wall_time.md]
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def copy_project(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files"], cwd=REPO, check=True, capture_output=True, text=True).stdout.split()
    for rel in files:
        if rel == "dvc.lock" or rel.startswith(("tests/", "benchmarks/")):
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dest / rel)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)


def stage_commands(project: Path) -> list[tuple[str, str]]:
    """(stage, cmd) from dvc.yaml with ${...} filled from params.yaml."""
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((project / "params.yaml").read_text())

    def fill(cmd: str) -> str:
        import re

        def lookup(m):
            node = params
            for k in m.group(1).split("."):
                node = node[k]
            return str(node)
        return re.sub(r"\$\{([^}]+)\}", lookup, cmd)
    return [(name, fill(s["cmd"])) for name, s in stages.items()]


def timed(cmd, cwd: Path, env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, shell=isinstance(cmd, str),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/pipeline_wall_time.md"))
    args = ap.parse_args()
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "MLFLOW_DISABLE_TELEMETRY": "true",
           "DO_NOT_TRACK": "true", "GIT_PYTHON_REFRESH": "quiet"}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        a, b = Path(tmp) / "stages", Path(tmp) / "repro"
        for p in (a, b):
            p.mkdir()
            copy_project(p)
        for name, cmd in stage_commands(a):
            seconds = timed(cmd, a, env)
            rows.append((name, seconds))
            print(f"{name}: {seconds:.1f} s", flush=True)
        repro = timed([str(BIN / "dvc"), "repro"], b, env)
        noop = timed([str(BIN / "dvc"), "repro"], b, env)
        metrics = (b / "metrics/vqa/metrics.json").read_text()
    total = sum(s for _, s in rows)
    lines = [
        "# VQA pipeline wall time (CPU, default params.yaml)",
        "",
        f"`benchmarks/pipeline_wall_time.py`; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}. Each stage timed as its own process "
        "(imports included), as `dvc repro` runs it; frame cache cold.",
        "",
        "| stage | seconds | share |",
        "|---|---:|---:|",
        *[f"| {n} | {s:.1f} | {100 * s / total:.0f}% |" for n, s in rows],
        f"| **sum of stages** | **{total:.1f}** | 100% |",
        "",
        f"Whole `dvc repro` (fresh copy, cold cache): **{repro:.1f} s**; second `dvc repro` (nothing changed): "
        f"**{noop:.1f} s**. Set-up (`pip install`, cold) is not included.",
        "",
        "Metrics of the `dvc repro` run (metrics/vqa/metrics.json):",
        "",
        "```json",
        metrics.strip(),
        "```",
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
