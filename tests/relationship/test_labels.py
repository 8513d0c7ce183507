"""The relationship label table: reading (missing labels, refusals naming lines), clean's outputs, atomicity."""
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from models.relationship.simulate import simulate_crowd
from tasks.core import MokuflowError
from tasks.relationship.labels import LABELS, clean, read_labels
from tests.conftest import FIXTURES, REPO

CROWD = FIXTURES / "relationship" / "crowd"


def _raw(tmp_path, *, n_items=300, seed=0, name="raw.csv"):
    c = simulate_crowd(n_items=n_items, labels_per_item=5, n_careful=8, n_lazy=2, n_spammers=4, tail=20, seed=seed)
    frame = pd.DataFrame({"clip_id": [f"clip{i:04d}" for i in c.items],
                          "annotator_id": [f"w{j}" for j in c.annotators],
                          "label": [LABELS[k] for k in c.labels]})
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path, c


def _write(tmp_path, text, name="raw.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_clean_writes_labels_annotators_and_summary(tmp_path):
    raw, crowd = _raw(tmp_path)
    out = tmp_path / "clean"
    summary = clean(raw, out, labels=LABELS, max_iter=100, tol=1e-6)
    assert sorted(p.name for p in out.iterdir()) == [".mokuflow-owned", "annotators.csv", "clean.json", "labels.csv"]
    clips = pd.read_csv(out / "labels.csv", dtype={"clip_id": str})
    assert list(clips.columns) == ["clip_id", "label", "confidence"]
    assert len(clips) == 300 and set(clips["label"]) <= set(LABELS)
    assert clips["confidence"].between(1 / 5, 1).all()
    truth = np.array(LABELS)[crowd.truth]
    assert (clips["label"].to_numpy() == truth[clips["clip_id"].str[4:].astype(int)]).mean() > 0.75
    people = pd.read_csv(out / "annotators.csv", dtype={"annotator_id": str})
    conf_cols = [f"p_{t}_{g}" for t in LABELS for g in LABELS]
    assert list(people.columns) == ["annotator_id", "n_labels", "accuracy", *conf_cols]
    assert people["n_labels"].sum() == 1500 == summary["n_labels"]
    for t in LABELS:  # every row of a confusion matrix is a distribution over the given labels
        np.testing.assert_allclose(people[[f"p_{t}_{g}" for g in LABELS]].sum(axis=1), 1.0, atol=1e-5)
    on_disk = json.loads((out / "clean.json").read_text())
    assert on_disk == {k: v for k, v in summary.items() if k != "out"}
    assert summary["classes"] == list(LABELS) and summary["converged"] and summary["n_missing_labels"] == 0
    assert 0.5 < summary["agreement_with_majority_vote"] < 1.0


def test_missing_labels_are_skipped_and_counted(tmp_path):
    raw = _write(tmp_path, "clip_id,annotator_id,label\n"
                           "c1,a,hostile\nc1,b,\nc1,c,NA\nc2,a,mild\nc2,b,n/a\nc2,c,mild\nc3,a,\n")
    table, n_missing = read_labels(raw)
    assert n_missing == 4 and (table["label"] == "").sum() == 4
    summary = clean(raw, tmp_path / "out")
    assert summary["n_missing_labels"] == 4 and summary["n_clips"] == 2 and summary["n_unlabelled_clips"] == 1
    clips = pd.read_csv(tmp_path / "out" / "labels.csv")
    assert clips.set_index("clip_id")["label"].to_dict() == {"c1": "hostile", "c2": "mild"}


def test_a_label_that_reads_like_na_is_a_label_when_declared(tmp_path):
    raw = _write(tmp_path, "clip_id,annotator_id,label\nc1,a,none\nc1,b,some\nc2,a,some\n")
    table, n_missing = read_labels(raw, labels=["none", "some"])
    assert n_missing == 0 and table["label"].tolist() == ["none", "some", "some"]


def test_label_outside_the_set_names_line_and_value(tmp_path):
    raw = _write(tmp_path, "clip_id,annotator_id,label\nc1,a,hostile\nc1,b,friendly\nc2,a,tense\n")
    with pytest.raises(MokuflowError) as e:
        read_labels(raw)
    msg = str(e.value)
    assert str(raw) in msg and "line" in msg and "[3]" in msg and "'friendly'" in msg and "\n" not in msg


@pytest.mark.parametrize("text, expected", [
    ("clip_id,annotator_id\nc1,a\n", "missing column(s) ['label']"),
    ("clip_id,annotator_id,label\n", "no rows"),
    ("clip_id,annotator_id,label\n,a,mild\n", "empty clip_id on lines [2]"),
    ("clip_id,annotator_id,label\nc1,,mild\n", "empty annotator_id on lines [2]"),
    ("clip_id,annotator_id,label\nc1,a,\nc2,b,NA\n", "every label is missing"),
    ("", "empty file"),
])
def test_malformed_tables_are_one_line_errors(tmp_path, text, expected):
    raw = _write(tmp_path, text)
    with pytest.raises(MokuflowError) as e:
        clean(raw, tmp_path / "out")
    assert expected in str(e.value) and str(raw) in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()


def test_missing_file_and_bad_settings(tmp_path):
    with pytest.raises(MokuflowError, match="label table not found"):
        clean(tmp_path / "nope.csv", tmp_path / "out")
    raw, _ = _raw(tmp_path, n_items=20)
    for kw, match in [({"labels": ["a"]}, "two distinct"), ({"max_iter": 0}, "max_iter"), ({"tol": 0}, "tol")]:
        with pytest.raises(MokuflowError, match=match):
            clean(raw, tmp_path / "out", **kw)


def test_separators_and_repeated_labels(tmp_path):
    raw = _write(tmp_path, "clip_id;annotator_id;label\nc1;a;tense\nc1;a;tense\nc1;b;tense\nc2;a;mild\nc2;b;mild\n")
    summary = clean(raw, tmp_path / "out")
    assert summary["n_repeated_labels"] == 1 and summary["n_labels"] == 5


def test_outputs_are_atomic_and_owned(tmp_path):
    raw, _ = _raw(tmp_path, n_items=40)
    out = tmp_path / "out"
    clean(raw, out)
    before = (out / "labels.csv").read_bytes()
    bad = _write(tmp_path, "clip_id,annotator_id,label\nc1,a,hostile\nc1,b,friendly\n", name="bad.csv")
    with pytest.raises(MokuflowError):
        clean(bad, out)
    assert (out / "labels.csv").read_bytes() == before  # a failed run leaves the previous output whole
    (out / "mine.txt").write_text("a user's file")
    with pytest.raises(MokuflowError, match="mine.txt"):
        clean(raw, out)
    with pytest.raises(MokuflowError, match="input"):
        clean(raw, tmp_path)  # the folder holds the input


@pytest.mark.skipif(not CROWD.is_dir(), reason=f"real crowd fixtures not found in {CROWD}")
def test_real_crowd_through_clean(tmp_path):
    raw = CROWD / "adult_content2" / "labels.csv"
    summary = clean(raw, tmp_path / "out", labels=["G", "P", "R", "X"])
    assert summary["n_labels"] == 92721 and summary["n_clips"] == 11040 and summary["n_annotators"] == 825
    assert summary["n_repeated_labels"] == 2922
    clips = pd.read_csv(tmp_path / "out" / "labels.csv", dtype=str, keep_default_na=False).set_index("clip_id")
    gold = pd.read_csv(CROWD / "adult_content2" / "truth.csv", dtype=str, keep_default_na=False).set_index("clip_id")
    assert (clips["label"].reindex(gold.index) == gold["label"]).mean() > 0.74


def test_no_torch_on_the_clean_path():
    code = ("import sys; import tasks.relationship.labels, tasks.relationship.subtitles, tasks.relationship.tracks, "
            "models.relationship.annotators; print(' '.join(sys.modules))")
    mods = set(subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.split())
    assert not mods & {"torch", "lightning", "mlflow", "prefect", "cv2", "av", "crowdkit"}
