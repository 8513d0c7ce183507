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

Image and annotation ids are unique across the splits. The delivered annotations are the truth
plus a labelling tool's faults: :mod:`tasks.detection.faults` says which.
Deterministic by seed (each image has its own seeded stream: changing ``n_train`` keeps the others).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path

from tasks.detection.coco import box_iou
from tasks.detection.faults import FAULT_KINDS, inject_faults
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
        return all(box_iou(box, b) < PLACE_MAX_IOU for b in placed.get(cat, []))

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
        if any(k["category_id"] == lab["category_id"] and box_iou(k["bbox"], lab["bbox"]) >= RENDER_MAX_IOU
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
