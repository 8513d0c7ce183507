"""Issue 13 item 4: the default detector at N x its epochs on a GPU, then the variants table here.

Two halves, because the GPU box has torch + Lightning but not the scoring stack (faster-coco-eval,
pydantic, mlflow):

    # on the GPU box (after `make run STUDY=detection` here; carry data/detection):
    python benchmarks/gpu_detection_long.py train --factor 5 --out $OUT
    # back here, on what came back (model.pt + train.json):
    python benchmarks/gpu_detection_long.py score --model DIR/model.pt --out benchmarks/results/detection_long

``train`` is the pipeline's train stage without its run bookkeeping: the recipe of params.yaml
(``detection.model`` / ``detection.train``: same network, batch, lr, warm-up, seed, best checkpoint by
val AP50 of ``val_variant``), ``max_epochs`` x ``--factor``, bf16-mixed on a GPU (``--precision``),
on the cleaned splits DVC left in data/detection. It writes model.pt and train.json: training images/s,
the share of step time spent waiting for data, peak GPU memory, the history.

``score`` is the evaluate stage's own scoring (tasks/detection/evaluate.py: every variant, paired
bootstrap gains over ``none``, the two claims, the candidates' calibration) on the held-out split, and
prints the variants table for benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _params(overrides: dict | None = None) -> dict:
    from tasks.core import load_params

    return load_params(overrides=overrides or {}, validate=False)  # no pydantic on a bare GPU box


def train(args) -> dict:
    import lightning as L
    import pandas as pd
    import torch
    from gpu_train_vqa import StepTimer, emit

    from models.detection.inference import save_model
    from tasks.detection.train import build

    params = _params()
    t, m = params["detection"]["train"], params["detection"]["model"]
    epochs = int(round(float(t["max_epochs"]) * args.factor))
    lit, dm, cat_ids, cat_names = build(params, num_workers=args.workers)  # the train stage's recipe
    net = lit.net
    gpu = torch.cuda.is_available()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    best = L.pytorch.callbacks.ModelCheckpoint(dirpath=out / "ckpt", monitor="val_ap50", mode="max",
                                               save_top_k=1, save_weights_only=True, filename="best")
    timer = StepTimer(warmup=args.warmup)
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    precision = args.precision or ("bf16-mixed" if gpu else "32-true")
    trainer = L.Trainer(accelerator="gpu" if gpu else "cpu", devices=1, precision=precision, max_epochs=epochs,
                        logger=False, callbacks=[timer, best], enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, deterministic=False)
    t0 = time.perf_counter()
    trainer.fit(lit, datamodule=dm)
    wall = time.perf_counter() - t0
    state = torch.load(best.best_model_path, map_location="cpu", weights_only=True)["state_dict"]
    net.load_state_dict({k[len("net."):]: v for k, v in state.items() if k.startswith("net.")})
    save_model(out / "model.pt", net.cpu(), category_ids=cat_ids, category_names=cat_names,
               image_size=int(m["image_size"]))
    Path(best.best_model_path).unlink()  # model.pt holds the weights
    (out / "ckpt").rmdir()
    total = timer.wait + timer.compute
    history = pd.DataFrame(lit.history)
    return emit({
        "device": torch.cuda.get_device_name(0) if gpu else "cpu", "torch": torch.__version__,
        "precision": precision, "epochs": epochs, "factor": args.factor, "batch_size": int(t["batch_size"]),
        "steps": int(trainer.global_step), "train_images": len(dm.train_set), "wall_s": wall,
        "steps_timed": timer.steps, "train_images_per_s": timer.clips / total if total else None,
        "data_wait_share": timer.wait / total if total else None,
        "ms_per_step_compute": 1000 * timer.compute / max(1, timer.steps),
        "peak_gpu_mem_mb": torch.cuda.max_memory_allocated() / 2**20 if gpu else None,
        "best_val_ap50": float(best.best_model_score) if best.best_model_score is not None else None,
        "history": history.to_dict(orient="records"),
    }, str(out / "train.json"))


def score(args) -> dict:
    from tasks.core import write_json
    from tasks.detection.evaluate import measure

    model = Path(args.model).resolve()
    metrics, _, results = measure(_params({"detection.train.out_dir": str(model.parent)}))  # the stage's scoring
    if args.out:
        write_json(Path(args.out) / "metrics.json", metrics)
    print(table(metrics, list(results)))
    return metrics


def table(metrics: dict, variants: list[str]) -> str:
    """The variants table of benchmarks/README.md: AP [CI], AP50, AP75, AP90, paired gain over none."""
    def ci(x):
        return f"{x['value']:.3f} [{x['ci_low']:.3f}, {x['ci_high']:.3f}]" if x.get("ci_low") is not None \
            else f"{x['value']:.3f}"

    rows = ["| variant | AP | AP50 | AP75 | AP90 | gain over `none`: AP · AP75 |", "|---|---|---|---|---|---|"]
    for v in variants:
        m, g = metrics[v], metrics["gain"].get(f"{v}-none")
        gain = "–" if g is None else " · ".join(
            f"{g[s]['value']:+.4f} [{g[s]['ci_low']:+.4f}, {g[s]['ci_high']:+.4f}]" for s in ("AP", "AP75"))
        rows.append(f"| {v} | {ci(m['AP'])} | {m['AP50']['value']:.3f} | {m['AP75']['value']:.3f} "
                    f"| {m['AP90']['value']:.3f} | {gain} |")
    rows.append("")
    for name, c in metrics["claims"].items():
        ival = f" [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}]" if c["ci_low"] is not None else ""
        rows.append(f"- {name} ({c['comparison']}, AP): {c['verdict']}, {c['value']:+.4f}{ival}")
    return "\n".join(rows)


def main(argv: list[str] | None = None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    tr = sub.add_parser("train", help="on the GPU box: N x the default epochs")
    tr.add_argument("--factor", type=float, default=5.0, help="times detection.train.max_epochs")
    tr.add_argument("--precision", default=None, help="default: bf16-mixed on a GPU, 32-true on CPU")
    tr.add_argument("--workers", type=int, default=4, help="DataLoader workers (the pipeline's default is 0)")
    tr.add_argument("--warmup", type=int, default=20, help="steps left out of the timings")
    tr.add_argument("--out", required=True)
    sc = sub.add_parser("score", help="here: the evaluate stage's scoring of a model.pt")
    sc.add_argument("--model", required=True)
    sc.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    return train(args) if args.cmd == "train" else score(args)


if __name__ == "__main__":
    main()
