"""Clean the masks and scribbles as annotators deliver them into ``inpainting.data.clean_dir``, a DAVIS
layout every later stage reads::

    <clean_dir>/JPEGImages/<seq>/       the raw frames (hard links when possible)
    <clean_dir>/Annotations/<seq>/*.png palette PNGs of object ids (0 background, 1.. objects, 255 void):
                                        palette / binary / 0-255 masks unified, speckles and holes under
                                        ``inpainting.clean.min_area`` of the frame removed / filled
    <clean_dir>/Scribbles/<seq>/*.json  the scribble files that passed the check (points in [0, 1], one
                                        list per frame, known object ids); the others are left out
    <clean_dir>/Backgrounds/<seq>/      the true backgrounds, where the source has them
    <clean_dir>/ImageSets/<split>.txt   the acquire split, less the sequences not every frame of which
                                        has a mask (training and J&F need one per frame)
    <clean_dir>/clean.json              the cleanup report: per sequence mask kinds, speckles / holes removed
                                        and their pixels, scribbles refused (file and why), sequences left out

Atomic: a failure leaves the previous clean_dir whole. A mask of another size than its frames stops the
stage with one line naming the file (the data is inconsistent, not noisy).
"""
from __future__ import annotations

from pathlib import Path

from tasks.core import MokuflowError, atomic_dir, link_or_copy, log, portable, progress, read_json, resolve, write_json
from tasks.inpainting.acquire import SPLITS


def run(params: dict, **kwargs) -> dict:
    from tasks.inpainting import layouts
    from tasks.inpainting.davis import write_palette_png

    cfg, data = params["inpainting"]["clean"], params["inpainting"]["data"]
    raw, clean_dir = resolve(params, data["raw_dir"]), resolve(params, data["clean_dir"])
    if not (raw / "acquire.json").is_file():
        raise MokuflowError(f"{raw / 'acquire.json'}: not found (run the acquire stage first)")
    acquired = read_json(raw / "acquire.json")
    listing = layouts.load_davis(raw)
    report = {"sequences": {}, "refused_scribbles": [], "left_out": {}}
    with atomic_dir(clean_dir) as tmp:
        for seq in progress(listing.sequences, "clean sequences"):
            ids, rep = layouts.clean_sequence(seq, min_area=float(cfg["min_area"]), threshold=int(cfg["threshold"]))
            for frame in seq.frames:
                link_or_copy(frame, tmp / "JPEGImages" / seq.name / frame.name)
                bg = raw / "Backgrounds" / seq.name / f"{frame.stem}.png"
                if bg.is_file():
                    link_or_copy(bg, tmp / "Backgrounds" / seq.name / bg.name)
            for stem, m in ids.items():
                write_palette_png(tmp / "Annotations" / seq.name / f"{stem}.png", m)
            rep["scribbles_kept"] = 0
            for path in seq.scribbles:
                try:
                    layouts.validate_scribbles(path, n_frames=seq.n_frames, object_ids=rep["object_ids"])
                except MokuflowError as e:
                    report["refused_scribbles"].append({"sequence": seq.name, "file": path.name, "reason": str(e)})
                    continue
                link_or_copy(path, tmp / "Scribbles" / seq.name / path.name)
                rep["scribbles_kept"] += 1
            if rep["n_masks"] < seq.n_frames:
                report["left_out"][seq.name] = f"{rep['n_masks']} of {seq.n_frames} frames have a mask"
            elif not rep["object_ids"]:
                report["left_out"][seq.name] = "no object in any mask"
            report["sequences"][seq.name] = {k: v for k, v in rep.items() if k != "sequence"}
        splits = {s: [n for n in acquired.get("splits", {}).get(s, []) if n in report["sequences"]
                      and n not in report["left_out"]] for s in SPLITS}
        _check_splits(splits, raw)
        (tmp / "ImageSets").mkdir(exist_ok=True)
        for split, names in splits.items():
            (tmp / "ImageSets" / f"{split}.txt").write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
        totals = {k: sum(r[k] for r in report["sequences"].values())
                  for k in ("speckles", "speckle_pixels", "holes", "hole_pixels", "n_masks")}
        report |= {"splits": splits, "totals": totals, "min_area": cfg["min_area"], "threshold": cfg["threshold"]}
        write_json(tmp / "clean.json", portable(params, report))
    log(f"clean: {totals['n_masks']} masks, {totals['speckles']} speckles and {totals['holes']} holes removed, "
        f"{len(report['refused_scribbles'])} scribble files refused, {len(report['left_out'])} sequences left out "
        f"-> {clean_dir}")
    return {"clean_dir": str(clean_dir), **totals, "refused_scribbles": len(report["refused_scribbles"]),
            "left_out": len(report["left_out"]), **{f"n_{s}": len(v) for s, v in splits.items()}}


def _check_splits(splits: dict, raw: Path) -> None:
    for s in ("train", "val"):
        if not splits[s]:
            raise MokuflowError(f"{raw}: no fully annotated sequence left in the '{s}' split "
                                "(training needs a mask on every frame of some sequences)")

