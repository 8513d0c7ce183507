"""`mokuflow vqa clean`: outputs, MOS pass-through, clear errors, atomic outputs, no torch."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.vqa.subject_model import fit
from tasks.cli import main
from tasks.core import MokuflowError
from tasks.vqa.clean import clean_scores

REPO = Path(__file__).resolve().parents[2]
PARAMS = REPO / "params.yaml"


def _tidy(tmp_path, *, seed=0, n_videos=24, n_raters=12, contents=True, name="raw.csv"):
    rng = np.random.default_rng(seed)
    x = rng.uniform(1, 5, n_videos)
    b = rng.normal(0, 0.4, n_raters)
    rows = []
    for j in range(n_videos):
        for i in range(n_raters):
            if (i + j) % 5 == 0:  # missing ratings: absent rows
                continue
            # on the default 1-5 rating scale (vqa.clean.scale): ratings outside it are refused
            score = float(np.clip(x[j] + b[i] + rng.normal(0, 0.5), 1, 5))
            row = {"video_id": f"v{j:03d}", "rater_id": f"r{i}", "score": round(score, 2)}
            if contents:
                row["content_id"] = f"c{j // 4}"
            rows.append(row)
    path = tmp_path / name
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _cli(scores, out, *extra):
    return main(["vqa", "clean", "--params", str(PARAMS), "--scores", str(scores), "--out", str(out), *extra])


def test_cli_writes_contract_outputs(tmp_path):
    raw = _tidy(tmp_path)
    out = tmp_path / "clean"
    assert _cli(raw, out) == 0
    scores = pd.read_csv(out / "scores.csv", dtype={"video_id": str})
    raters = pd.read_csv(out / "raters.csv", dtype={"rater_id": str})
    contents = pd.read_csv(out / "contents.csv", dtype={"content_id": str})
    meta = json.loads((out / "clean.json").read_text())
    assert list(scores.columns) == ["video_id", "quality", "quality_std"]
    assert list(raters.columns) == ["rater_id", "bias", "inconsistency"]
    assert list(contents.columns) == ["content_id", "ambiguity"]
    table = pd.read_csv(raw, dtype=str)
    assert set(scores.video_id) == set(table.video_id) and len(scores) == table.video_id.nunique()
    assert set(raters.rater_id) == set(table.rater_id)
    assert set(contents.content_id) == set(table.content_id)
    assert meta["method"] == "mle" and meta["n_ratings"] == len(table)
    assert meta["n_videos"] == 24 and meta["n_raters"] == 12 and meta["iterations"] > 0
    # the written qualities are the subject model's, in the written video order
    u = table.astype({"score": float}).pivot(index="video_id", columns="rater_id", values="score")
    u = u.reindex(index=scores.video_id, columns=raters.rater_id)
    cids = table.groupby("video_id").content_id.first().reindex(scores.video_id).to_numpy()
    ref = fit(u.to_numpy(), content_ids=cids)
    np.testing.assert_allclose(scores.quality, ref.quality, rtol=1e-9)
    np.testing.assert_allclose(raters.bias, ref.bias, rtol=1e-9, atol=1e-12)
    assert meta["log_likelihood"] == pytest.approx(ref.log_likelihood)


def test_without_content_ids_no_contents_file(tmp_path):
    out = tmp_path / "clean"
    summary = clean_scores(_tidy(tmp_path, contents=False), out)
    assert not (out / "contents.csv").exists() and (out / "raters.csv").exists()
    assert summary["n_contents"] is None


def test_mos_method_is_plain_mean(tmp_path):
    raw = _tidy(tmp_path)
    out = tmp_path / "clean"
    clean_scores(raw, out, method="mos")
    scores = pd.read_csv(out / "scores.csv", dtype={"video_id": str}).set_index("video_id")
    mean = pd.read_csv(raw, dtype={"video_id": str}).groupby("video_id").score.mean()
    np.testing.assert_allclose(scores.quality.loc[mean.index], mean.to_numpy())
    assert json.loads((out / "clean.json").read_text())["method"] == "mos"


@pytest.mark.parametrize("with_std", [False, True])
def test_mos_only_table_passes_through(tmp_path, with_std):
    table = pd.DataFrame({"video_id": ["a", "b", "c"], "mos": [3.5, 2.25, 4.0]})
    if with_std:
        table["mos_std"] = [0.1, 0.2, 0.3]
    raw = tmp_path / "mos.csv"
    table.to_csv(raw, index=False)
    out = tmp_path / "clean"
    assert _cli(raw, out) == 0
    scores = pd.read_csv(out / "scores.csv")
    np.testing.assert_allclose(scores.quality, table.mos)
    if with_std:
        np.testing.assert_allclose(scores.quality_std, table.mos_std)
    else:
        assert scores.quality_std.isna().all()
    assert not (out / "raters.csv").exists()
    assert json.loads((out / "clean.json").read_text())["method"] == "mos-passthrough"


def _write(tmp_path, text, name="bad.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


BAD = {
    "missing columns": ("video_id,who,score\na,r1,3\n", "missing columns"),
    "non-numeric": ("video_id,rater_id,score\na,r1,3\na,r2,good\nb,r1,2\nb,r2,4\n", "non-numeric score"),
    "empty table": ("video_id,rater_id,score\n", "no rows"),
    "empty file": ("", "empty file"),
    "unrated video": ("video_id,rater_id,score\na,r1,3\na,r2,4\nb,r1,\nb,r2,\n", "no rating"),
    "single rating": ("video_id,rater_id,score\na,r1,3\na,r2,4\nb,r1,2\nb,r2,3\nb,r3,1\n", "single rating"),
    "duplicates": ("video_id,rater_id,score\na,r1,3\na,r1,4\nb,r1,2\n", "duplicate ratings"),
    "two contents": ("video_id,rater_id,score,content_id\na,r1,3,c1\na,r2,4,c2\nb,r1,2,c1\nb,r2,3,c1\n",
                     "more than one content_id"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_a_clear_error_and_keeps_outputs(tmp_path, case, capsys):
    text, message = BAD[case]
    bad = _write(tmp_path, text)
    out = tmp_path / "clean"
    assert _cli(_tidy(tmp_path), out) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(MokuflowError, match=message) as err:
        clean_scores(bad, out)
    assert str(bad) in str(err.value)
    assert _cli(bad, out) == 2
    assert str(bad) in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp leftovers


def test_missing_file_error(tmp_path):
    with pytest.raises(MokuflowError, match="not found") as err:
        clean_scores(tmp_path / "nope.csv", tmp_path / "clean")
    assert "nope.csv" in str(err.value)
    assert not (tmp_path / "clean").exists()


def test_single_rating_rater_allowed_for_mos(tmp_path):
    text, _ = BAD["single rating"]
    out = tmp_path / "clean"
    clean_scores(_write(tmp_path, text), out, method="mos")
    assert len(pd.read_csv(out / "scores.csv")) == 2


def test_clean_cli_does_not_import_torch(tmp_path):
    raw = _tidy(tmp_path)
    code = (
        "import sys; from tasks.cli import main; "
        f"rc = main(['vqa', 'clean', '--params', {str(PARAMS)!r}, '--scores', {str(raw)!r}, "
        f"'--out', {str(tmp_path / 'clean')!r}]); "
        "assert rc == 0, rc; assert 'torch' not in sys.modules, 'torch imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "clean" / "scores.csv").is_file()


def test_cli_paths_are_relative_to_the_callers_cwd(tmp_path, monkeypatch):
    """`mokuflow vqa clean --scores RAW.csv --out DIR` run outside the project: paths are the user's."""
    from tasks.cli import main

    rows = ["video_id,rater_id,score"] + [f"v{v},r{r},{1 + (v + r) % 5}" for v in range(6) for r in range(5)]
    (tmp_path / "raw.csv").write_text("\n".join(rows) + "\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MOKUFLOW_PARAMS", raising=False)
    assert main(["vqa", "clean", "--scores", "raw.csv", "--out", "cleaned"]) == 0
    import pandas as pd

    scores = pd.read_csv(tmp_path / "cleaned" / "scores.csv")
    assert sorted(scores["video_id"]) == [f"v{v}" for v in range(6)]
    assert {"rater_id", "bias", "inconsistency"} <= set(pd.read_csv(tmp_path / "cleaned" / "raters.csv"))
