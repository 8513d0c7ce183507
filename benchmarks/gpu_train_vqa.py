"""Training throughput of STDAM: clips/s, share of step time waiting for data, peak GPU memory.

Standalone (models/ + lightning + torch only; no tasks/, prefect, mlflow or dvc), so it runs on a bare
GPU box:

    python benchmarks/gpu_train_vqa.py                       # GPU: bf16-mixed, 300 steps
    python benchmarks/gpu_train_vqa.py --steps 20 --clips 16 --size 32 --channels 8 16   # CPU smoke run

It writes small synthetic videos (noise level = quality) once into --cache-dir, decodes them once
through FrameCache (as the train stage does), then trains for --steps steps without validation.
"Data wait" is the time from one batch's end to the next batch's start (dataloader + host->device
copy); "compute" is batch start to end (forward, backward, optimiser; CUDA synchronised).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

import lightning as L  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from models.vqa.lit import VQADataModule, VQALitModule  # noqa: E402
from models.vqa.video import MOTIONS, FrameCache  # noqa: E402


class StepTimer(L.Callback):
    """Per step: wait for data (previous batch end -> this batch start) vs compute (start -> end)."""

    def __init__(self, *, warmup: int):
        self.warmup, self.wait, self.compute, self.clips, self.steps = warmup, 0.0, 0.0, 0, 0
        self._prev_end: float | None = None
        self._start = 0.0

    @staticmethod
    def _now() -> float:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._start = self._now()
        if self._prev_end is not None and trainer.global_step >= self.warmup:
            self.wait += self._start - self._prev_end

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        end = self._now()
        if trainer.global_step > self.warmup:  # global_step already counts this step
            self.compute += end - self._start
            self.clips += len(batch[2])
            self.steps += 1
        self._prev_end = end


def make_videos(folder: Path, *, n: int, frames: int, height: int, width: int, seed: int = 0) -> list[tuple[str, float]]:
    """Synthetic clips whose quality falls with added noise; reused when already there."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        noise = float(rng.uniform(0, 0.3))
        path = folder / f"clip{i:04d}_{height}x{width}x{frames}.mp4"
        if not path.is_file():
            base = rng.integers(30, 220, (height, width, 3)).astype(np.float32)
            shift = rng.integers(1, 4)
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 12, (width, height))
            for t in range(frames):
                frame = np.roll(base, t * shift, axis=1) + rng.normal(0, 255 * noise, base.shape)
                writer.write(np.clip(frame, 0, 255).astype(np.uint8))
            writer.release()
        items.append((str(path), 5.0 - 10.0 * noise))
    return items


def main(argv: list[str] | None = None) -> dict:
    gpu = torch.cuda.is_available()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300 if gpu else 30)
    ap.add_argument("--warmup", type=int, default=20 if gpu else 3, help="steps left out of the timing")
    ap.add_argument("--clips", type=int, default=256 if gpu else 24, help="distinct synthetic videos")
    ap.add_argument("--batch-size", type=int, default=16 if gpu else 4)
    ap.add_argument("--n-clips", type=int, default=4 if gpu else 2, help="runs of consecutive frames")
    ap.add_argument("--clip-len", type=int, default=8 if gpu else 2, help="motion steps per run")
    ap.add_argument("--size", type=int, default=64 if gpu else 32, help="frame height = width")
    ap.add_argument("--channels", type=int, nargs="+", default=[16, 32, 64] if gpu else [8, 16])
    ap.add_argument("--motion", choices=sorted(MOTIONS), default="diff")
    ap.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1) if gpu else 0)
    ap.add_argument("--precision", default="bf16-mixed" if gpu else "32-true")
    ap.add_argument("--cache-dir", default=".cache/vqa/bench")
    ap.add_argument("--out", default=None, help="also write the JSON result here")
    args = ap.parse_args(argv)

    L.seed_everything(0, verbose=False)
    cache_dir = Path(args.cache_dir)
    items = make_videos(cache_dir / "videos", n=args.clips, frames=2 * args.n_clips * (args.clip_len + 1),
                        height=args.size, width=args.size)
    t0 = time.perf_counter()
    FrameCache(cache_dir / "frames", n_clips=args.n_clips, clip_len=args.clip_len, height=args.size, width=args.size,
               motion=args.motion).fill(p for p, _ in items)
    cache_s = time.perf_counter() - t0

    dm = VQADataModule(train_items=items, val_items=items[:2], n_clips=args.n_clips, clip_len=args.clip_len,
                       height=args.size, width=args.size, motion=args.motion, cache_dir=cache_dir / "frames",
                       batch_size=args.batch_size, num_workers=args.workers, seed=0)
    model_kwargs = dict(backbone_channels=args.channels, gcn_layers=2, gcn_dim=64, attention_heads=4,
                        motion_in_channels=MOTIONS[args.motion], motion_channels=16, lstm_hidden=64, dropout=0.1)
    lit = VQALitModule(model_kwargs=model_kwargs, target_mean=dm.target_stats["mean"],
                       target_std=dm.target_stats["std"])
    timer = StepTimer(warmup=args.warmup)
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    trainer = L.Trainer(accelerator="gpu" if gpu else "cpu", devices=1, precision=args.precision,
                        max_steps=args.steps + args.warmup, max_epochs=-1, limit_val_batches=0,
                        num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[timer])
    t0 = time.perf_counter()
    trainer.fit(lit, datamodule=dm)
    fit_s = time.perf_counter() - t0
    total = timer.wait + timer.compute
    result = {
        "device": torch.cuda.get_device_name(0) if gpu else "cpu",
        "precision": args.precision, "steps_timed": timer.steps, "batch_size": args.batch_size,
        "clip": [args.n_clips, args.clip_len, args.size, args.size], "backbone_channels": args.channels,
        "workers": args.workers,
        "params": sum(p.numel() for p in lit.model.parameters()),
        "clips_per_s": timer.clips / total if total else None,
        "data_wait_share": timer.wait / total if total else None,
        "ms_per_step_compute": 1000 * timer.compute / max(1, timer.steps),
        "ms_per_step_wait": 1000 * timer.wait / max(1, timer.steps),
        "peak_gpu_mem_mb": torch.cuda.max_memory_allocated() / 2**20 if gpu else None,
        "frame_cache_fill_s": cache_s, "fit_s": fit_s,
    }
    return emit(result, args.out)


def emit(result: dict, out: str | None) -> dict:
    """Print the result as JSON and, when ``out`` is given, write it there too."""
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
