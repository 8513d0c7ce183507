"""`cloak` on CPU on a real video: speed, peak memory vs video length, J, hole PSNR vs Telea.

The video is ProPainter's object-removal input bmx-trees (../shared/fixtures/inpainting/object_removal:
80 frames 432x240 JPEG + one 0/255 mask per frame). The scribble is the first mask's skeleton
(``scribbles.from_mask``), on frame 0 only, as a user would draw it. One torch thread.

- **speed and memory**: ``tasks.inpainting.cloak.cloak`` end to end (read, scribble, propagate, masks,
  inpaint, PNGs, MP4) at ``--internal`` (default 120x216; the 432x240 default of the session is also
  timed on the first ``--probe`` frames): frames/s, peak RSS above the process's level before the
  call (sampled every 20 ms from /proc/self/statm) and tracemalloc's peak (numpy and Python objects;
  torch's CPU allocator is not traced). Then the same on the video repeated forwards / backwards to
  2x and 4x its length (160, 320 frames): bounded memory shows as flat peaks.
- **J** of cloak's masks against the fixture's masks (mean over frames).
- **hole PSNR**: bmx-trees has no clean background, so holes with a known truth are made: each
  frame's mask rolled by a third of the width onto the scene (the truth in them is the frame itself).
  The session's inpaint pass fills them (its masks set to these holes), against OpenCV Telea per frame
  and a copy from homography-aligned frames (tasks.inpainting.evaluation) on the same holes.

Nets: untrained (seeded) and, with ``--train-seconds`` > 0 (default 120), one trained that long on
synthetic clips (tasks.inpainting.synthetic, 64x96) by plain Adam steps on the Lightning module's
``clip_forward``. Writes benchmarks/results/cloak_cpu.{json,md}.

    .venv/bin/python benchmarks/cloak_cpu.py [--internal 120 216] [--train-seconds 120] [--probe 6]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
FIXTURE = REPO.parent / "shared" / "fixtures" / "inpainting" / "object_removal"
RESULTS = REPO / "benchmarks" / "results"


class PeakRSS:
    """Peak resident memory (bytes) above the level at start, sampled by a thread."""

    def __init__(self, every: float = 0.02):
        self.every, self.peak, self._stop = every, 0, threading.Event()

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.every)

    def __enter__(self):
        self.base = self.peak = self.rss()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.rss())

    @property
    def above(self) -> int:
        return self.peak - self.base


def mib(b) -> float:
    return round(b / 2 ** 20, 1)


def make_video(tmp: Path, n_times: int) -> tuple[Path, Path]:
    """A frame folder of bmx-trees repeated forwards / backwards (symlinks), and its scribble file."""
    from models.common.frames import read_mask
    from models.inpainting.scribbles import build_scribbles, from_mask, save_scribbles

    frames = sorted((FIXTURE / "bmx-trees").glob("*.jpg"))
    order = []
    for k in range(n_times):
        order += frames if k % 2 == 0 else frames[::-1]
    folder = tmp / f"bmx-x{n_times}"
    folder.mkdir()
    for i, src in enumerate(order):
        (folder / f"{i:05d}.jpg").symlink_to(src)
    strokes = from_mask(read_mask(FIXTURE / "bmx-trees_mask" / "00000.png"), frame=0)
    scribbles = save_scribbles(tmp / f"bmx-x{n_times}.json",
                               build_scribbles(strokes, n_frames=len(order), sequence="bmx-trees"))
    return folder, scribbles


def run_cloak(net_file: Path, video: Path, scribbles: Path, out: Path, internal) -> dict:
    """One cloak call in a fresh process (so each peak starts from a clean allocator), its measures."""
    import subprocess

    cmd = [sys.executable, __file__, "--one", str(net_file), str(video), str(scribbles), str(out),
           "--internal", *map(str, internal)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"cloak run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def one(net_file: Path, video: Path, scribbles: Path, out: Path, internal) -> dict:
    import resource

    import torch

    from models.inpainting.inference import load_model
    from tasks.inpainting.cloak import cloak

    torch.set_num_threads(1)
    net, _ = load_model(net_file)
    tracemalloc.start()
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        summary = cloak(video, scribbles, out, net=net, internal_size=internal, max_memory=8, device="cpu",
                        progress=False)
        seconds = time.perf_counter() - t0
    _, traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"n_frames": summary["n_frames"], "seconds": round(seconds, 2),
            "frames_per_s": round(summary["n_frames"] / seconds, 3),
            "peak_rss_mib": mib(rss.above), "max_rss_total_mib": mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024),
            "tracemalloc_peak_mib": mib(traced), "peak_memory_frames": summary["peak_memory_frames"]}


def j_against_fixture(out: Path) -> float:
    from models.common.frames import read_mask
    from models.inpainting.metrics import jaccard

    js = [jaccard(read_mask(out / "masks" / f"{p.stem}.png") > 0, read_mask(p) > 0)
          for p in sorted((FIXTURE / "bmx-trees_mask").glob("*.png"))]
    return float(np.mean(js))


def fake_holes(masks: np.ndarray) -> np.ndarray:
    """Each mask rolled by a third of the width: holes over the scene, whose truth is the frame."""
    return np.roll(masks, masks.shape[2] // 3, axis=2)


def hole_psnr(net, frames: np.ndarray, holes: np.ndarray, internal) -> dict:
    """Hole PSNR (dB) of the session's inpaint pass, Telea and the aligned copy, on ``holes``; truth = ``frames``."""
    import cv2

    from models.inpainting.session import InpaintingSession
    from tasks.inpainting.evaluation import restoration_scores, telea, temporal_fill

    h, w = internal
    with InpaintingSession(net, list(frames), internal_size=internal, max_memory=8) as s:
        for t, m in enumerate(holes):  # the session's masks set to the holes (no segmentation here)
            s._prob[t] = (cv2.resize(m.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA) * 255).round()
        s._has[:] = True
        model = np.stack([f.image for f in s.inpaint()])
    out = {}
    for name, restored in (("model", model), ("telea", telea(frames, holes)), ("temporal", temporal_fill(frames, holes))):
        out[name] = round(restoration_scores(restored, frames, holes)["hole_psnr"], 2)
    out["hole_share"] = round(float(np.mean(holes)), 4)
    return out


def quick_train(seconds: float, seed: int = 0):
    """A net trained ``seconds`` on synthetic clips (64x96), plain Adam on clip_forward; (net, info)."""
    import torch

    from models.inpainting.lit import InpaintingDataModule, InpaintingLitModule, sequences_of
    from models.inpainting.network import InpaintingNet
    from tasks.inpainting import synthetic

    torch.manual_seed(seed)
    root = Path(tempfile.mkdtemp(prefix="cloak-bench-train-"))
    t0 = time.perf_counter()
    synthetic.generate(root, seed=seed, n_videos=12, n_frames=12, height=64, width=96)
    seqs = sequences_of(root)
    dm = InpaintingDataModule(root=root, train_sequences=seqs, val_sequences=seqs[:2], size=(64, 96), clip_len=3,
                              batch_size=4, samples_per_epoch=48, seed=seed)
    lit = InpaintingLitModule(InpaintingNet())
    opt = torch.optim.Adam(lit.parameters(), lr=2e-3)
    steps, losses, start = 0, [], time.perf_counter()
    while time.perf_counter() - start < seconds:
        for batch in dm.train_dataloader():
            out = lit.clip_forward(batch)
            opt.zero_grad()
            out["loss"].backward()
            opt.step()
            steps += 1
            losses.append(float(out["loss"].detach()))
            if time.perf_counter() - start >= seconds:
                break
    info = {"steps": steps, "clips": steps * 4, "train_seconds": round(time.perf_counter() - start, 1),
            "data_seconds": round(start - t0, 1), "loss_first": round(float(np.mean(losses[:5])), 4),
            "loss_last": round(float(np.mean(losses[-5:])), 4)}
    return lit.net.eval(), info


def main() -> None:
    import torch

    from models.common.frames import read_image, read_mask
    from models.inpainting.network import InpaintingNet

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--internal", type=int, nargs=2, default=[120, 216], metavar=("H", "W"))
    ap.add_argument("--train-seconds", type=float, default=120.0)
    ap.add_argument("--probe", type=int, default=6, help="frames timed at the session's default 240x432 (0: skip)")
    ap.add_argument("--lengths", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--model", type=Path, default=None,
                    help="also a model file (e.g. the pipeline's artifacts/inpainting/train/model.pt), at its own internal size")
    ap.add_argument("--one", nargs=4, default=None, help=argparse.SUPPRESS)  # NET VIDEO SCRIBBLES OUT: one run
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(*map(Path, args.one), tuple(args.internal))))
        return
    if not FIXTURE.is_dir():
        sys.exit(f"{FIXTURE} absent: the benchmark needs ../shared/fixtures")
    torch.set_num_threads(1)
    internal = tuple(args.internal)
    tmp = Path(tempfile.mkdtemp(prefix="cloak-bench-"))
    videos = {k: make_video(tmp, k) for k in args.lengths}
    frames = np.stack([read_image(p) for p in sorted((FIXTURE / "bmx-trees").glob("*.jpg"))])
    masks = np.stack([read_mask(p) > 0 for p in sorted((FIXTURE / "bmx-trees_mask").glob("*.png"))])
    holes = fake_holes(masks)
    torch.manual_seed(0)
    nets = {"untrained": (InpaintingNet().eval(), None)}
    if args.train_seconds > 0:
        nets["trained"] = quick_train(args.train_seconds)
    if args.model is not None:
        from models.inpainting.inference import load_model

        net, meta = load_model(args.model)
        nets["pipeline"] = (net, {"model_file": str(args.model), "internal_size": list(meta["internal_size"])})
    results = {"video": "bmx-trees (80 frames, 432x240)", "internal_size": list(internal), "max_memory": 8,
               "torch_threads": 1, "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                               "torch": torch.__version__, "load_avg_1m": round(os.getloadavg()[0], 2)},
               "nets": {}}
    from models.inpainting.inference import save_model

    for name, (net, info) in nets.items():
        r = {"train": info, "lengths": {}}
        size = tuple((info or {}).get("internal_size") or internal)  # the pipeline's model: its own size
        r["internal_size"] = list(size)
        net_file = save_model(tmp / f"{name}.pt", net, {"internal_size": list(size), "max_memory": 8})
        for k, (video, scribbles) in videos.items():
            if k != 1 and name != "untrained":
                continue  # memory vs length does not depend on the weights: measured once
            out = tmp / f"out-{name}-x{k}"
            r["lengths"][f"x{k}"] = run_cloak(net_file, video, scribbles, out, size)
            if k == 1:
                r["J"] = round(j_against_fixture(out), 4)
            print(name, f"x{k}", r["lengths"][f"x{k}"], flush=True)
        r["hole_psnr"] = hole_psnr(net, frames, holes, size)
        print(name, "J", r.get("J"), "hole PSNR", r["hole_psnr"], flush=True)
        results["nets"][name] = r
    if args.probe > 0:
        from models.inpainting.scribbles import from_mask
        from models.inpainting.session import InpaintingSession

        net = nets["untrained"][0]
        t0 = time.perf_counter()
        with InpaintingSession(net, list(frames[: args.probe]), internal_size=(240, 432), max_memory=8) as s:
            s.add_scribbles(0, from_mask(masks[0].astype(np.uint8) * 255))
            s.propagate()
            for _ in s.inpaint():
                pass
        sec = time.perf_counter() - t0
        results["probe_240x432"] = {"frames": args.probe, "seconds": round(sec, 2),
                                    "frames_per_s": round(args.probe / sec, 3)}
        print("probe 240x432", results["probe_240x432"], flush=True)
    results["machine"]["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cloak_cpu.json").write_text(json.dumps(results, indent=1) + "\n")
    (RESULTS / "cloak_cpu.md").write_text(markdown(results))
    print(markdown(results))


def markdown(r: dict) -> str:
    h, w = r["internal_size"]
    lines = [f"# cloak on CPU: {r['video']}, internal {w}x{h}, max_memory {r['max_memory']}, 1 torch thread",
             "", f"machine: {r['machine']['cpus']} CPUs, load average {r['machine']['load_avg_1m']} at start, "
                 f"{r['machine'].get('load_avg_1m_end')} at the end (shared with other work), torch {r['machine']['torch']}",
             "", "| net | length | frames | frames/s | peak RSS above start MiB | max RSS of the process MiB | tracemalloc MiB | memory frames |",
             "|---|---|---|---|---|---|---|---|"]
    for name, n in r["nets"].items():
        for k, v in n["lengths"].items():
            lines.append(f"| {name} ({n.get('internal_size', [h, w])[1]}x{n.get('internal_size', [h, w])[0]}) | {k} | {v['n_frames']} | {v['frames_per_s']:.2f} | {v['peak_rss_mib']} | "
                         f"{v['max_rss_total_mib']} | {v['tracemalloc_peak_mib']} | {v['peak_memory_frames']} |")
    lines += ["", "| net | J vs fixture masks | hole PSNR model | Telea | aligned copy |", "|---|---|---|---|---|"]
    for name, n in r["nets"].items():
        p = n["hole_psnr"]
        lines.append(f"| {name} ({n.get('internal_size', [h, w])[1]}x{n.get('internal_size', [h, w])[0]}) | {n['J']:.3f} | {p['model']:.2f} | {p['telea']:.2f} | {p['temporal']:.2f} |")
    tr = r["nets"].get("trained", {}).get("train")
    if tr:
        lines += ["", f"trained: {tr['steps']} Adam steps ({tr['clips']} clips of 3 frames at 64x96) in "
                      f"{tr['train_seconds']} s on synthetic videos; loss {tr['loss_first']} -> {tr['loss_last']}"]
    if "probe_240x432" in r:
        p = r["probe_240x432"]
        lines += ["", f"at the session's default internal size 240x432 (first {p['frames']} frames, untrained): "
                      f"{p['frames_per_s']:.3f} frames/s"]
    lines += ["", "hole PSNR: holes with a known truth (each fixture mask rolled by a third of the width onto the "
                  "scene; bmx-trees has no clean background), filled by the session's inpaint pass, by OpenCV "
                  "Telea per frame and by a copy from homography-aligned frames.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
