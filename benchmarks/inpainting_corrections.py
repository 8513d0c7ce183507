"""Why corrective rounds do not raise J&F (yet): what one correction does to the frame it is drawn on
and to the other frames, on the pipeline's test videos with its trained model.

For each test video (``data/inpainting/clean``, ``ImageSets/test.txt``): round 1 from the sequence's own
scribble file, propagate; then the simulated user's first correction (``Robot.correct``: a stroke on
the worst frame's largest error region), propagate again. J of the corrected frame and mean J of the
other frames, before and after, split by the kind of stroke (object = a missed part, background = a
false part). Needs `make run` first (artifacts/inpainting/train/model.pt). One torch thread.

    .venv/bin/python benchmarks/inpainting_corrections.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results"


def main() -> None:
    import pandas as pd
    import torch

    from models.inpainting import metrics
    from models.inpainting.inference import load_model
    from models.inpainting.robot import Robot
    from models.inpainting.scribbles import parse_scribbles
    from models.inpainting.session import InpaintingSession
    from tasks.inpainting.evaluation import load_video

    torch.set_num_threads(1)
    root = REPO / "data/inpainting/clean"
    names = (root / "ImageSets/test.txt").read_text().split()
    net, meta = load_model(REPO / "artifacts/inpainting/train/model.pt")
    rows = []
    for k, name in enumerate(names):
        v = load_video(root, name)
        gt, n = v["gt"], len(v["gt"])
        with torch.inference_mode(), InpaintingSession(net, list(v["frames"]), internal_size=tuple(meta["internal_size"]),
                                                       max_memory=int(meta["max_memory"])) as s:
            first = parse_scribbles(v["scribbles"], source=name, n_frames=n)
            for t in first.annotated_frames:
                s.add_scribbles(t, first.frames[t])
            s.propagate()
            before = metrics.jaccard_frames(np.stack([s.masks(t) for t in range(n)]).astype(np.uint8), gt, objects=[1])
            corr = parse_scribbles(Robot(seed=k).correct(np.stack([s.masks(t) for t in range(n)]).astype(np.uint8), gt,
                                                         sequence=name), source=name, n_frames=n)
            t2 = corr.annotated_frames[0]
            s.add_scribbles(t2, corr.frames[t2])
            s.propagate()
            after = metrics.jaccard_frames(np.stack([s.masks(t) for t in range(n)]).astype(np.uint8), gt, objects=[1])
        others = [t for t in range(n) if t != t2]
        rows.append({"sequence": name, "stroke": "object" if any(st.object_id > 0 for st in corr) else "background",
                     "frame": t2, "J_frame_before": before[t2], "J_frame_after": after[t2],
                     "J_others_before": float(np.mean(before[others])), "J_others_after": float(np.mean(after[others]))})
    d = pd.DataFrame(rows)
    cols = ["J_frame_before", "J_frame_after", "J_others_before", "J_others_after"]
    summary = {"all": d[cols].mean().round(3).to_dict(), "n": len(d),
               "by_stroke": {k: {"n": int(len(g)), **g[cols].mean().round(3).to_dict()} for k, g in d.groupby("stroke")}}
    lines = ["# One corrective round on the pipeline's test videos (inpainting)", "",
             "| stroke | videos | J corrected frame before → after | mean J other frames before → after |", "|---|---|---|---|"]
    for k, g in [("all", summary["all"] | {"n": summary["n"]}), *summary["by_stroke"].items()]:
        lines.append(f"| {k} | {g['n']} | {g['J_frame_before']:.3f} → {g['J_frame_after']:.3f} | "
                     f"{g['J_others_before']:.3f} → {g['J_others_after']:.3f} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "inpainting_corrections.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=1) + "\n")
    (RESULTS / "inpainting_corrections.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
