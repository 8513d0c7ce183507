"""The relationship pipeline's stages on tiny params, once per module: acquire -> clean -> train -> evaluate
-> report -> register, then the served model as users load it (``models:/relationship@champion``) on
generated and real fixture clips, the clean stage as a CLI tool, and the folder source on real clips."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import FIXTURES, REPO, write_tiny_params

STAGES = ("acquire", "clean", "train", "evaluate", "report", "register")
MEDIA = FIXTURES / "relationship" / "media"
LABELS = ["hostile", "tense", "neutral", "mild", "intimate"]
P_COLUMNS = [f"p_{c}" for c in LABELS]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A tiny project run through every pipeline stage; returns (params, {stage: summary})."""
    from tasks.core import load_params
    from tasks.core.study import get

    root = tmp_path_factory.mktemp("relationship")
    params = load_params(write_tiny_params(root))
    study = get("relationship")
    summaries = {stage: study.stage_module(stage).run(params) for stage in STAGES}
    return params, summaries


def _table(path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False, dtype=str)


def test_acquire_and_clean_give_a_manifest_and_one_label_per_clip(project):
    params, s = project
    root = Path(params["_root"])
    raw, clean = root / "data/relationship/raw", root / "data/relationship/clean"
    manifest = _table(raw / "manifest.csv")
    assert len(manifest) == 24 == s["acquire"]["n_clips"]
    assert set(manifest["split"]) == {"train", "val", "test"}
    assert (s["acquire"]["n_train"], s["acquire"]["n_val"], s["acquire"]["n_test"]) == tuple(
        int((manifest["split"] == k).sum()) for k in ("train", "val", "test"))
    labels = _table(clean / "labels.csv")
    assert sorted(labels["clip_id"]) == sorted(manifest["clip_id"]) and set(labels["label"]) <= set(LABELS)
    people = _table(clean / "annotators.csv")
    assert {"annotator_id", "n_labels", "accuracy", "p_hostile_hostile"} <= set(people.columns)
    summary = json.loads((clean / "clean.json").read_text())
    assert summary["n_clips"] == 24 and summary["labels_table"] == "labels_raw.csv"  # no absolute path
    acquired = json.loads((raw / "acquire.json").read_text())
    assert acquired["source"] == "synthetic" and acquired["n_rows"] == 24


def test_train_writes_a_self_contained_model_the_ablations_and_cached_features(project):
    from models.relationship.inference import load_ablations, load_model

    params, s = project
    out = Path(params["_root"]) / "artifacts/relationship/train"
    model = load_model(out / "model.pt")
    assert model.labels == LABELS and model.features.n_steps == 6 and model.net.config["fusion"] == "sync"
    assert len(model.vocab) == s["train"]["vocab_size"] > 3 and model.net.config["dim"] == 8
    assert set(load_ablations(out / "ablations.pt")) == {"concat"}
    history = pd.read_csv(out / "history.csv")
    assert history["epoch"].tolist() == [0, 1] and history["val_macro_f1"].between(0, 1).all()
    assert s["train"]["ablations"]["concat"]["epochs"] == 1 and s["train"]["mlflow_run_id"]
    cached = list((Path(params["_root"]) / ".cache/relationship").rglob("*.npz"))
    assert len(cached) == 24  # train + val by the train stage, test by evaluate: each clip once


def test_features_come_back_from_the_cache(project, monkeypatch):
    from models.relationship.inference import load_model
    from tasks.relationship import data, dataset

    params, _ = project
    model = load_model(Path(params["_root"]) / "artifacts/relationship/train/model.pt")
    rows = dataset.labelled_rows(params, "test")
    monkeypatch.setattr(data, "clip_inputs", lambda *a, **k: pytest.fail("decoded a cached clip"))
    feats = dataset.features(params, rows, model.vocab, model.features)
    assert feats["faces"].shape[:2] == (len(rows), 6)


def test_evaluate_scores_variants_with_intervals_and_verdicts(project):
    params, s = project
    folder = Path(params["_root"]) / "metrics/relationship"
    m = json.loads((folder / "metrics.json").read_text())
    missing = {"without_visual", "without_audio", "without_text"}  # one modality absent at test time
    assert set(m["variants"]) == {"sync", "visual", "audio", "text", "concat"} | missing and m["model"] == "sync"
    for k in ("accuracy", "macro_f1", "coarse_accuracy"):
        assert 0 <= m[k]["value"] <= 1 and m[k]["ci_low"] <= m[k]["value"] <= m[k]["ci_high"], k
        assert s["evaluate"][k] == m[k]["value"]
    assert set(m["per_class_f1"]) == set(LABELS)
    assert set(m["differences"]) == {"visual", "audio", "text", "concat"} | missing
    assert set(m["claims"]["fusion_beats_single_modality"]["against"]) == {"visual", "audio", "text"}
    assert m["claims"]["sync_beats_other_fusion"]["against"] == ["concat"]
    d = m["differences"]["concat"]["macro_f1"]
    assert d["value"] == pytest.approx(m["macro_f1"]["value"] - m["variants"]["concat"]["macro_f1"]["value"])
    claims = m["claims"]
    assert claims["fusion_beats_single_modality"]["against"] == ["visual", "audio", "text"]
    assert claims["sync_beats_other_fusion"]["against"] == ["concat"]
    assert all(c["verdict"] in ("holds", "not shown", "reversed") for c in claims.values())
    assert np.asarray(m["confusion"]).sum() == m["n_test"]
    per_clip = pd.read_csv(folder / "per_clip.csv")
    assert len(per_clip) == m["n_test"] and {"pred_sync", "pred_visual", "pred_concat"} <= set(per_clip.columns)
    from mlflow import MlflowClient

    from tasks.core.tracking import setup

    setup(params)
    logged = MlflowClient().get_run(s["evaluate"]["mlflow_run_id"]).data.metrics
    assert logged["test_macro_f1"] == pytest.approx(m["macro_f1"]["value"])
    assert logged["test_concat_macro_f1"] == pytest.approx(m["variants"]["concat"]["macro_f1"]["value"])


def test_summarise_verdicts_on_known_predictions():
    from tasks.relationship.evaluate import summarise

    y = np.arange(5).repeat(8)
    wrong = (y + 1) % 5
    half = np.where(np.arange(40) % 2 == 0, y, wrong)
    coarse = np.array([0, 0, 1, 2, 2])[y]
    m = summarise(y, {"sync": (y, coarse), "visual": (half, coarse), "audio": (wrong, coarse), "text": (half, coarse),
                      "concat": (half, coarse)}, labels=LABELS, main="sync", ablations=["concat"], n_boot=200, min_n=10)
    assert m["macro_f1"]["value"] == 1.0 and m["claims"]["fusion_beats_single_modality"]["verdict"] == "holds"
    assert m["claims"]["sync_beats_other_fusion"]["verdict"] == "holds"
    r = summarise(y, {"sync": (wrong, coarse), "visual": (y, coarse)}, labels=LABELS, main="sync", ablations=[],
                  n_boot=200, min_n=10)
    assert r["claims"]["fusion_beats_single_modality"]["verdict"] == "reversed"
    assert r["claims"]["sync_beats_other_fusion"]["verdict"] == "not shown" and "note" in r["claims"]["sync_beats_other_fusion"]
    few = summarise(y[:5], {"sync": (y[:5], coarse[:5]), "visual": (wrong[:5], coarse[:5])}, labels=LABELS,
                    main="sync", ablations=[], n_boot=50, min_n=10)
    assert few["claims"]["fusion_beats_single_modality"]["verdict"] == "not shown"


def test_report_shows_variants_verdicts_annotators_and_curves(project):
    params, _ = project
    folder = Path(params["_root"]) / "reports/relationship"
    page = (folder / "index.html").read_text()
    for needle in ("synchronous modal-temporal attention", "fusion beats the other fusions", "concat",
                   "visual alone", "Per-class F1", "intimate", "Annotator quality", "ann0", 'src="variants.png"',
                   'src="training.png"', "Confusion matrices", "negative", "Test clips", "Clips left out",
                   "every clip pair's files could be read"):
        assert needle in page, needle
    for img in ("variants.png", "training.png"):
        assert (folder / img).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", img
    m = json.loads((Path(params["_root"]) / "metrics/relationship/metrics.json").read_text())
    for e in m["examples"]:  # each example clip's frame beside the page, its subtitles in it
        assert (folder / f"example-{Path(e['image']).name}").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"example-{Path(e['image']).name}" in page
        assert all(c["text"] in page for c in e["subtitles"])


def test_evaluate_gives_coarse_confusion_and_example_clips_half_right_half_wrong(project):
    params, _ = project
    root = Path(params["_root"])
    m = json.loads((root / "metrics/relationship/metrics.json").read_text())
    coarse = np.asarray(m["coarse_confusion"])
    assert m["coarse_labels"] == ["negative", "neutral", "positive"] and coarse.shape == (3, 3)
    fine = np.asarray(m["confusion"])  # each coarse row holds the fine rows of its classes
    assert coarse.sum(1).tolist() == [fine[:2].sum(), fine[2].sum(), fine[3:].sum()]
    per_clip = pd.read_csv(root / "metrics/relationship/per_clip.csv", dtype=str).set_index("clip_id")
    examples = m["examples"]
    assert 1 <= len(examples) <= 6 and m["skipped_clips"] == []
    right = sum(e["label"] == e["predicted"] for e in examples)
    assert right <= 3 and len(examples) - right <= 3
    for e in examples:
        assert per_clip.loc[e["clip_id"], "label"] == e["label"] and per_clip.loc[e["clip_id"], "pred_sync"] == e["predicted"]
        assert 0 <= e["p_predicted"] <= 1 and e["p_predicted"] >= e["p_true"] - 1e-9
        assert (root / "metrics/relationship" / e["image"]).is_file()
    subs = _table(root / "data/relationship/raw/manifest.csv").set_index("clip_id")
    with_subs = [e for e in examples if subs.loc[e["clip_id"], "subtitle_path"]]
    assert with_subs and all(e["subtitles"] for e in with_subs)


def test_an_unreadable_clip_is_left_out_of_training_and_evaluation_and_listed(project, tmp_path):
    """A corrupt training video and a malformed test SRT: both stages go on without them and say why."""
    import shutil

    from tasks.core import load_params
    from tasks.relationship import evaluate, report, train

    params, _ = project
    src = Path(params["_root"])
    work = tmp_path / "proj"
    for sub in ("data/relationship", ".cache/relationship"):
        shutil.copytree(src / sub, work / sub)
    p = load_params(write_tiny_params(work))
    manifest = _table(work / "data/relationship/raw/manifest.csv")
    bad_video = manifest[manifest["split"] == "train"].iloc[0]
    (work / "data/relationship/raw" / bad_video["video_path"]).write_bytes(b"not a video at all")
    test = manifest[(manifest["split"] == "test") & (manifest["subtitle_path"] != "")].iloc[0]
    srt = work / "data/relationship/raw" / test["subtitle_path"]
    srt.write_text("1\nthe timing line of this subtitle is missing\n\n2\nand of this one\n")
    shared = int((manifest["subtitle_path"] == test["subtitle_path"]).sum())

    t = train.run(p)
    left = t["skipped_clips"]
    assert [r["clip_id"] for r in left] == [bad_video["clip_id"]] and bad_video["video_path"] in left[0]["error"]
    e = evaluate.run(p)
    m = json.loads((work / "metrics/relationship/metrics.json").read_text())
    assert [r["clip_id"] for r in m["skipped_clips"]] == [test["clip_id"]] * shared
    assert test["subtitle_path"] in m["skipped_clips"][0]["error"]
    assert e["n_test"] == int((manifest["split"] == "test").sum()) - shared
    report.run(p)
    page = (work / "reports/relationship/index.html").read_text()
    assert "Clips left out" in page and str(bad_video["clip_id"]) in page and str(test["clip_id"]) in page


def test_register_rescored_the_served_model_on_the_test_split(project):
    params, s = project
    d = s["register"]
    assert d["decision"] == "promoted" and d["metric"] == "macro_f1" and d["model_name"] == "relationship"
    m = json.loads((Path(params["_root"]) / "metrics/relationship/metrics.json").read_text())
    # the served model answers exactly as the evaluate stage's model
    assert d["challenger_score"] == pytest.approx(m["macro_f1"]["value"], abs=1e-9)


# ------------------------------------------------------------------------------------------ serving

@pytest.fixture(scope="module")
def served(project):
    import mlflow

    from tasks.core.tracking import setup

    setup(project[0])
    return mlflow.pyfunc.load_model("models:/relationship@champion")


@pytest.fixture(scope="module")
def clips(project):
    """Test clips of the tiny project as a user sends them: absolute paths, one with subtitles and audio."""
    params, _ = project
    raw = Path(params["_root"]) / "data/relationship/raw"
    manifest = _table(raw / "manifest.csv")
    for c in ("video_path", "subtitle_path", "tracks_path"):
        manifest[c] = [str(raw / v) if v else "" for v in manifest[c]]
    return manifest


def _request(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[["video_path", "subtitle_path", "tracks_path", "char_a", "char_b"]].reset_index(drop=True)


def test_served_model_answers_each_row_and_fails_a_bad_one_alone(served, clips, tmp_path):
    with_subs = clips[clips["subtitle_path"] != ""].iloc[0]
    rows = _request(pd.DataFrame([with_subs, with_subs, with_subs, with_subs]))
    rows.loc[1, "video_path"] = str(tmp_path / "missing.mp4")
    rows.loc[2, "subtitle_path"] = ""                       # no subtitles: answered from the rest
    rows.loc[3, "tracks_path"] = str(tmp_path / "gone.tracks.json")
    out = served.predict(rows)
    assert list(out.columns) == ["label", "coarse_label", *P_COLUMNS, "error"]
    assert out["error"].isna().tolist() == [True, False, True, False]
    assert "missing.mp4" in out["error"][1] and "not found" in out["error"][1]
    assert "gone.tracks.json" in out["error"][3]
    for i in (0, 2):
        assert out["label"][i] in LABELS and out["coarse_label"][i] in ("negative", "neutral", "positive")
        assert out.loc[i, P_COLUMNS].sum() == pytest.approx(1.0, abs=1e-5)
    assert not np.allclose(out.loc[0, P_COLUMNS].astype(float), out.loc[2, P_COLUMNS].astype(float))


def test_served_audio_path_overrides_the_clip_track_and_modalities_restrict(served, clips, tmp_path):
    wav = MEDIA / "notld_5s_dont_worry_about_him.wav"
    if not wav.is_file():
        pytest.skip(f"real fixtures not found at {MEDIA} (../shared absent)")
    row = _request(clips.iloc[[0]])
    plain = served.predict(row)
    over = served.predict(row.assign(audio_path=[str(wav)]))
    empty = served.predict(row.assign(audio_path=[""]))     # empty: the clip's own track
    assert over["error"].isna().all() and empty["error"].isna().all()
    assert not np.allclose(plain[P_COLUMNS].to_numpy(float), over[P_COLUMNS].to_numpy(float))
    assert np.allclose(plain[P_COLUMNS].to_numpy(float), empty[P_COLUMNS].to_numpy(float))
    bad = served.predict(row.assign(audio_path=[str(tmp_path / "nope.wav")]))
    assert "nope.wav" in bad["error"][0]
    visual = served.predict(row, params={"modalities": ["visual"]})
    assert visual["error"].isna().all()
    assert not np.allclose(plain[P_COLUMNS].to_numpy(float), visual[P_COLUMNS].to_numpy(float))
    # the audio override cannot matter when only vision is asked for
    visual_over = served.predict(row.assign(audio_path=[str(wav)]), params={"modalities": ["visual"]})
    assert np.allclose(visual[P_COLUMNS].to_numpy(float), visual_over[P_COLUMNS].to_numpy(float))
    with pytest.raises(Exception, match="modalities"):
        served.predict(row, params={"modalities": ["smell"]})


def _real_clip_folder(folder: Path) -> Path:
    """An ERATO-like folder on the real fixture media: a talking head with audio and SRT, a film clip
    without audio (one row with a dialogue WAV as its audio), a WebM; tracks written here."""
    if not MEDIA.is_dir():
        pytest.skip(f"real fixtures not found at {MEDIA} (../shared absent)")
    folder.mkdir(parents=True, exist_ok=True)
    tracks = {"grid": (25, 360, 288, 75), "tears": (24, 640, 360, 240), "bunny": (24, 1280, 720, 24)}
    for name, (fps, w, h, n) in tracks.items():
        boxes = {c: [[f, x0 * w, 0.2 * h, (x0 + 0.3) * w, 0.95 * h] for f in range(0, n, 6)]
                 for c, x0 in (("a", 0.1), ("b", 0.6))}
        (folder / f"{name}.tracks.json").write_text(json.dumps({"fps": fps, "tracks": boxes}))
    manifest = pd.DataFrame([
        {"clip_id": "grid", "video_path": str(MEDIA / "grid_swwp2s_h264_aac.mp4"), "subtitle_path": str(MEDIA / "grid_swwp2s.srt"),
         "tracks_path": "grid.tracks.json", "char_a": "a", "char_b": "b", "audio_path": ""},
        {"clip_id": "tears", "video_path": str(MEDIA / "tears_of_steel_clip01.mp4"), "subtitle_path": "",
         "tracks_path": "tears.tracks.json", "char_a": "a", "char_b": "b", "audio_path": ""},
        {"clip_id": "tears_dub", "video_path": str(MEDIA / "tears_of_steel_clip01.mp4"), "subtitle_path": "",
         "tracks_path": "tears.tracks.json", "char_a": "b", "char_b": "a",
         "audio_path": str(MEDIA / "notld_10s_im_taking_the_girl_with_me.wav")},
        {"clip_id": "bunny", "video_path": str(MEDIA / "big_buck_bunny_vp8_vorbis.webm"), "subtitle_path": "",
         "tracks_path": "bunny.tracks.json", "char_a": "a", "char_b": "b", "audio_path": ""},
    ])
    manifest.to_csv(folder / "manifest.csv", index=False)
    labels = [(c, f"r{k}", lab) for c, lab in (("grid", "neutral"), ("tears", "tense"), ("tears_dub", "hostile"),
                                               ("bunny", "mild")) for k in range(3)]
    pd.DataFrame(labels, columns=["clip_id", "annotator_id", "label"]).to_csv(folder / "labels_raw.csv", index=False)
    return folder


def test_served_model_on_real_clips_with_and_without_audio(served, tmp_path):
    folder = _real_clip_folder(tmp_path / "real")
    m = _table(folder / "manifest.csv")
    m["tracks_path"] = [str(folder / p) for p in m["tracks_path"]]
    out = served.predict(m[["video_path", "subtitle_path", "tracks_path", "char_a", "char_b", "audio_path"]])
    assert out["error"].isna().all(), out["error"].tolist()
    assert out["label"].isin(LABELS).all() and np.allclose(out[P_COLUMNS].sum(1), 1, atol=1e-5)


def test_folder_source_reads_a_manifest_of_real_clips(tmp_path):
    from tasks.core import load_params
    from tasks.relationship import acquire, clean

    folder = _real_clip_folder(tmp_path / "erato")
    p = load_params(write_tiny_params(tmp_path / "proj", {"relationship.data.source": "folder",
                                                          "relationship.data.folder.root": str(folder),
                                                          "relationship.data.split.val_fraction": 0.25,
                                                          "relationship.data.split.test_fraction": 0.25}))
    out = acquire.run(p)
    raw = tmp_path / "proj/data/relationship/raw"
    manifest = _table(raw / "manifest.csv")
    assert out["n_clips"] == 4 and set(manifest["split"]) == {"train", "val", "test"}
    assert list(manifest.columns)[-1] == "audio_path" and manifest["audio_path"].tolist().count("") == 3
    for c in ("video_path", "tracks_path", "subtitle_path", "audio_path"):
        for v in manifest[c]:
            assert not v or ((raw / v).is_file() and not Path(v).is_absolute()), v
    assert (raw / manifest["video_path"][0]).read_bytes() == (MEDIA / "grid_swwp2s_h264_aac.mp4").read_bytes()
    acquired = json.loads((raw / "acquire.json").read_text())
    assert acquired["n_without_audio"] == 1 and acquired["n_without_subtitles"] == 3
    c = clean.run(p)
    assert c["n_clips"] == 4
    from models.relationship.features import FeatureConfig, Vocabulary
    from tasks.relationship.data import extract

    feats = extract(raw, manifest.to_dict("records"), Vocabulary.build(["set white"]), FeatureConfig(n_steps=4))
    assert feats["audio_mask"].any(1).tolist() == [True, False, True, True]   # tears: none; its dub: the WAV
    assert feats["text_mask"].any(1).tolist() == [True, False, False, False]


def test_folder_source_names_a_missing_file_and_its_line(tmp_path):
    from tasks.core import MokuflowError, load_params
    from tasks.relationship import acquire

    folder = _real_clip_folder(tmp_path / "erato")
    m = _table(folder / "manifest.csv")
    m.loc[2, "audio_path"] = "dub/missing.wav"
    m.to_csv(folder / "manifest.csv", index=False)
    p = load_params(write_tiny_params(tmp_path / "proj", {"relationship.data.source": "folder",
                                                          "relationship.data.folder.root": str(folder)}))
    with pytest.raises(MokuflowError, match=r"manifest.csv: line 4: audio_path dub/missing.wav: file not found"):
        acquire.run(p)
    assert not (tmp_path / "proj/data/relationship/raw").exists()


# -------------------------------------------------------------------------------------- clean tool

def _cli(*args, cwd=REPO):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "tasks.cli", "relationship", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_clean_cli_is_a_general_tool_and_refuses_a_label_outside_the_set(project, tmp_path):
    params, _ = project
    root = Path(params["_root"])
    raw = root / "data/relationship/raw/labels_raw.csv"
    ok = _cli("clean", "--params", str(root / "params.yaml"), "--labels", str(raw), "--out", str(tmp_path / "out"))
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert _table(tmp_path / "out/labels.csv").equals(_table(root / "data/relationship/clean/labels.csv"))
    bad = tmp_path / "bad.csv"
    bad.write_text("clip_id,annotator_id,label\nc1,a1,hostile\nc1,a2,furious\n")
    fail = _cli("clean", "--params", str(root / "params.yaml"), "--labels", str(bad), "--out", str(tmp_path / "out2"))
    assert fail.returncode == 2
    lines = fail.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mokuflow relationship clean: error:")
    assert "bad.csv" in lines[0] and "lines [3]" in lines[0] and "furious" in lines[0]
    assert not (tmp_path / "out2").exists()


def test_clean_tool_takes_any_label_set_the_model_needs_five(tmp_path):
    """The clean tool is general (binary and four-class crowds); training refuses a set other than five."""
    from tasks.core import MokuflowError, load_params
    from tasks.relationship import clean as clean_stage
    from tasks.relationship.dataset import labelled_rows

    raw = tmp_path / "raw.csv"
    raw.write_text("clip_id,annotator_id,label\na,u1,yes\na,u2,yes\na,u3,no\nb,u1,no\nb,u2,no\nb,u3,no\n")
    p = load_params(write_tiny_params(tmp_path, {"relationship.clean.labels": ["no", "yes"]}))
    out = clean_stage.run(p, labels=str(raw), out=str(tmp_path / "out"))
    assert out["n_clips"] == 2
    import pandas as pd

    table = pd.read_csv(tmp_path / "out" / "labels.csv").set_index("clip_id")["label"].to_dict()
    assert table == {"a": "yes", "b": "no"}
    with pytest.raises(MokuflowError, match="the model needs five classes"):
        labelled_rows(p)
