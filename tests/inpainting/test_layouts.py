"""Real-format loaders (DAVIS, YouTube-VOS, ProPainter object removal) on the fixtures and on hand-made
folders; masks unified to ids, speckles / holes cleaned and counted; scribbles checked."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from tasks.core import MokuflowError
from tasks.inpainting import layouts
from tasks.inpainting.davis import write_palette_png
from tests.inpainting.conftest import BMX_MASK, INPAINTING, need


def test_davis_fixture_listing_and_cleanup(davis):
    listing = layouts.load(davis)
    assert listing.layout == "davis"
    assert listing.names == ["bear", "tennis"]  # blackswan has annotations and scribbles but no frames
    bear = listing["bear"]
    assert bear.n_frames == 2 and bear.annotated == [0, 1]
    assert [p.name for p in bear.scribbles] == ["001.json", "002.json"]
    assert all(m.parent.name == "bear" and m.parent.parent.name == "480p" for m in bear.masks)
    masks, report = layouts.clean_sequence(listing["tennis"])
    assert report["kinds"] == {"palette": 2} and report["object_ids"] == [1, 2]
    assert set(masks) == {"00000", "00001"} and masks["00000"].shape == (480, 854)
    assert (masks["00000"] == 255).any()  # DAVIS marks objects' edges void; cleaning leaves void alone
    for key in ("speckles", "speckle_pixels", "holes", "hole_pixels"):
        assert report[key] >= 0
    for seq in listing.sequences:
        _, rep = layouts.clean_sequence(seq)
        checked = layouts.validate_sequence_scribbles(seq, object_ids=rep["object_ids"])
        assert len(checked) == len(seq.scribbles) and all(s.n_frames == seq.n_frames for s in checked)
    with pytest.raises(MokuflowError, match=r"tennis/001.json: .*object_id 2 is not an object"):
        layouts.validate_scribbles(listing["tennis"].scribbles[0], n_frames=2, object_ids=[1])
    with pytest.raises(MokuflowError, match="bear/001.json: 2 frames of scribbles, the video has 5"):
        layouts.validate_scribbles(bear.scribbles[0], n_frames=5, object_ids=[1])
    with pytest.raises(MokuflowError, match="no sequence 'cows'"):
        layouts.load_davis(davis, sequences=["cows"])


def test_object_removal_fixture(bmx):
    need(BMX_MASK)
    listing = layouts.load_object_removal(bmx)
    seq = listing.sequences[0]
    assert listing.layout == "object-removal" and seq.name == "bmx-trees" and seq.n_frames == 80
    assert all(m.stem == f.stem for f, m in zip(seq.frames, seq.masks))
    assert layouts.load(INPAINTING / "object_removal").names == ["bmx-trees"]  # the folder of pairs
    masks, report = layouts.clean_sequence(seq, min_area=20)
    assert report["kinds"] == {"binary255": 80} and report["n_masks"] == 80 and report["object_ids"] == [1]
    raw, _ = layouts.read_object_ids(seq.masks[0])
    assert set(np.unique(raw).tolist()) == {0, 1} and raw.shape == (240, 432)
    changed = int((masks["00000"] != raw).sum())
    assert changed <= report["speckle_pixels"] + report["hole_pixels"]


def test_object_removal_single_mask_and_missing_masks(tmp_path):
    frames, masks = tmp_path / "v", tmp_path / "v_mask"
    frames.mkdir()
    masks.mkdir()
    for i in range(3):
        cv2.imwrite(str(frames / f"{i:03d}.png"), np.full((16, 20, 3), 80, np.uint8))
    cv2.imwrite(str(masks / "only.png"), np.zeros((16, 20), np.uint8))
    seq = layouts.load_object_removal(frames).sequences[0]
    assert seq.masks == [masks / "only.png"] * 3 and seq.meta["single_mask"]
    cv2.imwrite(str(masks / "001.png"), np.zeros((16, 20), np.uint8))
    with pytest.raises(MokuflowError, match="v_mask: no mask for frame 000.png"):
        layouts.load_object_removal(frames)
    with pytest.raises(MokuflowError, match="nowhere: masks folder not found"):
        layouts.load_object_removal(frames, tmp_path / "nowhere")


def test_youtube_vos_layout(tmp_path):
    root = tmp_path / "ytvos"
    for seq in ("a1", "b2"):
        (root / "JPEGImages" / seq).mkdir(parents=True)
        (root / "Annotations" / seq).mkdir(parents=True)
        for i in range(0, 10, 1):
            cv2.imwrite(str(root / "JPEGImages" / seq / f"{i:05d}.jpg"), np.full((12, 16, 3), 60, np.uint8))
        for i in range(0, 10, 5):  # annotations every 5th frame, as YouTube-VOS ships them
            lab = np.zeros((12, 16), np.uint8)
            lab[2:6, 3:9] = 1
            lab[7:11, 10:15] = 2
            write_palette_png(root / "Annotations" / seq / f"{i:05d}.png", lab)
    meta = {"videos": {"a1": {"objects": {"1": {"category": "dog", "frames": ["00000", "00005"]},
                                          "2": {"category": "cat", "frames": ["00000"]}}}}}
    (root / "meta.json").write_text(json.dumps(meta))
    listing = layouts.load(root)
    assert listing.layout == "youtube-vos" and listing.names == ["a1", "b2"]
    a1 = listing["a1"]
    assert a1.n_frames == 10 and a1.annotated == [0, 5] and a1.meta["object_ids"] == [1, 2]
    assert listing["b2"].meta["object_ids"] == []
    masks, report = layouts.clean_sequence(a1)
    assert report["kinds"] == {"palette": 2} and report["object_ids"] == [1, 2] and set(masks) == {"00000", "00005"}
    (root / "meta.json").write_text("{}")
    with pytest.raises(MokuflowError, match="meta.json: not a YouTube-VOS meta.json"):
        layouts.load_youtube_vos(root)


def test_unify_mask_kinds():
    grey = np.zeros((8, 8), np.uint8)
    grey[2:6, 2:6] = 200
    grey[2, 2] = 90  # anti-aliased edge below the threshold
    ids, kind = layouts.unify_mask(grey)
    assert kind == "grey" and ids.max() == 1 and ids[2, 2] == 0 and ids[3, 3] == 1
    assert layouts.unify_mask((grey > 0).astype(np.uint8))[1] == "binary"
    b255, kind = layouts.unify_mask(np.where(grey > 0, 255, 0).astype(np.uint8))
    assert kind == "binary255" and set(np.unique(b255).tolist()) == {0, 1}
    few = np.zeros((8, 8), np.uint8)
    few[:2], few[5:] = 1, 3
    kept, kind = layouts.unify_mask(few)
    assert kind == "ids" and np.array_equal(kept, few)
    pal, kind = layouts.unify_mask(np.where(grey > 0, 255, 2).astype(np.uint8), palette=True)
    assert kind == "palette" and set(np.unique(pal).tolist()) == {2, 255}


def test_clean_mask_removes_speckles_fills_holes_and_counts_them():
    ids = np.zeros((40, 40), np.uint8)
    ids[5:25, 5:25] = 1
    ids[12:14, 12:14] = 0        # a 4 px hole inside object 1
    ids[30, 30] = 1              # a 1 px speckle of object 1
    ids[33:36, 2:5] = 2          # object 2: small, but its only component: kept
    ids[0, 10:12] = 255          # void stays void
    out, rep = layouts.clean_mask(ids, min_area=10)
    assert rep == {"speckles": 1, "speckle_pixels": 1, "holes": 1, "hole_pixels": 4}
    assert out[30, 30] == 0 and np.all(out[12:14, 12:14] == 1) and np.all(out[33:36, 2:5] == 2)
    assert np.all(out[0, 10:12] == 255)
    same, rep0 = layouts.clean_mask(ids, min_area=0)
    assert np.array_equal(same, ids) and rep0["speckles"] == rep0["holes"] == 0
    edge = np.zeros((10, 10), np.uint8)
    edge[:, :5] = 1
    edge[0:2, 0:2] = 0  # background at the frame's edge: not a hole
    assert layouts.clean_mask(edge, min_area=10)[1]["holes"] == 0


def test_refusals_name_the_folder(tmp_path):
    with pytest.raises(MokuflowError, match="not a DAVIS folder"):
        layouts.load_davis(tmp_path)
    with pytest.raises(MokuflowError, match="folder not found"):
        layouts.load(tmp_path / "absent")
    (tmp_path / "m.png").write_bytes(b"nope")
    with pytest.raises(MokuflowError, match="m.png: not a readable mask"):
        layouts.read_object_ids(tmp_path / "m.png")
