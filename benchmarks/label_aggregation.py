"""Crowd label aggregation, whole processes: our Dawid-Skene vs crowd-kit's DawidSkene vs majority vote.

    .venv/bin/python benchmarks/label_aggregation.py [--repeat 3] [--sim-items 20000]

Data: every real crowd in ../shared/fixtures/relationship/crowd/<name>/ (labels.csv + truth.csv) and
two simulated crowds of 100,000 labels (models.relationship.simulate: 20,000 clips x 5 labels, five
relationship classes, careful / lazy / spamming annotators, with and without a long tail of
occasional annotators). Each method runs as its own process from the repo root (imports, reading
the CSV, fitting, writing one label per item), interleaved, median of --repeat runs:

- ours DS: ``tasks.relationship.labels.clean`` (the clean stage's function: table reader, Dawid-Skene
  with one-coin smoothing, labels.csv + annotators.csv + clean.json written atomically);
- crowd-kit DS: ``pandas.read_csv`` + ``crowdkit.aggregation.DawidSkene(n_iter=100).fit_predict``
  + ``to_csv`` (crowd-kit is a dev extra: ``pip install crowd-kit``);
- MV: ``pandas.read_csv`` + ``models.relationship.annotators.majority_vote`` + ``to_csv`` (ties go
  to the first class; crowd-kit's MajorityVote, which breaks ties at random, is shown in brackets).

Accuracy is against each crowd's gold (truth.csv; all items for the simulated ones); "fit s" is the
time of the fit alone inside the process. Writes benchmarks/results/label_aggregation.md and .json.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures" / "relationship" / "crowd"
CROWDS = ["snow2008_rte", "snow2008_temp", "bluebirds", "barzan_mozafari", "adult_content2"]

OURS_DS = """
import json, sys, time
sys.path.insert(0, {repo!r})
from tasks.relationship.labels import clean
raw, out, classes = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
s = clean(raw, out, labels=classes, max_iter=100, tol=1e-6)
print(json.dumps({{"labels_csv": out + "/labels.csv", "n_iter": s["n_iter"]}}))
"""

CROWDKIT_DS = """
import json, sys, time
import pandas as pd
from crowdkit.aggregation import DawidSkene
raw, out = sys.argv[1], sys.argv[2]
df = pd.read_csv(raw, dtype=str, keep_default_na=False).rename(columns={{"clip_id": "task", "annotator_id": "worker"}})
t0 = time.perf_counter()
ds = DawidSkene(n_iter=100)
labels = ds.fit_predict(df)
fit_s = time.perf_counter() - t0
labels.rename("label").rename_axis("clip_id").reset_index().to_csv(out + "/labels.csv", index=False)
print(json.dumps({{"labels_csv": out + "/labels.csv", "fit_s": fit_s, "n_iter": len(ds.loss_history_)}}))
"""

OURS_MV = """
import json, sys, time
import pandas as pd
sys.path.insert(0, {repo!r})
from models.relationship.annotators import majority_vote
raw, out, classes = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
df = pd.read_csv(raw, dtype=str, keep_default_na=False)
t0 = time.perf_counter()
r = majority_vote(df.clip_id.to_numpy(str), df.annotator_id.to_numpy(str), df.label.to_numpy(str), classes)
fit_s = time.perf_counter() - t0
pd.DataFrame({{"clip_id": r.items, "label": r.labels}}).to_csv(out + "/labels.csv", index=False)
print(json.dumps({{"labels_csv": out + "/labels.csv", "fit_s": fit_s, "n_iter": 0}}))
"""

METHODS = {"ours DS": OURS_DS, "crowd-kit DS": CROWDKIT_DS, "MV": OURS_MV}


def run_once(script: str, raw: Path, classes: list[str], work: Path) -> dict:
    out = Path(tempfile.mkdtemp(dir=work))
    code = script.format(repo=str(REPO))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, str(raw), str(out), json.dumps(classes)],
                          cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{raw}: {proc.stderr[-2000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    return {**res, "wall_s": wall}


def accuracy(labels_csv: str, truth_csv: Path) -> float:
    import pandas as pd

    got = pd.read_csv(labels_csv, dtype=str, keep_default_na=False).set_index("clip_id")["label"]
    truth = pd.read_csv(truth_csv, dtype=str, keep_default_na=False).set_index("clip_id")["label"]
    return float((got.reindex(truth.index) == truth).mean())


def ours_fit_seconds(raw: Path, classes: list[str]) -> float:
    """The fit alone, in this process (the whole-process time of ours includes the stage's I/O)."""
    import pandas as pd

    sys.path.insert(0, str(REPO))
    from models.relationship.annotators import aggregate

    df = pd.read_csv(raw, dtype=str, keep_default_na=False)
    cols = [df[c].to_numpy(str) for c in ("clip_id", "annotator_id", "label")]
    t0 = time.perf_counter()
    aggregate(*cols, classes)
    return time.perf_counter() - t0


def crowdkit_mv(raw: Path, truth: Path) -> float | None:
    try:
        import pandas as pd
        from crowdkit.aggregation import MajorityVote
    except ImportError:
        return None
    df = pd.read_csv(raw, dtype=str, keep_default_na=False).rename(columns={"clip_id": "task", "annotator_id": "worker"})
    got = MajorityVote().fit_predict(df)
    gold = pd.read_csv(truth, dtype=str, keep_default_na=False).set_index("clip_id")["label"]
    return float((got.reindex(gold.index) == gold).mean())


def simulated(work: Path, n_items: int, tail: int, seed: int) -> tuple[str, Path, Path]:
    import pandas as pd

    sys.path.insert(0, str(REPO))
    from models.relationship.simulate import simulate_crowd
    from tasks.relationship.labels import LABELS

    c = simulate_crowd(n_items=n_items, labels_per_item=5, tail=tail, seed=seed)
    names = list(LABELS)
    folder = work / f"sim_tail{tail}"
    folder.mkdir()
    pd.DataFrame({"clip_id": [f"c{i}" for i in c.items], "annotator_id": [f"a{j}" for j in c.annotators],
                  "label": [names[k] for k in c.labels]}).to_csv(folder / "labels.csv", index=False)
    pd.DataFrame({"clip_id": [f"c{i}" for i in range(n_items)],
                  "label": [names[k] for k in c.truth]}).to_csv(folder / "truth.csv", index=False)
    kind = "with" if tail else "without"
    return f"simulated, {n_items * 5:,} labels, {kind} occasional annotators", folder / "labels.csv", folder / "truth.csv"


def bench(name: str, raw: Path, truth: Path, repeat: int, work: Path) -> dict:
    import pandas as pd

    df = pd.read_csv(raw, dtype=str, keep_default_na=False)
    classes = sorted(df["label"].unique()) if "simulated" not in name else None
    if classes is None:
        from tasks.relationship.labels import LABELS
        classes = list(LABELS)
    runs: dict[str, list[dict]] = {m: [] for m in METHODS}
    for _ in range(repeat):  # interleaved: a slow moment of the shared machine hits every method
        for m, script in METHODS.items():
            runs[m].append(run_once(script, raw, classes, work))
    row = {"crowd": name, "n_labels": len(df), "n_items": df["clip_id"].nunique(),
           "n_annotators": df["annotator_id"].nunique(), "n_classes": len(classes),
           "n_gold": len(pd.read_csv(truth))}
    for m, rs in runs.items():
        row[m] = {"accuracy": accuracy(rs[-1]["labels_csv"], truth),
                  "wall_s": statistics.median(r["wall_s"] for r in rs), "runs_s": [r["wall_s"] for r in rs],
                  "n_iter": rs[-1]["n_iter"], "fit_s": statistics.median(r.get("fit_s", float("nan")) for r in rs)}
    row["ours DS"]["fit_s"] = statistics.median(ours_fit_seconds(raw, classes) for _ in range(repeat))
    row["crowd-kit MV accuracy"] = crowdkit_mv(raw, truth)
    print(json.dumps(row), flush=True)
    return row


def to_markdown(rows: list[dict], repeat: int) -> str:
    lines = [
        "# Label aggregation: our Dawid-Skene vs crowd-kit vs majority vote (whole processes)", "",
        f"Each method is its own process from the repo root (imports + read CSV + fit + write labels), "
        f"interleaved, median of {repeat}; fit s = the fit alone. Accuracy against the gold of each crowd "
        f"(truth.csv). crowd-kit 1.4.2 `DawidSkene(n_iter=100)`; ours `tasks.relationship.labels.clean` "
        f"(max_iter=100, tol=1e-6, one-coin smoothing 2). MV: ours (ties to the first class); crowd-kit's "
        f"MajorityVote (random ties) in brackets. Machine: {_cpus()} CPUs (shared), Python {platform.python_version()}.",
        "",
        "| crowd | labels / items / annotators / classes (gold) | accuracy ours DS | crowd-kit DS | MV [crowd-kit MV] "
        "| wall s ours DS | crowd-kit DS | MV | fit s ours / crowd-kit | iterations ours / crowd-kit |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        o, c, m = r["ours DS"], r["crowd-kit DS"], r["MV"]
        ckmv = "n/a" if r["crowd-kit MV accuracy"] is None else f"{r['crowd-kit MV accuracy']:.3f}"
        lines.append(
            f"| {r['crowd']} | {r['n_labels']:,} / {r['n_items']:,} / {r['n_annotators']:,} / {r['n_classes']} "
            f"({r['n_gold']:,}) | {o['accuracy']:.3f} | {c['accuracy']:.3f} | {m['accuracy']:.3f} [{ckmv}] "
            f"| {o['wall_s']:.2f} | {c['wall_s']:.2f} | {m['wall_s']:.2f} | {o['fit_s']:.3f} / {c['fit_s']:.3f} "
            f"| {o['n_iter']} / {c['n_iter']} |")
    return "\n".join(lines) + "\n"


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sim-items", type=int, default=20000)
    args = ap.parse_args()
    if not FIXTURES.is_dir():
        sys.exit(f"{FIXTURES}: fixtures not found")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in CROWDS:
            rows.append(bench(name, FIXTURES / name / "labels.csv", FIXTURES / name / "truth.csv", args.repeat, work))
        for tail in (0, 200):
            name, raw, truth = simulated(work, args.sim_items, tail, seed=1)
            rows.append(bench(name, raw, truth, args.repeat, work))
    out = REPO / "benchmarks" / "results" / "label_aggregation"
    out.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
    md = to_markdown(rows, args.repeat)
    out.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
