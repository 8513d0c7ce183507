"""Annotation cleaning: finds exactly the injected faults, each rule by hand (incl. the IoU 0.95 edge),
the stage's layouts, and one-line errors through the CLI with the earlier output left whole."""
from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.core import MokuflowError
from tasks.detection import clean, synthetic
from tasks.detection.coco import (
    DROP_REASONS,
    FIX_REASONS,
    category_names,
    clean_coco,
    label_map,
    load_coco,
    split_items,
    validate_coco,
)
from tasks.detection.faults import CLEAN_REASON

REPO = Path(__file__).resolve().parents[2]
SMALL = dict(n_train=6, n_val=3, n_test=3, image_size=96, min_object=8, max_objects=12, fault_rate=0.3)


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    out = tmp_path_factory.mktemp("raw")
    synthetic.generate(out, seed=7, **SMALL)
    return out


def _expected(faults: list) -> dict:
    exp = {"kept": None, "dropped": {r: 0 for r in DROP_REASONS}, "fixed": {r: 0 for r in FIX_REASONS}}
    for f in faults:
        reason = CLEAN_REASON[f["kind"]]
        if reason in exp["dropped"]:
            exp["dropped"][reason] += 1
        elif reason in exp["fixed"]:
            exp["fixed"][reason] += 1
    return exp


@pytest.mark.parametrize("split", synthetic.SPLITS)
def test_cleaner_finds_exactly_the_injected_faults(raw, split):
    delivered = load_coco(raw / "annotations" / f"instances_{split}.json")
    truth = load_coco(raw / "truth" / f"instances_{split}.json")
    faults = json.loads((raw / "truth" / f"faults_{split}.json").read_text())
    cleaned, report = clean_coco(delivered)
    exp = _expected(faults)
    assert report["dropped"] == exp["dropped"] and report["fixed"] == exp["fixed"]
    assert sum(exp["dropped"].values()) > 0
    t = {a["id"]: a for a in truth["annotations"]}
    c = {a["id"]: a for a in cleaned["annotations"]}
    assert report["kept"] == len(c) == len(t) and c.keys() == t.keys()
    jittered = {f["id"] for f in faults if f["kind"] == "jittered"}
    for i, a in t.items():
        if i in jittered:
            assert c[i]["bbox"] != a["bbox"]
        else:
            assert c[i]["bbox"] == a["bbox"], (i, c[i]["bbox"], a["bbox"])
            assert c[i]["area"] == a["area"] and c[i]["category_id"] == a["category_id"]
    validate_coco(cleaned)


def _coco(anns, images=((1, 100, 80), (2, 200, 200))):
    return {"images": [{"id": i, "file_name": f"{i}.jpg", "width": w, "height": h} for i, w, h in images],
            "categories": [{"id": 1, "name": "a"}, {"id": 3, "name": "b"}],
            "annotations": [{"id": i, "image_id": img, "category_id": cat, "bbox": box, "iscrowd": 0}
                            for i, img, cat, box in anns]}


def _ids(coco):
    return [a["id"] for a in coco["annotations"]]


NAN = float("nan")
CASES = {  # name: (annotations after a kept [10, 10, 20, 20] of category 1 on image 1, reason or None)
    "unknown image": ([(2, 99, 1, [10, 10, 20, 20])], "unknown_image"),
    "unknown category": ([(2, 1, 2, [10, 10, 20, 20])], "unknown_category"),
    "zero width": ([(2, 1, 1, [10, 10, 0, 20])], "degenerate"),
    "negative height": ([(2, 1, 1, [10, 10, 20, -3])], "degenerate"),
    "NaN width": ([(2, 1, 1, [10, 10, NAN, 20])], "degenerate"),
    "infinite x": ([(2, 1, 1, [float("inf"), 10, 5, 5])], "degenerate"),
    "right of the image": ([(2, 1, 1, [100, 10, 5, 5])], "outside"),   # touches the edge: no overlap
    "above the image": ([(2, 1, 1, [10, -5, 5, 5])], "outside"),
    "far away": ([(2, 1, 1, [500, 500, 5, 5])], "outside"),
    "partly outside": ([(2, 1, 1, [-5, 70, 20, 20])], "clipped"),
    "exact duplicate": ([(2, 1, 1, [10, 10, 20, 20])], "duplicate"),
    "same box, other category": ([(2, 1, 3, [10, 10, 20, 20])], None),
    "same box, other image": ([(2, 2, 1, [10, 10, 20, 20])], None),
    "moderate overlap": ([(2, 1, 1, [12, 10, 20, 20])], None),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_rule_by_hand(case):
    anns, reason = CASES[case]
    coco = _coco([(1, 1, 1, [10, 10, 20, 20])] + anns)
    before = copy.deepcopy(coco)
    cleaned, report = clean_coco(coco)
    assert json.dumps(coco, sort_keys=True) == json.dumps(before, sort_keys=True)  # input untouched
    assert set(report) == {"kept", "dropped", "fixed"}
    assert set(report["dropped"]) == set(DROP_REASONS) and set(report["fixed"]) == set(FIX_REASONS)
    counts = {**report["dropped"], **report["fixed"]}
    assert counts == {r: int(r == reason) for r in counts}
    kept = 1 if reason in DROP_REASONS else 2
    assert report["kept"] == kept == len(cleaned["annotations"])
    assert cleaned["images"] == coco["images"] and cleaned["categories"] == coco["categories"]
    assert _ids(cleaned)[0] == 1 and cleaned["annotations"][0]["bbox"] == [10, 10, 20, 20]
    if reason == "clipped":
        a = cleaned["annotations"][1]
        assert a["id"] == 2 and a["bbox"] == [0, 70, 15, 10] and a["area"] == 150


def test_duplicate_iou_edge():
    # IoU([0,0,100,100], [0,0,95,100]) is exactly 0.95: a duplicate; 94.9 wide (IoU 0.949) is not
    images = ((2, 200, 200), (3, 200, 200), (4, 200, 200))
    coco = _coco([(1, 2, 1, [0, 0, 100, 100]), (2, 2, 1, [0, 0, 95, 100]),
                  (3, 3, 1, [0, 0, 100, 100]), (4, 3, 1, [0, 0, 94.9, 100]),
                  (5, 4, 1, [0, 0, 100, 100]), (6, 4, 1, [5, 0, 95, 100])], images=images)
    cleaned, report = clean_coco(coco)
    assert _ids(cleaned) == [1, 3, 4, 5] and report["dropped"]["duplicate"] == 2
    cleaned, report = clean_coco(coco, duplicate_iou=0.96)
    assert _ids(cleaned) == [1, 2, 3, 4, 5, 6] and report["dropped"]["duplicate"] == 0
    # compared with boxes kept earlier only: 2 against a dropped 1 does not count
    cleaned, _ = clean_coco(_coco([(1, 2, 1, [0, 0, 0, 100]), (2, 2, 1, [0, 0, 100, 100])]))
    assert _ids(cleaned) == [2]


def test_order_of_checks():
    coco = _coco([
        (1, 99, 2, [0, 0, 0, 0]),         # unknown image beats unknown category and degenerate
        (2, 1, 2, [500, 0, -1, 5]),       # unknown category beats degenerate and outside
        (3, 1, 1, [500, 0, 0, 5]),        # degenerate beats outside
        (4, 1, 1, [90, 70, 30, 30]),      # clipped to [90, 70, 10, 10] ...
        (5, 1, 1, [90, 70, 10, 10]),      # ... so this is its duplicate (clipping comes first)
        (7, 1, 1, [0, 0, 10, 10]),        # kept
        (6, 1, 1, [-50, -50, 60, 60]),    # clipped to [0, 0, 10, 10], a duplicate of 7: counts as duplicate only
    ])
    cleaned, report = clean_coco(coco)
    assert report["dropped"] == {"degenerate": 1, "outside": 0, "duplicate": 2, "unknown_category": 1,
                                 "unknown_image": 1}
    assert report["fixed"] == {"clipped": 1} and report["kept"] == 2
    assert [(a["id"], a["bbox"]) for a in cleaned["annotations"]] == [(4, [90, 70, 10, 10]), (7, [0, 0, 10, 10])]


def test_clean_output_is_valid_coco_and_empty_report_has_every_reason(tmp_path):
    from faster_coco_eval import COCO

    coco = _coco([(1, 1, 1, [10, 10, 20, 20]), (2, 1, 3, [-1, -1, 5, 5])])
    coco["info"] = {"description": "x"}
    cleaned, report = clean_coco(coco)
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cleaned))
    assert len(COCO(str(path)).getAnnIds()) == 2 and cleaned["info"] == {"description": "x"}
    assert cleaned["annotations"][1]["area"] == 16
    _, report = clean_coco(cleaned)
    assert report == {"kept": 2, "dropped": {r: 0 for r in DROP_REASONS}, "fixed": {"clipped": 0}}


def test_split_items_and_category_helpers(tmp_path):
    coco = _coco([(1, 2, 3, [1, 2, 3, 4]), (2, 2, 1, [5, 6, 7, 8]), (3, 1, 1, [0, 0, 5, 5])])
    coco["annotations"].append({"id": 4, "image_id": 1, "category_id": 1, "bbox": [0, 0, 9, 9], "iscrowd": 1})
    items = split_items(coco, tmp_path / "imgs")
    assert items == [(str((tmp_path / "imgs" / "1.jpg").resolve()), [[0.0, 0.0, 5.0, 5.0]], [1]),
                     (str((tmp_path / "imgs" / "2.jpg").resolve()), [[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]], [3, 1])]
    assert category_names(coco) == {1: "a", 3: "b"} and label_map(coco) == {1: 0, 3: 1}


# -------------------------------------------------------------------------------------- stage

def _params(tmp_path: Path, raw_dir: Path) -> dict:
    """Loaded-params shape (what the stage functions take), rooted in tmp_path."""
    return {"_root": str(tmp_path), "_file": str(tmp_path / "params.yaml"),
            "detection": {"data": {"source": "synthetic", "raw_dir": str(raw_dir), "clean_dir": "clean_default"},
                          "synthetic": {"seed": 1, **SMALL}, "clean": {"duplicate_iou": 0.95}}}


def test_stage_default_layout(raw, tmp_path):
    summary = clean.run(_params(tmp_path, raw))
    out = tmp_path / "clean_default"
    assert Path(summary["out"]) == out
    meta = json.loads((out / "clean.json").read_text())
    assert meta["images_dir"] == "<raw_dir>/images" and meta["duplicate_iou"] == 0.95
    assert str(tmp_path) not in (out / "clean.json").read_text()  # no machine-specific path in the data
    for split in synthetic.SPLITS:
        report = json.loads((out / split / "cleanup.json").read_text())
        faults = json.loads((raw / "truth" / f"faults_{split}.json").read_text())
        exp = _expected(faults)
        assert report["dropped"] == exp["dropped"] and report["fixed"] == exp["fixed"]
        assert meta["splits"][split] == report
        cleaned = load_coco(out / split / "instances.json")
        assert report["kept"] == len(cleaned["annotations"])
        for path, boxes, cats in split_items(cleaned, raw / "images"):
            assert Path(path).is_file() and len(boxes) == len(cats)
    assert not list(out.rglob("*.jpg"))  # images stay in raw_dir


def _cli(annotations: Path, out: Path) -> int:
    """Exit code of `mokuflow detection clean --annotations A --out O` (the repo's params.yaml)."""
    from tasks.cli import main

    return main(["detection", "clean", "--params", str(REPO / "params.yaml"), "--annotations", str(annotations),
                 "--out", str(out)])


BAD = {
    "not json": ("{ not json", "not JSON"),
    "results list": ('[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}]', "not a COCO instances file"),
    "no images": ('{"annotations": [], "categories": []}', "no 'images' list"),
    "bad bbox": (json.dumps(_coco([(17, 1, 1, [1, 2, 3])])), "annotation 17: bbox must be 4 numbers"),
    "string id": (json.dumps(_coco([("a", 1, 1, [1, 2, 3, 4])])), r"annotations\[0\]: id must be an integer"),
    "bad width": (json.dumps({**_coco([]), "images": [{"id": 1, "file_name": "x", "width": 0, "height": 5}]}),
                  "image 1: width must be a positive number"),
    "not utf-8": (b"\xff\xfe\x00garbage", "not JSON"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_naming_the_file_and_keeps_output(raw, tmp_path, case, capsys):
    text, message = BAD[case]
    bad = tmp_path / "bad.json"
    bad.write_bytes(text if isinstance(text, bytes) else text.encode())
    out = tmp_path / "out"
    good = raw / "annotations" / "instances_val.json"
    assert _cli(good, out) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(before) == {"instances.json", "cleanup.json", ".mokuflow-owned"}
    assert set(json.loads(before["cleanup.json"])) == {"kept", "dropped", "fixed"}
    with pytest.raises(MokuflowError, match=message) as err:
        clean.clean_file(bad, out)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)
    capsys.readouterr()
    assert _cli(bad, out) == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and str(bad) in lines[0] and "error" in lines[0], lines
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_annotations_without_out_and_missing_raw_are_errors(tmp_path):
    params = _params(tmp_path, tmp_path / "no_raw")
    with pytest.raises(MokuflowError, match="--out"):
        clean.run(params, annotations=str(tmp_path / "x.json"))
    with pytest.raises(MokuflowError, match="no_raw"):
        clean.run(params)
    with pytest.raises(MokuflowError, match="not found") as err:
        clean.run(params, annotations=str(tmp_path / "x.json"), out=str(tmp_path / "o"))
    assert "x.json" in str(err.value) and not (tmp_path / "o").exists()
    params["detection"]["clean"]["duplicate_iou"] = 1.5
    with pytest.raises(MokuflowError, match="detection.clean.duplicate_iou"):
        clean.run(params)


def test_stage_modules_import_nothing_heavy():
    code = ("import sys; import tasks.detection.acquire, tasks.detection.clean, tasks.detection.score, "
            "tasks.detection.synthetic, tasks.detection.coco, tasks.detection.cocoeval; "
            "heavy = [m for m in ('torch', 'cv2', 'mlflow', 'pandas', 'lightning', 'faster_coco_eval', 'numpy') "
            "if m in sys.modules]; assert not heavy, heavy")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_nan_box_survives_loading(tmp_path):
    path = tmp_path / "nan.json"
    path.write_text(json.dumps(_coco([(1, 1, 1, [1, 2, float("nan"), 4])])))
    coco = load_coco(path)
    assert math.isnan(coco["annotations"][0]["bbox"][2])
    assert clean_coco(coco)[1]["dropped"]["degenerate"] == 1


# ------------------------------------------------------------------------- random malformed files

@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_malformed_coco_is_cleaned_or_refused_in_one_line(tmp_path_factory, data, capsys):
    """Whatever a labelling tool or a hostile file holds: exit 0 with a valid COCO output, or exit 2
    with one line naming the file and the previous output intact. Never anything else."""
    from tasks.detection.coco import load_coco

    root = tmp_path_factory.mktemp("fuzz")
    good = root / "good.json"
    good.write_text(json.dumps(_coco([(1, 1, 1, [1, 2, 3, 4]), (2, 1, 1, [2, 2, 3, 4])])))
    out = root / "out"
    assert _cli(good, out) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()

    scalar = st.one_of(st.none(), st.booleans(), st.integers(-5, 300), st.floats(allow_nan=True, allow_infinity=True),
                       st.text(max_size=4))
    bbox = st.one_of(st.lists(st.one_of(st.integers(-50, 300), st.floats(-50, 300)), min_size=0, max_size=5), scalar)
    ann = st.fixed_dictionaries({"id": st.one_of(st.integers(0, 6), scalar), "image_id": st.one_of(st.integers(0, 3), scalar),
                                 "category_id": st.one_of(st.integers(0, 3), scalar), "bbox": bbox})
    doc = data.draw(st.one_of(
        st.fixed_dictionaries({"images": st.just([{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80}]),
                               "categories": st.just([{"id": 1, "name": "x"}]),
                               "annotations": st.lists(ann, max_size=6)}),
        st.dictionaries(st.sampled_from(["images", "annotations", "categories", "info"]), scalar, max_size=3),
        st.lists(scalar, max_size=3), scalar))
    bad = root / "bad.json"
    bad.write_text(json.dumps(doc, allow_nan=True))
    rc = _cli(bad, out)
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip() and not ln.startswith("[mokuflow]")]
    if rc == 0:
        clean_doc = load_coco(out / "instances.json")  # valid COCO, by the same validator
        assert all(a["bbox"][2] > 0 and a["bbox"][3] > 0 for a in clean_doc["annotations"])
    else:
        assert rc == 2 and len(err) == 1 and str(bad) in err[0], err
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
