"""VQA failure behaviour: ratings off the scale, NA markers and ids, separators, partly decodable /
tiny / one-frame videos, damaged frame-cache entries, served inputs, and random malformed tables."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.cli import main
from tasks.core import MokuflowError
from tasks.core.io import MANIFEST
from tasks.vqa.clean import clean_scores

REPO = Path(__file__).resolve().parents[2]
PARAMS = REPO / "params.yaml"


def _table(n_videos=6, n_raters=5, sep=",", extra=()):
    rows = [["video_id", "rater_id", "score"]]
    rows += [[f"v{v}", f"r{r}", str(1 + (v + 2 * r) % 5)] for v in range(n_videos) for r in range(n_raters)]
    rows += [list(e) for e in extra]
    return "\n".join(sep.join(r) for r in rows) + "\n"


def _write(tmp_path, text, name="raw.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _cli(scores, out, *extra) -> int:
    return main(["vqa", "clean", "--params", str(PARAMS), "--scores", str(scores), "--out", str(out), *extra])


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("[mokuflow]")]
    assert len(lines) == 1 and lines[0].startswith("mokuflow vqa clean: error: "), err
    return lines[0]


# -------------------------------------------------------------------------------- ratings off the scale

@pytest.mark.parametrize("value", ["45", "0", "-1", "1e6", "5.01"])
def test_out_of_scale_rating_is_refused_naming_line_and_value(tmp_path, capsys, value):
    raw = _write(tmp_path, _table(extra=[("v1", "r9", "3"), ("v2", "r9", value)]))
    out = tmp_path / "clean"
    assert _cli(_write(tmp_path, _table(), "ok.csv"), out) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert _cli(raw, out) == 2
    line = _error_line(capsys)
    assert str(raw) in line and "lines [33]" in line and repr(value) in line and "[1, 5]" in line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_boolean_rating_is_refused(tmp_path, capsys):
    raw = _write(tmp_path, _table(extra=[("v2", "r9", "True")]))
    assert _cli(raw, tmp_path / "clean") == 2
    assert "non-numeric score" in _error_line(capsys) and not (tmp_path / "clean").exists()


def test_out_of_scale_drop_counts_in_clean_json(tmp_path):
    extra = [("v1", "r9", "3"), ("v2", "r9", "45"), ("v3", "r9", "0"), ("v4", "r9", "2")]
    raw = _write(tmp_path, _table(extra=extra))
    out = tmp_path / "clean"
    assert _cli(raw, out, "--set", "vqa.clean.out_of_scale=drop") == 0
    meta = json.loads((out / "clean.json").read_text())
    assert meta["n_out_of_scale"] == 2 and meta["out_of_scale"] == "drop" and meta["scale"] == [1.0, 5.0]
    assert meta["n_ratings"] == 6 * 5 + 2
    # the same ratings without the two dropped ones give the same fit
    ref = tmp_path / "ref"
    clean_scores(_write(tmp_path, _table(extra=[extra[0], extra[3]]), "ref.csv"), ref)
    a = pd.read_csv(out / "scores.csv")
    b = pd.read_csv(ref / "scores.csv")
    np.testing.assert_allclose(a["quality"], b["quality"])


def test_scale_param_for_other_rating_scales(tmp_path):
    text = _table().replace(",1\n", ",10\n").replace(",5\n", ",100\n")
    raw = _write(tmp_path, text)
    with pytest.raises(MokuflowError, match=r"outside the rating scale \[1, 5\]"):
        clean_scores(raw, tmp_path / "a")
    assert _cli(raw, tmp_path / "b", "--set", "vqa.clean.scale=[0, 100]") == 0


def test_mos_only_tables_are_not_held_to_the_rating_scale(tmp_path):
    raw = _write(tmp_path, "video_id,mos\na,72.5\nb,40\n")  # LIVE-VQC style 0-100 MOS
    summary = clean_scores(raw, tmp_path / "clean")
    assert summary["method"] == "mos-passthrough"


# -------------------------------------------------------------------------- NA markers, ids, separators

def test_na_ratings_are_counted_and_na_ids_kept(tmp_path):
    text = _table().replace("\nv0,", "\nNA,").replace("\nv1,", "\nNone,")
    text = text.replace("\nv2,r0,3\n", "\nv2,r0,n/a\n")
    raw = _write(tmp_path, text + "v9,r0,2\nv9,r1,null\nv9,r2,4\n")
    assert "v2,r0,n/a" in text
    out = tmp_path / "clean"
    assert _cli(raw, out) == 0
    scores = pd.read_csv(out / "scores.csv", dtype=str, keep_default_na=False)
    assert sorted(scores["video_id"]) == sorted(["NA", "None", "v2", "v3", "v4", "v5", "v9"])
    meta = json.loads((out / "clean.json").read_text())
    assert meta["n_na_ratings"] == 2 and meta["n_ratings"] == 30 - 1 + 2


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_other_separators_give_the_same_result(tmp_path, sep):
    a, b = tmp_path / "a", tmp_path / "b"
    assert _cli(_write(tmp_path, _table(), "comma.csv"), a) == 0
    assert _cli(_write(tmp_path, _table(sep=sep), "other.csv"), b) == 0
    assert (a / "scores.csv").read_bytes() == (b / "scores.csv").read_bytes()


def test_missing_columns_message_says_what_was_found(tmp_path, capsys):
    raw = _write(tmp_path, "video;rater;score\na;r1;3\n")
    assert _cli(raw, tmp_path / "clean") == 2
    line = _error_line(capsys)
    assert "['video', 'rater', 'score']" in line and "semicolon" in line


# ---------------------------------------------------------------------------------------------- videos

def _avi(path: Path, n: int, h: int, w: int) -> Path:
    import cv2

    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (w, h))
    assert vw.isOpened()
    rng = np.random.default_rng(n)
    for _ in range(n):
        vw.write(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    vw.release()
    return path


def _cut(src: Path, dst: Path, share: float = 0.5) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * share)])
    return dst


def test_partly_decodable_video_is_scored_with_a_warning(tmp_path, caplog):
    from models.vqa.video import probe_video, read_clip

    full = _avi(tmp_path / "full.avi", 60, 32, 32)
    cut = _cut(full, tmp_path / "cut.avi")
    info = probe_video(cut)
    assert info["frames_meta"] == 60 and 10 < info["frames"] < 54
    with caplog.at_level(logging.WARNING, logger="mokuflow"):
        frames, motion = read_clip(cut, n_clips=8, clip_len=1, height=16, width=16)
    assert frames.shape == (8, 16, 16, 3) and motion.shape == (8, 16, 16, 1)
    assert any("of the 60 frames" in r.getMessage() and "cut.avi" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mokuflow"):
        read_clip(full, n_clips=8, clip_len=1, height=16, width=16)
    assert not caplog.records


@pytest.mark.parametrize("n, h, w, problem", [
    (10, 1, 1, "too small"), (10, 4, 6, "too small"), (1, 32, 32, "still image")])
def test_tiny_and_one_frame_videos_are_refused(tmp_path, n, h, w, problem):
    from models.vqa.video import VideoReadError, probe_video, read_clip

    p = _avi(tmp_path / "v.avi", n, h, w)
    for call in (lambda: read_clip(p, n_clips=4, clip_len=1, height=16, width=16), lambda: probe_video(p)):
        with pytest.raises(VideoReadError, match=problem) as e:
            call()
        assert str(p) in str(e.value)


def test_bit_flipped_videos_are_refused_or_scored_with_a_warning(tmp_path, caplog):
    """Flipped bytes: refused naming the file when nothing usable decodes; scored with a logged warning
    when frames are lost; scored silently only when every announced frame decodes."""
    from models.vqa.video import VideoReadError, probe_video, read_clip
    from tasks.vqa.synthetic import write_mp4

    write_mp4(tmp_path / "v.mp4", np.random.default_rng(0).integers(0, 255, (12, 32, 32, 3), dtype=np.uint8),
              fps=10)
    _avi(tmp_path / "v.avi", 60, 32, 32)
    outcomes = []
    for src in ("v.mp4", "v.avi"):
        data = (tmp_path / src).read_bytes()
        for seed, (lo, hi) in enumerate([(len(data) - 300, len(data)), (len(data) // 3, 2 * len(data) // 3),
                                         (0, len(data))]):
            b = bytearray(data)
            for i in np.random.default_rng(seed).choice(np.arange(lo, hi), 40, replace=False):
                b[i] ^= 0xFF
            p = tmp_path / f"{seed}.{src}"
            p.write_bytes(bytes(b))
            caplog.clear()
            try:
                with caplog.at_level(logging.WARNING, logger="mokuflow"):
                    frames, _ = read_clip(p, n_clips=4, clip_len=1, height=16, width=16)
            except VideoReadError as e:
                assert str(p) in str(e)
                outcomes.append("refused")
                continue
            info = probe_video(p)
            lost = bool(info["frames_meta"]) and info["frames"] < 0.9 * info["frames_meta"]
            warned = any(str(p) in r.getMessage() for r in caplog.records)
            assert frames.shape == (4, 16, 16, 3) and warned == lost, (p, info)
            outcomes.append("warned" if warned else "scored")
    assert {"refused", "warned"} <= set(outcomes), outcomes


def test_acquire_lists_tiny_and_one_frame_videos_as_unreadable(tmp_path):
    from tasks.core import load_params
    from tasks.vqa import acquire

    vids = tmp_path / "vids"
    vids.mkdir()
    for i in range(3):
        _avi(vids / f"ok{i}.avi", 6, 32, 32)
    _avi(vids / "tiny.avi", 6, 2, 2)
    _avi(vids / "still.avi", 1, 32, 32)
    (tmp_path / "l.txt").write_text("".join(f"{n}, 1, 10, {3 + i / 10}\n" for i, n in enumerate(
        ["ok0.avi", "ok1.avi", "ok2.avi", "tiny.avi", "still.avi"])))
    params = load_params(PARAMS, {"vqa.data.source": "folder", "vqa.data.folder.videos": "vids",
                                  "vqa.data.folder.labels": "l.txt"})
    params["_root"] = str(tmp_path)
    summary = acquire.run(params)
    meta = json.loads((tmp_path / "data" / "vqa" / "raw" / "acquire.json").read_text())
    reasons = {Path(u["path"]).name: u["reason"] for u in meta["unreadable"]}
    assert summary["n_videos"] == 3 and set(reasons) == {"tiny.avi", "still.avi"}
    assert "too small" in reasons["tiny.avi"] and "still image" in reasons["still.avi"]


def test_acquire_refuses_a_raw_dir_holding_its_source(tmp_path):
    from tasks.core import load_params
    from tasks.vqa import acquire

    raw = tmp_path / "data" / "vqa" / "raw"
    (raw / "src").mkdir(parents=True)
    _avi(raw / "src" / "a.avi", 6, 32, 32)
    (raw / "src" / "l.txt").write_text("a.avi, 1, 10, 3.0\n")
    params = load_params(PARAMS, {"vqa.data.source": "folder", "vqa.data.folder.videos": "data/vqa/raw/src",
                                  "vqa.data.folder.labels": "data/vqa/raw/src/l.txt"})
    params["_root"] = str(tmp_path)
    with pytest.raises(MokuflowError, match="holds this stage's input"):
        acquire.run(params)
    assert sorted(p.name for p in (raw / "src").iterdir()) == ["a.avi", "l.txt"]


# ------------------------------------------------------------------------------------------ frame cache

def _cache_and_video(tmp_path):
    from models.vqa.video import FrameCache
    from tasks.vqa.synthetic import write_mp4

    p = tmp_path / "v.mp4"
    write_mp4(p, np.random.default_rng(1).integers(0, 255, (8, 32, 32, 3), dtype=np.uint8), fps=10)
    cache = FrameCache(tmp_path / "cache", n_clips=4, clip_len=1, height=16, width=16, motion="diff")
    return cache, p


@pytest.mark.parametrize("damage", ["same-shape-other-content", "zero-byte", "wrong-shape", "folder",
                                    "bad-checksum-file", "motion-truncated"])
def test_damaged_cache_entry_is_rebuilt_and_logged_once(tmp_path, caplog, damage):
    from models.vqa import video

    cache, p = _cache_and_video(tmp_path)
    frames, motion = cache.get(p)
    fpath, mpath, jpath = cache._paths(cache.key(p))
    if damage == "same-shape-other-content":
        np.save(fpath, np.zeros_like(frames))
    elif damage == "zero-byte":
        fpath.write_bytes(b"")
    elif damage == "wrong-shape":
        np.save(fpath, frames[:2])
    elif damage == "folder":
        fpath.unlink()
        fpath.mkdir()
        (fpath / "x").write_text("x")
    elif damage == "bad-checksum-file":
        jpath.write_text("{not json")
    else:
        mpath.write_bytes(mpath.read_bytes()[:100])
    video._WARNED.clear()
    with caplog.at_level(logging.WARNING, logger="mokuflow"):
        again = cache.get(p)
        third = cache.get(p)
    assert np.array_equal(again[0], frames) and np.array_equal(again[1], motion)
    assert np.array_equal(third[0], frames)
    warnings = [r.getMessage() for r in caplog.records if "frame cache" in r.getMessage()]
    assert len(warnings) == 1 and "decoding again" in warnings[0], warnings
    assert fpath.is_file() and cache.load(p) is not None


def test_cache_entry_without_checksum_is_a_plain_miss(tmp_path, caplog):
    cache, p = _cache_and_video(tmp_path)
    frames, _ = cache.get(p)
    fpath, _, jpath = cache._paths(cache.key(p))
    jpath.unlink()  # an entry from before checksums, or one cut short
    assert not cache.cached(p)
    with caplog.at_level(logging.WARNING, logger="mokuflow"):
        assert np.array_equal(cache.get(p)[0], frames)
    assert not caplog.records and cache.cached(p)


def test_unwritable_cache_still_answers(tmp_path, caplog):
    from models.vqa import video

    cache, p = _cache_and_video(tmp_path)
    (tmp_path / "cache").write_text("a file where the cache folder should be")
    video._WARNED.clear()
    with caplog.at_level(logging.WARNING, logger="mokuflow"):
        frames, motion = cache.get(p)
    assert frames.shape == (4, 16, 16, 3)
    assert any("not cached" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------------------------- served model

def test_served_model_takes_dict_and_list_inputs_and_refuses_bad_videos(tmp_path, monkeypatch, caplog):
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from tasks.core.serving import log_pyfunc
    from tasks.vqa.study import STUDY
    from tests.vqa.test_serving import make_model_pt, set_store, write_video

    _, exp = set_store(tmp_path, monkeypatch)
    with mlflow.start_run(experiment_id=exp):
        mv = log_pyfunc({}, STUDY, make_model_pt(tmp_path / "model.pt"), registered_model_name="vqa")
    MlflowClient().set_registered_model_alias("vqa", "champion", mv.version)
    served = mlflow.pyfunc.load_model("models:/vqa@champion")
    a = str(write_video(tmp_path / "a.mp4", n_frames=5, height=24, width=32, level=60))
    b = str(write_video(tmp_path / "b.mp4", n_frames=7, height=40, width=48, level=150))
    want = served.predict(pd.DataFrame({"video_path": [a, b]}))
    assert want["error"].isna().all() and np.isfinite(want["quality"]).all()
    for inputs in ({"video_path": [a, b]}, [{"video_path": a}, {"video_path": b}]):
        got = served.predict(inputs)
        assert list(got.columns) == ["quality", "error"] and got["error"].isna().all(), inputs
        np.testing.assert_allclose(got["quality"], want["quality"], rtol=1e-5)
    one = served.predict({"video_path": a})  # a dict of single values: one row
    assert len(one) == 1 and one["quality"][0] == pytest.approx(want["quality"][0], rel=1e-5)
    with pytest.raises(MlflowException, match="video_path"):  # MLflow refuses a plain list (documented)
        served.predict([a, b])
    # the Python model itself takes the plain list
    plain = served.unwrap_python_model().predict(None, [a, b])
    np.testing.assert_allclose(plain["quality"], want["quality"], rtol=1e-5)

    tiny = str(_avi(tmp_path / "tiny.avi", 6, 1, 1))
    still = str(_avi(tmp_path / "still.avi", 1, 32, 32))
    cut = str(_cut(_avi(tmp_path / "full.avi", 60, 32, 32), tmp_path / "cut.avi"))
    with caplog.at_level(logging.WARNING, logger="mokuflow"):
        out = served.predict(pd.DataFrame({"video_path": [tiny, a, still, cut]}))
    assert len(out) == 4 and list(out.columns) == ["quality", "error"]
    assert "too small" in out["error"][0] and "still image" in out["error"][2]
    assert out["quality"][[0, 2]].isna().all()
    assert np.isfinite(out["quality"][[1, 3]]).all() and out["error"][[1, 3]].isna().all()
    assert any("cut.avi" in r.getMessage() for r in caplog.records)  # scored, with a logged warning


# ------------------------------------------------------------------------- property: malformed tables

VALID = st.sampled_from(["1", "2", "3", "4", "5", "2.5", "4.75"])
MALFORMED = st.one_of(
    st.sampled_from(["", "NA", "n/a", "null", "45", "0", "-1", "1e6", "True", "abc", "inf", "nan", " 3 ", "3,5",
                     '"4"', "None", "#N/A", "1e400", "-0", "5.0000001", "a,b", '"', "x\ny"]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=4),
)
IDS = st.sampled_from(["", "NA", "None", "007", " a", "x;y", "é", '"q"', "v0", "r0", "a\tb"])
HEADERS = st.sampled_from([("video_id", "mos"), ("video_id", "mos", "mos_std"), ("video_id", "who", "score"),
                           ("video_id",), ("Video_ID", "rater_id", "score"), ("video_id", "rater_id"),
                           ("video_id", "rater_id", "score", "score")])


@st.composite
def tables(draw):
    """A small valid per-rater (or MOS) table, then 0-3 random faults: a malformed cell or id, a ragged
    row, a dropped or duplicated row, another header or separator, a cut file."""
    n_v, n_r = draw(st.integers(1, 4)), draw(st.integers(2, 4))
    mos = draw(st.integers(0, 5)) == 0
    header = ["video_id", "mos"] if mos else ["video_id", "rater_id", "score"]
    if not mos and draw(st.booleans()):
        header.append("content_id")
    rows = []
    for v in range(n_v):
        for r in range(1 if mos else n_r):
            row = [f"v{v}"] + ([draw(VALID)] if mos else [f"r{r}", draw(VALID)])
            if len(header) == 4:
                row.append(f"c{v // 2}")
            rows.append(row)
    for _ in range(draw(st.integers(0, 3))):
        fault = draw(st.sampled_from(["cell", "id", "ragged", "drop", "dup", "header"]))
        i = draw(st.integers(0, len(rows) - 1)) if rows else None
        if fault == "cell" and rows:
            rows[i][-1] = draw(MALFORMED)
        elif fault == "id" and rows:
            rows[i][draw(st.integers(0, len(rows[i]) - 1))] = draw(IDS)
        elif fault == "ragged" and rows:
            rows[i] = rows[i][:-1] if draw(st.booleans()) else [*rows[i], draw(MALFORMED)]
        elif fault == "drop" and rows:
            rows.pop(i)
        elif fault == "dup" and rows:
            rows.append(list(rows[i]))
        elif fault == "header":
            header = list(draw(HEADERS))
    sep = draw(st.sampled_from([",", ";", "\t"]))
    text = sep.join(header) + "\n" + "".join(sep.join(r) + "\n" for r in rows)
    if draw(st.integers(0, 9)) == 0:
        text = text.encode("utf-8")[: draw(st.integers(0, len(text)))].decode("utf-8", "ignore")
    return text


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=tables(), method=st.sampled_from(["mle", "mos"]), mode=st.sampled_from(["refuse", "drop"]))
def test_malformed_tables_give_a_valid_output_or_one_line(tmp_path, capsys, text, method, mode):
    out = tmp_path / "clean"
    if not out.exists():
        assert _cli(_write(tmp_path, _table(), "good.csv"), out) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    raw = tmp_path / "t.csv"
    raw.write_bytes(text.encode("utf-8", "surrogatepass"))
    capsys.readouterr()
    rc = _cli(raw, out, "--set", f"vqa.clean.method={method}", "--set", f"vqa.clean.out_of_scale={mode}")
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.strip() and not ln.startswith("[mokuflow]")]
    if rc == 0:
        assert lines == [], captured.err
        scores = pd.read_csv(out / "scores.csv", dtype={"video_id": str}, keep_default_na=False)
        assert list(scores.columns) == ["video_id", "quality", "quality_std"] and len(scores) > 0
        assert (out / MANIFEST).is_file() and (out / "clean.json").is_file()
        assert json.loads(captured.out)["n_videos"] == len(scores)
    else:
        assert rc == 2, captured.err
        assert len(lines) == 1 and lines[0].startswith("mokuflow vqa clean: error: "), captured.err
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
