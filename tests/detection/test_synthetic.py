"""Synthetic COCO detection data (determinism, valid COCO, scales, crowds, occlusion rule, faults) and
`detection acquire` (synthetic, local COCO layout with unreadable images, url via pooch, bad params)."""
from __future__ import annotations

import functools
import hashlib
import http.server
import json
import shutil
import tarfile
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from tasks.core import MokuflowError  # noqa: E402
from tasks.detection import acquire, synthetic  # noqa: E402
from tasks.detection.coco import box_iou, load_coco  # noqa: E402

SMALL = dict(n_train=6, n_val=3, n_test=3, image_size=96, min_object=8, max_objects=12, fault_rate=0.3)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    summary = synthetic.generate(out, seed=5, **SMALL)
    return out, summary


def _files(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_data(data, tmp_path):
    out, summary = data
    again = synthetic.generate(tmp_path / "again", seed=5, **SMALL)
    other = synthetic.generate(tmp_path / "other", seed=6, **SMALL)
    a, b = _files(out), _files(tmp_path / "again")
    assert len(a) == 12 + 9 and a == b
    assert again == summary
    c = _files(tmp_path / "other")
    assert c.keys() == a.keys()
    assert c["images/train_00000.jpg"] != a["images/train_00000.jpg"]
    assert c["truth/instances_train.json"] != a["truth/instances_train.json"]
    assert other != summary


def test_truth_is_valid_coco_with_six_non_contiguous_categories(data):
    from faster_coco_eval import COCO

    out, summary = data
    image_ids, ann_ids = set(), set()
    for split in synthetic.SPLITS:
        path = out / "truth" / f"instances_{split}.json"
        truth = load_coco(path)
        G = COCO(str(path))
        assert len(G.getImgIds()) == SMALL[f"n_{split}"] == len(truth["images"])
        cats = sorted(G.getCatIds())
        assert len(cats) >= 6 and cats != list(range(1, len(cats) + 1))  # non-contiguous like COCO
        assert {c["name"] for c in truth["categories"]} == {c["name"] for c in synthetic.CATEGORIES}
        assert len(G.getAnnIds()) == summary["splits"][split]["annotations"] > 0
        for im in truth["images"]:
            img = cv2.imread(str(out / "images" / im["file_name"]))
            assert img is not None and img.shape == (96, 96, 3) == (im["height"], im["width"], 3)
        sizes = {im["id"]: im for im in truth["images"]}
        for a in truth["annotations"]:
            x, y, w, h = a["bbox"]
            assert a["category_id"] in cats and a["image_id"] in sizes and a["iscrowd"] == 0
            assert w >= 2 and h >= 2 and x >= 0 and y >= 0 and x + w <= 96 and y + h <= 96
            assert a["area"] == w * h
        assert not image_ids & set(sizes) and not ann_ids & {a["id"] for a in truth["annotations"]}
        image_ids |= set(sizes)
        ann_ids |= {a["id"] for a in truth["annotations"]}
    counts = summary["per_category"]
    assert len(counts) == 6 and min(counts.values()) > 0, counts


def _truth(out):
    return {s: load_coco(out / "truth" / f"instances_{s}.json") for s in synthetic.SPLITS}


def test_sizes_span_small_to_large(data):
    out, _ = data
    sides = [max(a["bbox"][2:]) for t in _truth(out).values() for a in t["annotations"]]
    assert min(sides) < 16, min(sides)
    assert max(sides) > 96 / 2, max(sides)
    assert np.mean(np.array(sides) < 24) > 0.25  # plenty of small objects


def test_crowded_same_category_groups(data):
    out, summary = data
    groups = {}
    for t in _truth(out).values():
        for a in t["annotations"]:
            if a["group"]:
                groups.setdefault(a["group"], []).append(a)
    assert sum(s["crowd_groups"] for s in summary["splits"].values()) == len(groups) >= 2
    touching = 0
    for members in groups.values():
        assert len(members) >= 2
        assert len({(m["image_id"], m["category_id"]) for m in members}) == 1
        boxes = [m["bbox"] for m in members]
        grown = [[x - 1, y - 1, w + 2, h + 2] for x, y, w, h in boxes]
        touching += any(box_iou(grown[i], grown[j]) > 0 for i in range(len(boxes)) for j in range(i))
    assert touching >= 1
    assert any(len(m) >= 3 for m in groups.values())


def test_occlusion_rule_and_same_category_separation(data):
    out, summary = data
    for t in _truth(out).values():
        by = {}
        for a in t["annotations"]:
            assert a["visible"] >= synthetic.MIN_VISIBLE
            by.setdefault((a["image_id"], a["category_id"]), []).append(a["bbox"])
        for boxes in by.values():  # no real pair a 0.95 duplicate filter could remove
            assert all(box_iou(boxes[i], boxes[j]) < synthetic.RENDER_MAX_IOU
                       for i in range(len(boxes)) for j in range(i))
    assert sum(s["hidden"] for s in summary["splits"].values()) > 0  # some objects were too hidden
    assert any(a["visible"] < 0.9 for t in _truth(out).values() for a in t["annotations"])  # occlusion


def _hue(bgr) -> float:
    import colorsys

    b, g, r = (float(v) / 255 for v in bgr)
    return colorsys.rgb_to_hsv(r, g, b)[0] * 360


def test_each_category_has_its_own_colour_family_distractors_any_colour():
    from tasks.detection import sprites

    rng = np.random.default_rng(0)
    hues = sorted(synthetic.CATEGORY_HUE.values())
    assert set(synthetic.CATEGORY_HUE) == {c["id"] for c in synthetic.CATEGORIES}
    gap = min(b - a for a, b in zip(hues, hues[1:] + [hues[0] + 360]))
    assert gap > 2 * sprites.HUE_JITTER  # the families never overlap
    for cat, hue in synthetic.CATEGORY_HUE.items():
        item = synthetic._item(rng, synthetic._KIND_OF[cat], cat, 10, 10, 12)
        assert item["hue"] == hue
        for _ in range(50):
            c1, _c2 = sprites._colours(rng, item["hue"])
            d = abs((_hue(c1) - hue + 180) % 360 - 180)
            assert d <= sprites.HUE_JITTER + 1e-6, (cat, _hue(c1))
    distractor = synthetic._item(rng, "blob", None, 10, 10, 12)
    assert distractor["hue"] is None
    spread = [_hue(sprites._colours(rng, None)[0]) for _ in range(300)]
    # any colour: some far from every category's family
    assert any(min(abs((h - c + 180) % 360 - 180) for c in hues) > sprites.HUE_JITTER for h in spread)


def test_aspects_span_the_configured_range():
    rng = np.random.default_rng(1)
    aspects = []
    for _ in range(400):
        it = synthetic._item(rng, "star", 3, 0, 0, 20)
        aspects.append(it["rx"] / it["ry"])
    a = np.array(aspects)
    assert a.min() >= 1 / synthetic.ASPECT_MAX - 1e-9 and a.max() <= synthetic.ASPECT_MAX + 1e-9
    assert a.min() < 0.7 and a.max() > 1.45  # wide shapes both ways, not only near-square ones


def test_every_fault_kind_injected_and_listed(data):
    out, summary = data
    kinds = {}
    for split in synthetic.SPLITS:
        truth = load_coco(out / "truth" / f"instances_{split}.json")
        raw = load_coco(out / "annotations" / f"instances_{split}.json")
        faults = json.loads((out / "truth" / f"faults_{split}.json").read_text())
        assert len(faults) == round(SMALL["fault_rate"] * len(truth["annotations"]))
        t = {a["id"]: a for a in truth["annotations"]}
        r = {a["id"]: a for a in raw["annotations"]}
        listed = {f["id"]: f["kind"] for f in faults}
        for f in faults:
            kinds[f["kind"]] = kinds.get(f["kind"], 0) + 1
            assert f["kind"] in synthetic.FAULT_KINDS and f["id"] in r
            if f["kind"] in ("jittered", "partly_outside"):
                assert f["id"] in t and r[f["id"]]["bbox"] != t[f["id"]]["bbox"]
            else:
                assert f["id"] not in t and f["source_id"] in t
        # every difference between truth and delivery is listed
        assert set(r) - set(t) == {i for i, k in listed.items() if k not in ("jittered", "partly_outside")}
        changed = {i for i in t if r[i]["bbox"] != t[i]["bbox"]}
        assert changed == {i for i, k in listed.items() if k in ("jittered", "partly_outside")}
    assert set(kinds) == set(synthetic.FAULT_KINDS), kinds
    assert kinds == summary["faults"]


# ---------------------------------------------------------------------------------- acquire

def _params(root: Path, **data) -> dict:
    return {"_root": str(root), "_file": str(root / "params.yaml"), "detection": {
        "data": {"source": "synthetic", "raw_dir": "data/raw", "clean_dir": "data/clean",
                 "coco": {"images": None, "annotations": {"train": None, "val": None, "test": None}},
                 "url": {"href": None, "sha256": None, "images": "images", "annotations": {},
                         "cache_dir": ".cache/downloads"}, **data},
        "synthetic": {"seed": 3, **SMALL}, "clean": {"duplicate_iou": 0.95}}}


def test_acquire_synthetic_layout(tmp_path):
    summary = acquire.run(_params(tmp_path))
    raw = tmp_path / "data" / "raw"
    assert summary["n_unreadable"] == 0 and summary["source"] == "synthetic"
    meta = json.loads((raw / "acquire.json").read_text())
    assert meta["unreadable"] == [] and meta["synthetic"]["faults"]["duplicate"] > 0
    for split in synthetic.SPLITS:
        for sub in ("annotations", "truth"):
            assert (raw / sub / f"instances_{split}.json").is_file()
        assert (raw / "truth" / f"faults_{split}.json").is_file()
        assert meta["splits"][split]["images"] == SMALL[f"n_{split}"]
    assert len(list((raw / "images").glob("*.jpg"))) == 12
    assert not [p for p in tmp_path.rglob(".*") if p.name not in (".cache", ".mokuflow-owned")]  # no temp leftovers


def _local_coco(tmp_path: Path) -> Path:
    """A COCO layout (from the synthetic data) with one truncated, one missing and one non-image file."""
    src = tmp_path / "src"
    synthetic.generate(src / "gen", seed=1, **SMALL)
    shutil.copytree(src / "gen" / "images", src / "imgs")
    b = (src / "imgs" / "train_00001.jpg").read_bytes()
    (src / "imgs" / "train_00001.jpg").write_bytes(b[: len(b) // 2])
    (src / "imgs" / "train_00002.jpg").unlink()
    (src / "imgs" / "val_00000.jpg").write_bytes(b"not an image")
    for s in ("train", "val"):
        shutil.copy(src / "gen" / "annotations" / f"instances_{s}.json", src / f"{s}.json")
    return src


def _check_unreadable(raw: Path, src: Path, splits: tuple) -> dict:
    meta = json.loads((raw / "acquire.json").read_text())
    reasons = {Path(u["path"]).name: u["reason"] for u in meta["unreadable"]}
    expect = {"train_00001.jpg": "truncated", "train_00002.jpg": "missing"}
    if "val" in splits:
        expect["val_00000.jpg"] = "not a readable image"
    assert reasons.keys() == expect.keys()
    assert all(expect[k] in reasons[k] for k in expect)
    for s in splits:
        given = load_coco(src / f"{s}.json")
        kept = load_coco(raw / "annotations" / f"instances_{s}.json")
        bad = {u["image_id"] for u in meta["unreadable"] if u["split"] == s}
        gone = [a for a in given["annotations"] if a["image_id"] in bad]
        assert meta["splits"][s]["dropped_images"] == len(bad)
        assert meta["splits"][s]["dropped_annotations"] == len(gone) > 0
        assert len(kept["annotations"]) == len(given["annotations"]) - len(gone)
        assert {im["id"] for im in kept["images"]} == {im["id"] for im in given["images"]} - bad
        for im in kept["images"]:
            assert (raw / "images" / im["file_name"]).is_file()
    return meta


def test_acquire_local_coco_drops_unreadable_images(tmp_path):
    src = _local_coco(tmp_path)
    params = _params(tmp_path, source="coco", coco={"images": "src/imgs", "annotations": {
        "train": "src/train.json", "val": "src/val.json", "test": None}})
    summary = acquire.run(params)
    raw = tmp_path / "data" / "raw"
    assert summary["n_unreadable"] == 3 and set(summary["splits"]) == {"train", "val"}
    _check_unreadable(raw, src, ("train", "val"))
    assert not (raw / "truth").exists()


@pytest.mark.parametrize("change, key", [
    ({"source": "coco"}, "detection.data.coco.images"),
    ({"source": "coco", "coco": {"images": "nope", "annotations": {"train": "x.json"}}}, "detection.data.coco.images"),
    ({"source": "coco", "coco": {"images": ".", "annotations": {}}}, "detection.data.coco.annotations"),
    ({"source": "coco", "coco": {"images": ".", "annotations": {"train": "gone.json"}}},
     "detection.data.coco.annotations.train"),
    ({"source": "coco", "coco": {"images": ".", "annotations": {"trian": "x.json"}}}, "detection.data.coco.annotations.trian"),
    ({"source": "url"}, "detection.data.url.href"),
])
def test_acquire_bad_params_name_the_key(tmp_path, change, key):
    raw = tmp_path / "data" / "raw"
    raw.mkdir(parents=True)
    (raw / "keep.txt").write_text("earlier data")
    with pytest.raises(MokuflowError) as err:
        acquire.run(_params(tmp_path, **change))
    assert key in str(err.value) and "\n" not in str(err.value)
    assert (raw / "keep.txt").read_text() == "earlier data"


@pytest.mark.parametrize("key, value, needle", [
    ("detection.data.source", "kaggle", "detection.data.source"),
    ("detection.synthetic.image_size", 8, "detection.synthetic.image_size"),
    ("detection.synthetic.n_train", 0, "detection.synthetic.n_train"),
    ("detection.synthetic.min_object", 40, "min_object must be below image_size / 2"),
])
def test_bad_params_are_refused_once_by_the_schema_naming_the_key(tmp_path, key, value, needle):
    """Validation happens in the schema, when params are loaded, before any stage runs."""
    from tasks.core import load_params
    from tests.conftest import write_tiny_params

    with pytest.raises(MokuflowError, match=needle) as err:
        load_params(write_tiny_params(tmp_path, {key: value}))
    assert "\n" not in str(err.value) and "params.yaml" in str(err.value)


def test_acquire_url_archive_with_pooch(tmp_path):
    import pooch  # noqa: F401  (declared dependency: a broken import must fail)
    src = _local_coco(tmp_path)
    archive = tmp_path / "serve" / "dataset.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as t:
        t.add(src / "imgs", arcname="dataset/images")
        t.add(src / "train.json", arcname="dataset/annotations/train.json")
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(archive.parent))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = {"href": f"http://127.0.0.1:{server.server_port}/dataset.tar.gz", "sha256": sha, "images": "images",
               "annotations": {"train": "annotations/train.json"}, "cache_dir": ".cache/downloads"}
        summary = acquire.run(_params(tmp_path, source="url", url=url))
        assert summary["sha256"] == sha and summary["n_unreadable"] == 2
        meta = _check_unreadable(tmp_path / "data" / "raw", src, ("train",))
        assert all(not Path(u["path"]).is_absolute() for u in meta["unreadable"])  # archive-relative
        with pytest.raises(MokuflowError, match="does not match") as err:  # a wrong pin
            acquire.run(_params(tmp_path, source="url", url={**url, "sha256": "0" * 64}))
        assert url["href"] in str(err.value) and "\n" not in str(err.value)
        assert (tmp_path / "data" / "raw" / "acquire.json").is_file()  # earlier raw data intact
    finally:
        server.shutdown()
        server.server_close()
