"""AP per category and per object size, for one or more evaluate outputs side by side.

    python benchmarks/detection_breakdown.py \
        before=OLD/data/detection/clean/test/instances.json:OLD/metrics/detection \
        after=data/detection/clean/test/instances.json:metrics/detection [--variant none] [--markdown]

Each argument is ``name=GT:METRICS_DIR``: the held-out truth the run was scored on (the cleaned test
split) and ``detection.evaluate.out_dir`` of that run, whose ``detections/<variant>.json`` is re-scored
here with the study's own COCOeval (tasks/detection/cocoeval.py); ``metrics.json`` gives every
variant's AP / AP50 / AP75 / AP90 and the paper's two claims (paired gains) as evaluate scored them. Per category: AP and AP50 over all
sizes. Per size (COCO's absolute areas: small < 32², medium < 96², large): the number of truth boxes,
AP, AP50 and AR100. Two runs on different data are measured on their own test sets: the table says
how each detector does on its own held-out split, and the counts show how the split itself changed.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

AREAS = {"small": 1, "medium": 2, "large": 3}  # COCOeval's area-range index (0: all)


def breakdown(gt_path: Path, dets_path: Path) -> dict:
    import numpy as np

    from tasks.detection.cocoeval import _evaluator, load_dt, load_gt

    gt, where = load_gt(gt_path)
    dets, _ = load_dt(dets_path, gt, where)
    E = _evaluator(gt, dets)
    P = E.eval["precision"]  # [iou T, recall R, class K, area A, maxdets M]
    R = E.eval["recall"]     # [iou T, class K, area A, maxdets M]
    t50 = int(np.flatnonzero(np.isclose(E.params.iouThrs, 0.5))[0])
    names = {c["id"]: c["name"] for c in gt["categories"]}

    def mean(a):
        return float(a[a > -1].mean()) if (a > -1).any() else float("nan")

    per_cat = {}
    for k, cid in enumerate(E.params.catIds):
        per_cat[names[cid]] = {"n": sum(1 for a in gt["annotations"] if a["category_id"] == cid),
                               "AP": mean(P[:, :, k, 0, -1]), "AP50": mean(P[t50, :, k, 0, -1])}
    per_size = {}
    for size, ai in AREAS.items():
        lo, hi = E.params.areaRng[ai]
        per_size[size] = {"n": sum(1 for a in gt["annotations"] if lo <= a["area"] < hi),
                          "AP": mean(P[:, :, :, ai, -1]), "AP50": mean(P[t50, :, :, ai, -1]),
                          "AR100": mean(R[:, :, ai, -1])}
    return {"per_category": per_cat, "per_size": per_size,
            "all": {"n": len(gt["annotations"]), "AP": mean(P[:, :, :, 0, -1]), "AP50": mean(P[t50, :, :, 0, -1])}}


def _table(rows: list[str], header: list[str], body: list[list[str]]) -> None:
    rows.append("| " + " | ".join(header) + " |")
    rows.append("|" + "---|" * len(header))
    rows.extend("| " + " | ".join(r) + " |" for r in body)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", metavar="NAME=GT:METRICS_DIR")
    ap.add_argument("--variant", default="none", help="which detections/<variant>.json (default: none)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    results = {}
    for spec in args.runs:
        name, sep, rest = spec.partition("=")
        gt, sep2, mdir = rest.rpartition(":")
        if not (sep and sep2 and name and gt and mdir):
            print(f"detection_breakdown: error: {spec!r}: expected NAME=GT_JSON:METRICS_DIR", file=sys.stderr)
            return 2
        dets = Path(mdir) / "detections" / f"{args.variant}.json"
        for p in (Path(gt), dets):
            if not p.is_file():
                print(f"detection_breakdown: error: {p}: no such file", file=sys.stderr)
                return 2
        results[name] = breakdown(Path(gt), dets)
    names = list(results)
    rows = ["Every variant (evaluate's metrics.json): AP · AP50 · AP75 · AP90", ""]
    variants = {}
    for spec in args.runs:
        name, _, rest = spec.partition("=")
        m = json.loads((Path(rest.rpartition(":")[2]) / "metrics.json").read_text())
        variants[name] = m
    vnames = [v for v in ("none", "direct", "decoupled", "dir", "iou_nms") if all(v in m for m in variants.values())]
    _table(rows, ["variant"] + names, [[v] + [" · ".join(f"{variants[n][v][k]['value']:.3f}"
                                                         for k in ("AP", "AP50", "AP75", "AP90")) for n in names]
                                       for v in vnames])
    claims = sorted({c for m in variants.values() for c in m.get("claims", {})})
    if claims:
        rows.append("")

        def claim(c):
            if c is None:
                return "–"
            ci = "" if c["ci_low"] is None else f" [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}]"
            return f"{c['verdict']}: {c['value']:+.4f}{ci}"

        _table(rows, ["claim (paired AP gain, 95 % CI)"] + names,
               [[f"{c} ({next(m['claims'][c]['comparison'] for m in variants.values() if c in m.get('claims', {}))})"]
                + [claim(variants[n].get("claims", {}).get(c)) for n in names] for c in claims])
    rows += ["", f"Variant `{args.variant}` re-scored: AP · AP50 (truth boxes in the test split)", ""]
    cats = list(results[names[0]]["per_category"])
    body = []
    for c in cats + ["all"]:
        cells = []
        for n in names:
            r = results[n]["all"] if c == "all" else results[n]["per_category"].get(c)
            cells.append("–" if r is None else f"{r['AP']:.3f} · {r['AP50']:.3f} ({r['n']})")
        body.append([f"**{c}**" if c == "all" else c] + cells)
    _table(rows, ["category"] + names, body)
    rows.append("")
    body = []
    for s in AREAS:
        cells = [f"{r['AP']:.3f} · {r['AP50']:.3f} · AR100 {r['AR100']:.3f} ({r['n']})"
                 for r in (results[n]["per_size"][s] for n in names)]
        body.append([s] + cells)
    _table(rows, ["size (COCO area)"] + names, body)
    print("\n".join(rows))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
