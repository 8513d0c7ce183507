"""Relationship inference on CPU: clips/s of the served champion end to end (decode the clip, its audio,
subtitles and tracks; features; network), and the share of that time spent in the network, on the
held-out test clips of the last ``make run``.

    make run STUDY=relationship
    python benchmarks/relationship_inference.py --out benchmarks/results/relationship_inference.md

Three timings on the same rows, in one process, best of ``--repeats``:
- ``predict``: ``mlflow.pyfunc.load_model("models:/relationship@champion").predict(df)`` (what users call);
- ``features``: the decode + feature path alone (``tasks.relationship.data.clip_inputs`` + ``clip_features``);
- ``network``: the network alone on the stacked features, batch 16 (``predict_proba``).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--n", type=int, default=60, help="test clip pairs (at most the test split)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    import mlflow
    import pandas as pd
    import torch

    from models.relationship.features import clip_features, stack
    from models.relationship.inference import predict_proba
    from tasks.core import load_params
    from tasks.core.tracking import setup
    from tasks.relationship import dataset
    from tasks.relationship.data import clip_inputs

    torch.set_num_threads(args.threads)
    params = load_params(args.params)
    setup(params)
    model = mlflow.pyfunc.load_model("models:/relationship@champion")
    core = model.unwrap_python_model().model  # the loaded network + vocabulary + feature settings
    raw = dataset.raw_root(params)
    rows = dataset.labelled_rows(params, "test")[: args.n]
    df = pd.DataFrame([{c: (str(raw / r[c]) if r.get(c) else "") for c in
                        ("video_path", "subtitle_path", "tracks_path")} | {"char_a": r["char_a"], "char_b": r["char_b"]}
                       for r in rows])
    n = len(df)
    out = model.predict(df)
    bad = out["error"].fillna("").astype(str)
    assert (bad == "").all(), bad[bad != ""].tolist()[:3]
    cfg = core.features

    def feats():
        return stack([clip_features(*clip_inputs(raw, r, sample_rate=cfg.sample_rate), core.vocab, cfg) for r in rows])

    stacked = feats()
    t_predict = best(lambda: model.predict(df), args.repeats)
    t_features = best(feats, args.repeats)
    t_net = best(lambda: predict_proba(core.net, stacked, device="cpu"), args.repeats)
    res = {"n": n, "threads": args.threads, "predict_s": t_predict, "features_s": t_features, "network_s": t_net,
           "clips_per_s": n / t_predict, "features_clips_per_s": n / t_features, "network_clips_per_s": n / t_net,
           "network_share": t_net / t_predict, "parameters": sum(p.numel() for p in core.net.parameters())}
    lines = [f"| path | seconds for {n} clips | clips/s |", "|---|---|---|",
             f"| served `predict` (decode + features + network) | {t_predict:.2f} | {n / t_predict:.1f} |",
             f"| decode + features alone | {t_features:.2f} | {n / t_features:.1f} |",
             f"| network alone (batch 16) | {t_net:.3f} | {n / t_net:.0f} |",
             "", f"{args.threads} thread(s), best of {args.repeats}; network {res['parameters']:,} parameters, "
             f"{100 * res['network_share']:.1f} % of the served time."]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return res


if __name__ == "__main__":
    main()
