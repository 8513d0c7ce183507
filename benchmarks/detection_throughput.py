"""Detector throughput: training images/s (share of step time waiting for data, peak GPU memory, bf16)
and inference images/s through ``predict_images`` (all four variants from one pass), side by side.

    python benchmarks/detection_throughput.py                      # GPU: bf16-mixed, 300 steps
    python benchmarks/detection_throughput.py --steps 30 --out benchmarks/results/detection_throughput_cpu.json

Synthetic images come from the study's own generator (numpy + OpenCV), written once into --cache-dir.
Models and Lightning only: no prefect, mlflow or dvc.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

import lightning as L  # noqa: E402
import torch  # noqa: E402
from gpu_train_vqa import StepTimer, emit  # noqa: E402

from models.detection.detector import Detector  # noqa: E402
from models.detection.inference import predict_images  # noqa: E402
from models.detection.lit import DetectionDataModule, DetectionLitModule  # noqa: E402
from tasks.detection import synthetic  # noqa: E402
from tasks.detection.coco import split_items  # noqa: E402


def images(cache_dir: Path, n: int, size: int):
    folder = cache_dir / f"det-{n}-{size}"
    if not (folder / "truth" / "instances_train.json").is_file():
        synthetic.generate(folder, seed=0, n_train=n, n_val=8, n_test=8, image_size=size)
    coco = json.loads((folder / "truth" / "instances_train.json").read_text())
    return coco, split_items(coco, folder / "images")


def main(argv: list[str] | None = None) -> dict:
    gpu = torch.cuda.is_available()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300 if gpu else 30)
    ap.add_argument("--warmup", type=int, default=20 if gpu else 3)
    ap.add_argument("--images", type=int, default=512 if gpu else 96)
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--batch-size", type=int, default=32 if gpu else 8)
    ap.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1) if gpu else 0)
    ap.add_argument("--precision", default="bf16-mixed" if gpu else "32-true")
    ap.add_argument("--cache-dir", default=".cache/detection/bench")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    L.seed_everything(0, verbose=False)
    coco, items = images(Path(args.cache_dir), args.images, args.size)
    cat_ids = sorted(c["id"] for c in coco["categories"])
    dm = DetectionDataModule(train_images=items, val_images=items[:2], category_ids=cat_ids,
                             image_size=args.size, batch_size=args.batch_size, num_workers=args.workers)
    net = Detector(num_classes=len(cat_ids), anchor_sizes=(16, 32, 64))
    lit = DetectionLitModule(net)
    timer = StepTimer(warmup=args.warmup)
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    trainer = L.Trainer(accelerator="gpu" if gpu else "cpu", devices=1, precision=args.precision,
                        max_steps=args.steps + args.warmup, max_epochs=-1, limit_val_batches=0,
                        num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[timer])
    trainer.fit(lit, datamodule=dm)
    total = timer.wait + timer.compute

    meta = {"categories": [{"id": c, "name": str(c)} for c in cat_ids], "image_size": args.size}
    paths = [p for p, _, _ in items[:64]]
    device = "cuda" if gpu else "cpu"
    predict_images(net, meta, paths[:8], variants=("none", "direct", "decoupled", "dir"), device=device)  # warm
    t0 = time.perf_counter()
    predict_images(net, meta, paths, variants=("none", "direct", "decoupled", "dir"), device=device,
                   batch_size=args.batch_size)
    infer_s = time.perf_counter() - t0
    result = {
        "device": torch.cuda.get_device_name(0) if gpu else "cpu", "threads": torch.get_num_threads(),
        "precision": args.precision, "image_size": args.size, "batch_size": args.batch_size,
        "params": sum(p.numel() for p in net.parameters()), "steps_timed": timer.steps,
        "train_images_per_s": timer.clips / total if total else None,
        "data_wait_share": timer.wait / total if total else None,
        "ms_per_step_compute": 1000 * timer.compute / max(1, timer.steps),
        "peak_gpu_mem_mb": torch.cuda.max_memory_allocated() / 2**20 if gpu else None,
        "inference_images_per_s_all_variants": len(paths) / infer_s,
    }
    return emit(result, args.out)


if __name__ == "__main__":
    main()
