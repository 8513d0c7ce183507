"""Acquire the raw inpainting data (synthetic, or a local DAVIS / YouTube-VOS / object-removal folder) into
``inpainting.data.raw_dir``, in one layout whatever the source::

    <raw_dir>/JPEGImages/<seq>/<stem>.jpg|png    frames as delivered (hard links when possible)
    <raw_dir>/Annotations/<seq>/<stem>.png       masks as delivered (palette, binary, 0-255 grey), where there are
    <raw_dir>/Scribbles/<seq>/NNN.json           DAVIS interactive scribbles, where there are
    <raw_dir>/Backgrounds/<seq>/<stem>.png       synthetic only: the true clean background of each frame
    <raw_dir>/ImageSets/{train,val,test}.txt     the split, by sequence (``inpainting.data.split``)
    <raw_dir>/acquire.json                       summary: source, layout, per-sequence frames / masks / scribbles

``inpainting.data.source``:

- ``synthetic`` (default): :func:`tasks.inpainting.synthetic.generate` with ``inpainting.synthetic``;
- ``folder``: ``inpainting.data.folder.root``, read by :mod:`tasks.inpainting.layouts` (``layout``:
  auto, davis, youtube-vos or object-removal; relative to params.yaml's folder).

Written into a temp folder swapped in for raw_dir only on success: a failed acquire leaves the
previous raw data whole. Problems (no such folder, no frames...) are one line naming the path.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tasks.core import MokuflowError, atomic_dir, link_or_copy, log, portable, progress, resolve, write_json

SPLITS = ("train", "val", "test")


def run(params: dict, **kwargs) -> dict:
    data = params["inpainting"]["data"]  # the schema checked every key (tasks/inpainting/schema.py)
    raw_dir = resolve(params, data["raw_dir"])
    listing = None
    if data["source"] == "folder":
        listing = _listing(params)
    with atomic_dir(raw_dir) as tmp:
        if listing is None:
            summary = _synthetic(params, tmp)
        else:
            summary = _from_listing(listing, tmp)
        names = sorted(summary["sequences"])
        summary["splits"] = split_sequences(names, **data["split"])
        (tmp / "ImageSets").mkdir(exist_ok=True)
        for split, seqs in summary["splits"].items():
            (tmp / "ImageSets" / f"{split}.txt").write_text("".join(f"{s}\n" for s in seqs), encoding="utf-8")
        summary["source"] = data["source"]
        write_json(tmp / "acquire.json", portable(params, summary))  # no absolute path: DVC hashes it
    sizes = {s: len(v) for s, v in summary["splits"].items()}
    log(f"acquire: {len(names)} sequences ({sizes['train']} train / {sizes['val']} val / {sizes['test']} test), "
        f"{sum(s['frames'] for s in summary['sequences'].values())} frames -> {raw_dir}")
    return {"raw_dir": str(raw_dir), "source": data["source"], "layout": summary["layout"],
            "n_sequences": len(names), **{f"n_{k}": v for k, v in sizes.items()}}


def split_sequences(names: list[str], *, seed: int, val_fraction: float, test_fraction: float) -> dict[str, list[str]]:
    """Sequences shuffled by ``seed`` and cut into test / val / train (each sorted). With 3 or more
    sequences every split gets at least one, so a small folder still trains, validates and tests."""
    order = [names[i] for i in np.random.default_rng(int(seed)).permutation(len(names))]
    n = len(order)
    n_test = int(round(n * test_fraction))
    n_val = int(round(n * val_fraction))
    if n >= 3:
        n_test, n_val = max(1, n_test), max(1, n_val)
        n_test = min(n_test, n - n_val - 1)
    test, val, train = order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]
    return {"train": sorted(train), "val": sorted(val), "test": sorted(test)}


# ------------------------------------------------------------------------------------- synthetic

def _synthetic(params: dict, out: Path) -> dict:
    from tasks.inpainting import synthetic

    s = params["inpainting"]["synthetic"]
    meta = synthetic.generate(out, seed=s["seed"], n_videos=s["n_videos"], n_frames=s["n_frames"],
                              height=s["height"], width=s["width"], progress=progress)
    seqs = {name: {"frames": int(s["n_frames"]), "masks": int(s["n_frames"]), "scribbles": 1,
                   "backgrounds": True, **info} for name, info in meta["sequences"].items()}
    return {"layout": "davis", "synthetic": {k: s[k] for k in s}, "fillable": meta["fillable"], "sequences": seqs}


# ----------------------------------------------------------------------------------------- folder

def _listing(params: dict):
    from tasks.inpainting import layouts

    f = params["inpainting"]["data"]["folder"]
    root = resolve(params, f["root"])
    if not root.exists():
        raise MokuflowError(f"{root}: inpainting.data.folder.root not found")
    layout = layouts.detect_layout(root) if f["layout"] == "auto" else f["layout"]
    if layout == "davis":
        return layouts.load_davis(root, resolution=f["resolution"], sequences=f["sequences"])
    if layout == "youtube-vos":
        return layouts.load_youtube_vos(root, sequences=f["sequences"])
    listing = layouts.load_object_removal(root)
    if f["sequences"]:
        keep = set(f["sequences"])
        listing.sequences = [s for s in listing.sequences if s.name in keep]
    return listing


def _from_listing(listing, out: Path) -> dict:
    seqs = {}
    for seq in progress(listing.sequences, "acquire sequences"):
        for frame in seq.frames:
            link_or_copy(frame, out / "JPEGImages" / seq.name / frame.name)
        masks = 0
        for frame, mask in zip(seq.frames, seq.masks):
            if mask is not None:  # named after its frame: a single object-removal mask serves every frame
                link_or_copy(mask, out / "Annotations" / seq.name / f"{frame.stem}{mask.suffix.lower()}")
                masks += 1
        for k, s in enumerate(seq.scribbles, 1):
            link_or_copy(s, out / "Scribbles" / seq.name / f"{k:03d}.json")
        seqs[seq.name] = {"frames": seq.n_frames, "masks": masks, "scribbles": len(seq.scribbles),
                          "backgrounds": False, **({"object_ids": seq.meta["object_ids"]} if "object_ids" in seq.meta else {})}
    if not seqs:
        raise MokuflowError(f"{listing.root}: no sequences to acquire")
    return {"layout": listing.layout, "root": str(listing.root), "sequences": seqs}
