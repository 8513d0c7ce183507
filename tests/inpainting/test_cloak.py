"""cloak end to end on a folder and a video (counts, stems, sizes, the MP4's frames), model files, and
every bad input as one line with the output folder untouched."""
from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
import torch

from models.common.frames import read_image, read_mask, write_mp4
from models.inpainting.inference import ModelFileError, load_model, save_model
from models.inpainting.network import InpaintingNet
from tasks.core import MokuflowError
from tasks.inpainting import cloak as cloak_stage
from tasks.inpainting import synthetic
from tasks.inpainting.cloak import cloak

torch.set_num_threads(1)
SEQ = "synth0000"


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return InpaintingNet(width=8, key_dim=16, value_dim=16).eval()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cloak")
    synthetic.generate(root / "davis", seed=5, n_videos=1, n_frames=6, height=32, width=44)
    frames = root / "davis" / "JPEGImages" / SEQ
    scribbles = root / "davis" / "Scribbles" / SEQ / "001.json"
    video = write_mp4(root / "clip.mp4", (read_image(p) for p in sorted(frames.iterdir())), fps=10)
    return {"root": root, "frames": frames, "scribbles": scribbles, "video": video}


def mp4_frames(path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.grab():
        n += 1
    cap.release()
    return n


def test_model_file_round_trip_and_refusals(tmp_path, net):
    path = save_model(tmp_path / "m.pt", net, {"internal_size": [32, 44], "max_memory": 4})
    loaded, meta = load_model(path)
    assert meta == {"internal_size": [32, 44], "max_memory": 4} and loaded.config == net.config
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), net.state_dict().values()))
    assert not loaded.training
    with pytest.raises(ModelFileError, match="m2.pt: model file not found"):
        load_model(tmp_path / "m2.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="junk.pt: not a readable model file"):
        load_model(tmp_path / "junk.pt")
    torch.save({"format": "other"}, tmp_path / "other.pt")
    with pytest.raises(ModelFileError, match="other.pt: not a mokuflow inpainting model"):
        load_model(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="meta.f: only plain values"):
        save_model(tmp_path / "bad.pt", net, {"f": object()})
    assert issubclass(ModelFileError, ValueError)


def test_cloak_on_a_frame_folder(tmp_path, net, data):
    out = tmp_path / "out"
    lines = []
    s = cloak(data["frames"], data["scribbles"], out, net=net, progress=lambda *a: lines.append(a))
    stems = sorted(p.stem for p in data["frames"].iterdir())
    assert s["n_frames"] == 6 and s["size"] == [44, 32]
    assert sorted(p.stem for p in (out / "masks").iterdir()) == stems
    assert sorted(p.stem for p in (out / "result").iterdir()) == stems
    for stem in stems:
        m = read_mask(out / "masks" / f"{stem}.png")
        assert m.shape == (32, 44) and set(np.unique(m).tolist()) <= {0, 255}
        assert read_image(out / "result" / f"{stem}.png").shape == (32, 44, 3)
    assert mp4_frames(out / "result.mp4") == 6
    cap = cv2.VideoCapture(str(out / "result.mp4"))
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (44, 32)
    cap.release()
    assert {a[0] for a in lines} == {"read", "propagate", "inpaint"}  # progress of every pass
    scribbled = json.loads(data["scribbles"].read_text())["scribbles"]
    t = next(i for i, f in enumerate(scribbled) if f)
    assert s["scribbled_frames"] == [t] and read_mask(out / "masks" / f"{stems[t]}.png").any()


def test_cloak_on_a_video_with_scribbles_on_two_frames_through_run(tmp_path, net, data):
    d = json.loads(data["scribbles"].read_text())
    t = next(i for i, f in enumerate(d["scribbles"]) if f)
    other = (t + 3) % 6
    d["scribbles"][other] = [{"path": [[0.02, 0.02], [0.1, 0.05]], "object_id": 0}]  # background stroke
    two = tmp_path / "two.json"
    two.write_text(json.dumps(d))
    model = save_model(tmp_path / "model.pt", net, {"max_memory": 3})
    out = tmp_path / "out"
    s = cloak_stage.run({}, video=str(data["video"]), scribbles=str(two), out=str(out), model=str(model),
                        settings={"fps": 12})
    assert s["scribbled_frames"] == sorted([t, other]) and s["max_memory"] == 3 and s["fps"] == 12
    names = [f"{i:05d}" for i in range(6)]
    assert sorted(p.stem for p in (out / "masks").iterdir()) == names
    assert sorted(p.stem for p in (out / "result").iterdir()) == names
    assert mp4_frames(out / "result.mp4") == 6
    assert read_image(out / "result" / "00000.png").shape == (32, 44, 3)
    with pytest.raises(MokuflowError, match="needs --scribbles, --out"):
        cloak_stage.run({}, video=str(data["video"]))
    with pytest.raises(MokuflowError, match="unknown keys"):
        cloak_stage.run({}, video="v", scribbles="s", out="o", settings={"colour": 1})
    import argparse

    parser = argparse.ArgumentParser()
    cloak_stage.add_arguments(parser)
    ns = parser.parse_args(["--video", "v", "--scribbles", "s.json", "--out", "o"])
    assert (ns.video, ns.scribbles, ns.out, ns.model) == ("v", "s.json", "o", None)


def _bad_cases(tmp_path, data):
    """(name, video, scribbles, pattern) for every refused input."""
    d = json.loads(data["scribbles"].read_text())
    cases = []
    empty = tmp_path / "empty"
    empty.mkdir()
    cases.append(("no images", empty, data["scribbles"], "empty: no images in the folder"))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x01junk" * 50)
    cases.append(("unreadable video", broken, data["scribbles"], "broken.mp4: not a readable video|broken.mp4: no decodable"))
    cases.append(("missing video", tmp_path / "nope.mp4", data["scribbles"], "nope.mp4: video not found"))
    bad_frame = tmp_path / "badframe"
    shutil.copytree(data["frames"], bad_frame)
    (bad_frame / "00003.jpg").write_bytes(b"\xff\xd8garbage")
    cases.append(("unreadable frame", bad_frame, data["scribbles"], "00003.jpg: not a readable image"))
    sizes = tmp_path / "sizes"
    shutil.copytree(data["frames"], sizes)
    cv2.imwrite(str(sizes / "00002.jpg"), np.zeros((20, 30, 3), np.uint8))
    cases.append(("differing sizes", sizes, data["scribbles"], "00002.jpg: frame is 30x20 px"))
    not_davis = tmp_path / "list.json"
    not_davis.write_text("[1, 2]")
    cases.append(("not DAVIS", data["frames"], not_davis, "list.json: not a DAVIS scribble file"))
    not_json = tmp_path / "text.json"
    not_json.write_text("scribbles!")
    cases.append(("not JSON", data["frames"], not_json, "text.json: not JSON"))
    beyond = tmp_path / "beyond.json"
    stroke = {"path": [[0.5, 0.5]], "object_id": 1}
    beyond.write_text(json.dumps({"sequence": SEQ, "scribbles": [[]] * 9 + [[stroke]]}))
    cases.append(("frame beyond", data["frames"], beyond, "beyond.json: scribble on frame 9 but the video has 6 frames"))
    none = tmp_path / "none.json"
    none.write_text(json.dumps({"sequence": SEQ, "scribbles": [[] for _ in d["scribbles"]]}))
    cases.append(("empty scribbles", data["frames"], none, "none.json: no scribbles"))
    bg_only = tmp_path / "bg.json"
    bg_only.write_text(json.dumps({"sequence": SEQ, "scribbles": [[{**stroke, "object_id": 0}]] + [[]] * 5}))
    cases.append(("background only", data["frames"], bg_only, "bg.json: no object scribble"))
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps({"sequence": SEQ, "scribbles": [[{"path": [[1.5, 0.2]], "object_id": 1}]] + [[]] * 5}))
    cases.append(("outside [0, 1]", data["frames"], outside, r"outside.json: .*outside \[0, 1\]"))
    return cases


def test_every_bad_input_is_one_line_and_leaves_the_output_untouched(tmp_path, net, data):
    out = tmp_path / "out"
    out.mkdir()
    (out / "masks").mkdir()
    (out / "masks" / "00000.png").write_bytes(b"previous")  # a previous output cloak owns
    before = sorted((p.relative_to(out), p.read_bytes()) for p in out.rglob("*") if p.is_file())
    for name, video, scribbles, pattern in _bad_cases(tmp_path, data):
        with pytest.raises(MokuflowError, match=pattern) as e:
            cloak(video, scribbles, out, net=net, progress=False)
        assert "\n" not in str(e.value), name
        after = sorted((p.relative_to(out), p.read_bytes()) for p in out.rglob("*") if p.is_file())
        assert after == before, name
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out")) == [], name  # no temp left
    with pytest.raises(MokuflowError, match="missing.pt: model file not found"):
        cloak(data["frames"], data["scribbles"], out, net=tmp_path / "missing.pt")
