"""The annotation faults a labelling tool adds to the synthetic truth, which the clean stage must undo.

The delivered file holds the truth annotations in order (some modified in place) followed by the
extra, faulty annotations (shuffled), with ``round(fault_rate * n_truth)`` faults per split cycling
through ``FAULT_KINDS`` in a seeded order (so every kind is present once a split has >= 7 faults):

- ``jittered``: a truth box moved / resized by small quarter-pixel offsets (in place, kept by the
  cleaner; stays inside the image);
- ``partly_outside``: a truth box that touches the image border extended past it by whole pixels (in
  place; clipping restores the truth box exactly);
- ``duplicate``: an extra copy of a truth box, identical or shifted to IoU >= 0.96;
- ``degenerate``: an extra copy with width or height 0, negative or NaN;
- ``wholly_outside``: an extra box with no overlap with its image;
- ``unknown_category`` / ``unknown_image``: an extra copy with a category / image id that does not exist.

So the cleaner (:func:`tasks.detection.coco.clean_coco`) must recover the truth exactly, except for
the jittered boxes. :data:`CLEAN_REASON` maps each kind to the cleaner's report reason.
"""
from __future__ import annotations

import math

from tasks.detection.coco import box_iou

FAULT_KINDS = ("jittered", "duplicate", "degenerate", "partly_outside", "wholly_outside",
               "unknown_category", "unknown_image")
# injected fault kind -> what the cleaner reports for it (None: not detectable, kept as is)
CLEAN_REASON = {"jittered": None, "duplicate": "duplicate", "degenerate": "degenerate",
                "partly_outside": "clipped", "wholly_outside": "outside",
                "unknown_category": "unknown_category", "unknown_image": "unknown_image"}


def inject_faults(rng, truth: dict, *, fault_rate: float, next_id: int, unknown_image_base: int):
    """The delivered annotations: ``truth`` plus ``round(fault_rate * n)`` faults.

    Returns (delivered COCO dict, fault list, next free annotation id).
    """
    import numpy as np

    anns = truth["annotations"]
    sizes = {im["id"]: (im["width"], im["height"]) for im in truth["images"]}
    cat_ids = sorted(c["id"] for c in truth["categories"])
    delivered = [{k: a[k] for k in ("id", "image_id", "category_id", "bbox", "area", "iscrowd")}
                 for a in anns]
    for d in delivered:
        d["bbox"] = list(d["bbox"])
    n = int(round(fault_rate * len(anns)))
    order = [FAULT_KINDS[i] for i in rng.permutation(len(FAULT_KINDS))]
    kinds = [order[i % len(order)] for i in range(n)]
    free = [int(i) for i in rng.permutation(len(anns))]
    same = {}
    for i, a in enumerate(delivered):
        same.setdefault((a["image_id"], a["category_id"]), []).append(i)
    extras, faults = [], []
    missing_ids = [i for i in range(1, cat_ids[-1] + 3) if i not in set(cat_ids)]

    def q(v):  # quarter pixels: exact in binary floating point
        return float(np.round(v * 4) / 4)

    for kind in kinds:
        for pos, i in enumerate(free):
            a = delivered[i]
            x, y, w, h = a["bbox"]
            W, H = sizes[a["image_id"]]
            new = None
            if kind == "jittered":
                mag = max(1.0, 0.08 * max(w, h))
                dx, dy, dw, dh = (q(v) for v in rng.uniform(-mag, mag, 4))
                nx, ny = max(0.0, x + dx), max(0.0, y + dy)
                nw, nh = min(w + dw, W - nx), min(h + dh, H - ny)
                cand = [nx, ny, nw, nh]
                others = [delivered[j]["bbox"] for j in same[(a["image_id"], a["category_id"])] if j != i]
                if (nw >= 2 and nh >= 2 and cand != [x, y, w, h] and box_iou(cand, [x, y, w, h]) > 0.5
                        and all(box_iou(cand, o) < 0.9 for o in others)):
                    new = cand
            elif kind == "partly_outside":
                sides = [s for s, touch in (("l", x == 0), ("t", y == 0), ("r", x + w == W), ("b", y + h == H))
                         if touch]
                if sides:
                    side = sides[int(rng.integers(len(sides)))]
                    k = int(rng.integers(1, max(2, int(0.4 * max(w, h))) + 1))
                    new = {"l": [x - k, y, w + k, h], "t": [x, y - k, w, h + k],
                           "r": [x, y, w + k, h], "b": [x, y, w, h + k]}[side]
            else:
                new = True
            if new is None:
                continue
            free.pop(pos)
            if kind in ("jittered", "partly_outside"):
                a["bbox"] = new
                a["area"] = new[2] * new[3]
                faults.append({"id": a["id"], "kind": kind, "source_id": a["id"], "image_id": a["image_id"]})
                break
            e = {"id": next_id, "image_id": a["image_id"], "category_id": a["category_id"],
                 "bbox": [x, y, w, h], "iscrowd": 0}
            next_id += 1
            if kind == "duplicate":
                if rng.random() < 0.5:
                    dx, dy = (q(v) for v in rng.choice([-0.5, -0.25, 0.25, 0.5], 2))
                    cand = [x + dx, y + dy, w, h]
                    if (cand[0] >= 0 and cand[1] >= 0 and cand[0] + w <= W and cand[1] + h <= H
                            and box_iou(cand, [x, y, w, h]) >= 0.96):
                        e["bbox"] = cand
            elif kind == "degenerate":
                variant = int(rng.integers(4))
                e["bbox"] = [[x, y, 0, h], [x, y, w, -h], [x, y, float("nan"), h], [x, y, w, 0]][variant]
            elif kind == "wholly_outside":
                k = int(rng.integers(0, 12))
                variant = int(rng.integers(4))
                e["bbox"] = [[W + k, y, w, h], [x, H + k, w, h], [-w - k, y, w, h], [x, -h - k, w, h]][variant]
            elif kind == "unknown_category":
                e["category_id"] = int(missing_ids[int(rng.integers(len(missing_ids)))])
            elif kind == "unknown_image":
                e["image_id"] = int(unknown_image_base + rng.integers(1, 1000))
            bw, bh = e["bbox"][2], e["bbox"][3]
            e["area"] = float(bw * bh) if math.isfinite(bw * bh) else float("nan")
            extras.append(e)
            faults.append({"id": e["id"], "kind": kind, "source_id": a["id"], "image_id": e["image_id"]})
            break
    extras = [extras[i] for i in rng.permutation(len(extras))]
    out = {"info": dict(truth.get("info", {}), description=truth.get("info", {}).get("description", "")
                        + " (as delivered: with annotation faults)"),
           "images": [dict(im) for im in truth["images"]], "annotations": delivered + extras,
           "categories": [dict(c) for c in truth["categories"]]}
    faults.sort(key=lambda f: f["id"])
    return out, faults, next_id
