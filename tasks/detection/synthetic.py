"""Synthetic COCO detection data with known truth: textured shapes on cluttered backgrounds.

Six categories with non-contiguous COCO ids, each a shape *and* a texture, in its own colour family
(a hue, jittered by ``sprites.HUE_JITTER`` = 15 degrees, with random saturation and brightness):

====  ===============  ====  =====================================================
 id    name             hue   look
====  ===============  ====  =====================================================
  1    striped_disc       0   disc (or ellipse) filled with two-colour stripes
  2    triangle          60   solid shaded triangle with an inset of a second colour
  3    star             120   solid shaded five-pointed star with an inset
  5    ring             180   annulus: the background shows through its hole
  7    cross            240   solid shaded plus / X sign with an inset
  9    checker_square   300   square with a 4 x 4 two-colour checker pattern
====  ===============  ====  =====================================================

Colour tells the categories apart but never an object from clutter: backgrounds and distractors take
any colour, the categories' hues included, so a detector still has to find the shape. (Until issue
13 every object took a random colour; a small CPU detector then spent its few minutes telling the
categories apart instead of learning where their boxes are: see benchmarks/README.md.)

Every object has a random rotation and aspect (w / h before rotation, log-uniform in [1 / ``ASPECT_MAX``,
``ASPECT_MAX``] = [0.63, 1.6]). Sizes (the long side of the unrotated shape) span ``min_object`` px
to 90 % of the image side, log-uniform within three bands (``SIZE_BANDS`` / ``SIZE_EDGES``): 12 %
small (up to 10 % of the side), 48 % medium (up to 30 %), 40 % large. At image_size 160 (seed 11)
the test split's truth boxes' long sides have quartiles 20 / 31 / 54 px (10th percentile 13, 90th 91), i.e. by
COCO's absolute area ranges ~57 % small, ~39 % medium, ~4 % large: detector anchors should reach
down to ~12 px. Backgrounds are procedural clutter (smooth colour fields, mid-frequency noise,
random lines, translucent blobs) and an image holds 0 - 3 distractors that belong to no category
(``DISTRACTORS_PER_IMAGE``: irregular blobs and polygons, bars, solid ellipses and rectangles). With
probability 0.4 an image holds a crowd: 3 - 6 instances of one category of similar size, touching or
overlapping each other (ranking and NMS decide those). Objects may extend past the image border.

Occlusion: objects are painted in turn (mostly large first), so later ones hide parts of earlier
ones. A truth box is the full extent of the object inside the image (its hidden parts included), as
COCO does. An object with less than ``MIN_VISIBLE`` (30 %) of its pixels visible (hidden by others
or outside the image) is **not labelled** (no annotation; it is counted as ``hidden``), so a
detector is neither asked to find it nor punished twice; every label has ``iscrowd: 0``. Two
instances of one category never overlap with IoU >= 0.7 (placement is retried; a rare rendered pair
at >= 0.8 keeps only the more visible one), so duplicate removal at IoU 0.95 never hits a real pair.
Truth ``area`` is the box area (w * h): there are no masks.

Output folder::

    images/{split}_{nnnnn}.jpg                    JPEG, quality 90, image_size x image_size
    truth/instances_{split}.json                  noise-free COCO truth (+ per label: "visible", "group")
    truth/faults_{split}.json                     every injected fault: [{"id", "kind", "source_id", "image_id"}]
    annotations/instances_{split}.json            what a labelling tool delivered: truth + faults

Image and annotation ids are unique across the splits. The delivered file holds the truth
annotations in order (some modified in place) followed by the extra, faulty annotations (shuffled),
with ``round(fault_rate * n_truth)`` faults per split cycling through ``FAULT_KINDS`` in a seeded
order (so every kind is present once a split has >= 7 faults):

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
Deterministic by seed (each image has its own seeded stream: changing ``n_train`` keeps the others).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path

from tasks.detection.sprites import background, render_patch

CATEGORIES = (
    {"id": 1, "name": "striped_disc", "supercategory": "round"},
    {"id": 2, "name": "triangle", "supercategory": "polygon"},
    {"id": 3, "name": "star", "supercategory": "polygon"},
    {"id": 5, "name": "ring", "supercategory": "round"},
    {"id": 7, "name": "cross", "supercategory": "polygon"},
    {"id": 9, "name": "checker_square", "supercategory": "polygon"},
)
SPLITS = ("train", "val", "test")
FAULT_KINDS = ("jittered", "duplicate", "degenerate", "partly_outside", "wholly_outside",
               "unknown_category", "unknown_image")
# injected fault kind -> what the cleaner reports for it (None: not detectable, kept as is)
CLEAN_REASON = {"jittered": None, "duplicate": "duplicate", "degenerate": "degenerate",
                "partly_outside": "clipped", "wholly_outside": "outside",
                "unknown_category": "unknown_category", "unknown_image": "unknown_image"}
DISTRACTORS = ("blob", "polygon", "bar", "ellipse", "rect")
MIN_VISIBLE = 0.3
CROWD_PROB = 0.4
PLACE_MAX_IOU = 0.7      # same-category placement: retry above this (approximate boxes)
RENDER_MAX_IOU = 0.8     # same-category rendered boxes: keep only the more visible one above this
JPEG_QUALITY = 90
SIZE_BANDS = (0.12, 0.48, 0.40)       # share of small / medium / large objects (by long side) ...
SIZE_EDGES = (0.10, 0.30, 0.90)       # ... whose bands end at these fractions of the image side
ASPECT_MAX = 1.6                      # aspect (w / h before rotation) log-uniform in [1/1.6, 1.6]
DISTRACTORS_PER_IMAGE = (0, 3)        # non-category shapes an image holds (inclusive range)
# a category's colour: hue in degrees (jittered, random saturation and brightness); distractors
# and backgrounds take any colour, so colour alone never tells an object from clutter
CATEGORY_HUE = {1: 0.0, 2: 60.0, 3: 120.0, 5: 180.0, 7: 240.0, 9: 300.0}

_NAME = {c["id"]: c["name"] for c in CATEGORIES}
_KIND_OF = _NAME  # a category's shape kind is its name


# ------------------------------------------------------------------------------------- public

def generate(out_dir, *, seed: int, n_train: int, n_val: int, n_test: int, image_size: int,
             min_object: int = 8, max_objects: int = 12, fault_rate: float = 0.08,
             progress: Callable[[Iterable, str], Iterable] | None = None) -> dict:
    """Write images, truth, faults and delivered annotations into ``out_dir``; return a summary.

    The summary: ``{"seed", "image_size", "categories", "splits": {split: {"images",
    "annotations", "per_category", "hidden", "crowd_groups", "faults": {kind: n}}},
    "per_category", "faults"}`` (totals over the splits).
    """
    import cv2
    import numpy as np

    from tasks.core import write_json

    image_size, min_object, max_objects = int(image_size), int(min_object), int(max_objects)
    if image_size < 32:
        raise ValueError(f"image_size must be >= 32, got {image_size}")
    if not 1 <= min_object < image_size // 2:
        raise ValueError(f"min_object must be in [1, image_size / 2), got {min_object}")
    if max_objects < 1:
        raise ValueError(f"max_objects must be >= 1, got {max_objects}")
    if not 0 <= fault_rate <= 1:
        raise ValueError(f"fault_rate must be in [0, 1], got {fault_rate}")
    out = Path(out_dir)
    for sub in ("images", "truth", "annotations"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    wrap = progress or (lambda items, desc: items)
    counts = {"train": int(n_train), "val": int(n_val), "test": int(n_test)}
    categories = [dict(c) for c in CATEGORIES]
    cat_ids = [c["id"] for c in categories]
    summary = {"seed": int(seed), "image_size": image_size, "categories": categories, "splits": {}}

    image_id, ann_id, group_id = 0, 0, 0
    total_images = sum(counts.values())
    for s_index, split in enumerate(SPLITS):
        images, anns = [], []
        hidden = 0
        groups = set()
        for i in wrap(range(counts[split]), f"synthetic {split} images"):
            rng = np.random.default_rng([int(seed), s_index, i])
            img, labels, n_hidden = render_image(rng, image_size, min_object=min_object,
                                                 max_objects=max_objects)
            image_id += 1
            name = f"{split}_{i:05d}.jpg"
            if not cv2.imwrite(str(out / "images" / name), img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
                raise OSError(f"{out / 'images' / name}: could not write the image")
            images.append({"id": image_id, "file_name": name, "width": image_size, "height": image_size})
            local_groups = {}
            for lab in labels:
                ann_id += 1
                g = 0
                if lab["group"]:
                    if lab["group"] not in local_groups:
                        group_id += 1
                        local_groups[lab["group"]] = group_id
                    g = local_groups[lab["group"]]
                    groups.add(g)
                x, y, w, h = lab["bbox"]
                anns.append({"id": ann_id, "image_id": image_id, "category_id": lab["category_id"],
                             "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0,
                             "visible": round(lab["visible"], 3), "group": g})
            hidden += n_hidden
        truth = {"info": {"description": f"mokuflow synthetic detection, {split}, seed {seed}"},
                 "images": images, "annotations": anns, "categories": categories}
        frng = np.random.default_rng([int(seed), s_index, 1 << 30])
        delivered, faults, ann_id = inject_faults(
            frng, truth, fault_rate=fault_rate, next_id=ann_id + 1,
            unknown_image_base=total_images + 1000)
        write_json(out / "truth" / f"instances_{split}.json", truth)
        write_json(out / "truth" / f"faults_{split}.json", faults)
        write_json(out / "annotations" / f"instances_{split}.json", delivered)
        per_cat = {c["name"]: 0 for c in categories}
        for a in anns:
            per_cat[_NAME[a["category_id"]]] += 1
        by_kind = {k: 0 for k in FAULT_KINDS}
        for f in faults:
            by_kind[f["kind"]] += 1
        summary["splits"][split] = {"images": len(images), "annotations": len(anns),
                                    "per_category": per_cat, "hidden": hidden,
                                    "crowd_groups": len(groups), "faults": by_kind}
    summary["per_category"] = {c["name"]: sum(s["per_category"][c["name"]] for s in summary["splits"].values())
                               for c in categories}
    summary["faults"] = {k: sum(s["faults"][k] for s in summary["splits"].values()) for k in FAULT_KINDS}
    summary["category_ids"] = cat_ids
    return summary


# ---------------------------------------------------------------------------------- an image

def _iou(a, b) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _extent(rng, size: int, lo: int) -> float:
    """Object size (long side, px), log-uniform inside three bands: ``SIZE_BANDS``."""
    a = max(lo * 1.5, SIZE_EDGES[0] * size)
    b = max(a * 1.2, SIZE_EDGES[1] * size)
    c = max(b * 1.2, SIZE_EDGES[2] * size)
    r = rng.random()
    p_small, p_medium = SIZE_BANDS[0], SIZE_BANDS[0] + SIZE_BANDS[1]
    lo_, hi_ = (lo, a) if r < p_small else (a, b) if r < p_medium else (b, c)
    return float(math.exp(rng.uniform(math.log(lo_), math.log(hi_))))


def _item(rng, kind, category_id, cx, cy, e, group=0):
    aspect = math.exp(rng.uniform(-math.log(ASPECT_MAX), math.log(ASPECT_MAX)))
    hue = CATEGORY_HUE[category_id] if category_id is not None else None  # distractors: any colour
    return {"kind": kind, "category_id": category_id, "cx": float(cx), "cy": float(cy), "hue": hue,
            "rx": e / 2 * math.sqrt(aspect), "ry": e / 2 / math.sqrt(aspect),
            "theta": float(rng.uniform(0, 2 * math.pi)), "e": e, "group": group}


def _layout(rng, size: int, min_object: int, max_objects: int) -> list:
    """Objects and distractors as draw units (a crowd is one unit, drawn member after member)."""
    cat_ids = [c["id"] for c in CATEGORIES]
    n_obj = int(rng.integers(1, max_objects + 1))
    placed: dict[int, list] = {}
    units = []

    def free(cat, cx, cy, e):
        box = (cx - e / 2, cy - e / 2, e, e)
        return all(_iou(box, b) < PLACE_MAX_IOU for b in placed.get(cat, []))

    if n_obj >= 3 and rng.random() < CROWD_PROB:
        cat = int(rng.choice(cat_ids))
        k = min(n_obj, int(rng.integers(3, 7)))
        lo = max(min_object, 0.06 * size)
        base = float(math.exp(rng.uniform(math.log(lo), math.log(max(lo * 1.1, 0.3 * size)))))
        members = []
        cx, cy = rng.uniform(0.15 * size, 0.85 * size, 2)
        for _ in range(30):
            if len(members) == k:
                break
            e = base * float(rng.uniform(0.85, 1.15))
            if members:
                ref = members[int(rng.integers(len(members)))]
                d = base * float(rng.uniform(0.55, 0.95))
                ang = rng.uniform(0, 2 * math.pi)
                cx, cy = ref["cx"] + d * math.cos(ang), ref["cy"] + d * math.sin(ang)
            if not (0 <= cx < size and 0 <= cy < size) or not free(cat, cx, cy, e):
                continue
            placed.setdefault(cat, []).append((cx - e / 2, cy - e / 2, e, e))
            members.append(_item(rng, _KIND_OF[cat], cat, cx, cy, e, group=1))
        if len(members) >= 2:
            units.append(members)
        n_obj -= len(members)
    for _ in range(max(n_obj, 0)):
        cat = int(rng.choice(cat_ids))
        e = _extent(rng, size, min_object)
        for _try in range(10):
            cx, cy = rng.uniform(0, size, 2)
            if free(cat, cx, cy, e):
                placed.setdefault(cat, []).append((cx - e / 2, cy - e / 2, e, e))
                units.append([_item(rng, _KIND_OF[cat], cat, cx, cy, e)])
                break
    for _ in range(int(rng.integers(DISTRACTORS_PER_IMAGE[0], DISTRACTORS_PER_IMAGE[1] + 1))):
        kind = DISTRACTORS[int(rng.integers(len(DISTRACTORS)))]
        e = float(math.exp(rng.uniform(math.log(min_object), math.log(0.5 * size))))
        cx, cy = rng.uniform(0, size, 2)
        units.append([_item(rng, kind, None, cx, cy, e)])
    # mostly large first, so small objects tend to stay visible; a crowd is drawn as one unit
    keys = [-math.log(sum(m["e"] for m in u) / len(u)) + float(rng.normal(0, 0.8)) for u in units]
    order = sorted(range(len(units)), key=lambda i: keys[i])
    return [m for i in order for m in units[i]]


def render_image(rng, size: int, *, min_object: int = 8, max_objects: int = 12):
    """One image (uint8 HxWx3, BGR) and its labels ``[{"category_id", "bbox", "visible", "group"}]``.

    Also returns how many objects were left unlabelled (mostly hidden, or a same-category
    near-duplicate of a more visible one).
    """
    import numpy as np

    img = background(rng, size)
    owner = np.full((size, size), -1, np.int32)
    items = _layout(rng, size, min_object, max_objects)
    info = []
    for idx, it in enumerate(items):
        alpha, tex, x0, y0 = render_patch(it["kind"], it, rng)
        h, w = alpha.shape
        full = int((alpha > 0.5).sum())
        ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + w, size), min(y0 + h, size)
        entry = {"full": full, "bbox": None}
        if ix1 > ix0 and iy1 > iy0 and full > 0:
            a = alpha[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0]
            region = img[iy0:iy1, ix0:ix1]
            region *= (1 - a)[..., None]
            region += tex[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] * a[..., None]
            m = a > 0.5
            owner[iy0:iy1, ix0:ix1][m] = idx
            if m.any():
                rows, cols = np.nonzero(m.any(1))[0], np.nonzero(m.any(0))[0]
                entry["bbox"] = [int(ix0 + cols[0]), int(iy0 + rows[0]),
                                 int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]
        info.append(entry)
    visible = np.bincount(owner.ravel() + 1, minlength=len(items) + 1)[1:]
    labels, hidden = [], 0
    for idx, it in enumerate(items):
        if it["category_id"] is None:
            continue
        e = info[idx]
        vis = visible[idx] / e["full"] if e["full"] else 0.0
        if e["bbox"] is None or vis < MIN_VISIBLE or min(e["bbox"][2:]) < 2:
            hidden += 1
            continue
        labels.append({"category_id": it["category_id"], "bbox": e["bbox"], "visible": float(vis),
                       "group": it["group"], "_order": idx})
    keep = []
    for lab in sorted(labels, key=lambda d: -d["visible"]):  # rare rendered near-duplicates
        if any(k["category_id"] == lab["category_id"] and _iou(k["bbox"], lab["bbox"]) >= RENDER_MAX_IOU
               for k in keep):
            hidden += 1
            continue
        keep.append(lab)
    keep.sort(key=lambda d: d["_order"])
    for lab in keep:
        del lab["_order"]
    # a crowd whose members mostly vanished is no crowd
    n_group = sum(1 for lab in keep if lab["group"])
    if n_group < 2:
        for lab in keep:
            lab["group"] = 0
    noisy = img + rng.normal(0, float(rng.uniform(2, 7)), img.shape).astype(np.float32)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8), keep, hidden


# ------------------------------------------------------------------------------------ faults

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
                if (nw >= 2 and nh >= 2 and cand != [x, y, w, h] and _iou(cand, [x, y, w, h]) > 0.5
                        and all(_iou(cand, o) < 0.9 for o in others)):
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
                            and _iou(cand, [x, y, w, h]) >= 0.96):
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
