"""The core's DVC-facing pieces, each on a small case: provenance tags from DVC's hashes, outputs made
portable, per-run overrides written and put back, the core tools every study has, stage error lines."""
from __future__ import annotations

import pytest
import yaml

from tasks.core import MokuflowError, dvc_dir_hash, load_params, portable
from tasks.core.provenance import data_version, locked_outs, provenance, read_lock
from tests.conftest import write_tiny_params


@pytest.fixture
def params(tmp_path):
    p = load_params(write_tiny_params(tmp_path))
    for d in ("raw", "clean"):
        (tmp_path / f"data/vqa/{d}").mkdir(parents=True)
        (tmp_path / f"data/vqa/{d}/a.txt").write_text(d)
    return p


def _lock(tmp_path, **md5):
    stages = {f"vqa-{k}": {"cmd": "x", "outs": [{"path": f"data/vqa/{k}", "hash": "md5", "md5": v}]}
              for k, v in md5.items()}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": stages}))


def test_provenance_follows_dvc_hashes_of_raw_and_clean(params, tmp_path):
    raw, clean = dvc_dir_hash(tmp_path / "data/vqa/raw"), dvc_dir_hash(tmp_path / "data/vqa/clean")
    tags = provenance(params, "vqa")
    assert tags["dvc.md5.data/vqa/raw"] == raw and tags["dvc.md5.data/vqa/clean"] == clean
    assert tags["data_version"] == data_version({"data/vqa/raw": raw, "data/vqa/clean": clean})
    assert tags["dvc.restorable"] == "false"                  # no dvc.lock records it
    _lock(tmp_path, raw=raw, clean=clean)
    assert provenance(params, "vqa")["dvc.restorable"] == "true"
    (tmp_path / "data/vqa/raw/video.mp4").write_bytes(b"\0\1")  # a media file changes the version
    again = provenance(params, "vqa")
    assert again["data_version"] != tags["data_version"] and again["dvc.restorable"] == "false"


def test_lock_reader(tmp_path):
    assert read_lock(tmp_path / "dvc.lock") == {}
    _lock(tmp_path, raw="abc.dir")
    assert locked_outs(read_lock(tmp_path / "dvc.lock")) == {"data/vqa/raw": ("vqa-raw", "abc.dir")}
    (tmp_path / "dvc.lock").write_text("stages: [unclosed")
    with pytest.raises(MokuflowError, match="dvc.lock: not a DVC lock file"):
        read_lock(tmp_path / "dvc.lock")


def test_portable_makes_project_paths_relative(params, tmp_path):
    inside, outside = tmp_path / "data/x.mp4", "/datasets/coco/images"
    got = portable(params, {"a": str(inside), "b": [inside, outside], "c": 3, "d": "plain"})
    assert got == {"a": "data/x.mp4", "b": ["data/x.mp4", outside], "c": 3, "d": "plain"}


def test_overrides_are_written_with_comments_and_put_back_byte_for_byte(tmp_path):
    from flows.pipeline import overridden

    f = tmp_path / "params.yaml"
    f.write_text("# top comment\nvqa:\n  train:\n    max_epochs: 25   # why 25\n")
    before = f.read_bytes()
    with pytest.raises(RuntimeError):
        with overridden(f, {"vqa.train.max_epochs": 2}):
            text = f.read_text()
            assert "max_epochs: 2" in text and "# why 25" in text and "# top comment" in text
            raise RuntimeError("a stage failed")
    assert f.read_bytes() == before
    with pytest.raises(MokuflowError, match="unknown key"):
        with overridden(f, {"vqa.train.typo": 1}):
            pass
    assert f.read_bytes() == before


def test_every_study_has_the_core_tools_outside_its_pipeline():
    from tasks.core.study import CORE_TOOLS, MAX, Study, studies

    for study in studies().values():
        assert set(CORE_TOOLS) <= set(study.commands) and not set(CORE_TOOLS) & set(study.pipeline)
        assert study.stage_module("restore").__name__ == "tasks.core.restore"
    with pytest.raises(ValueError, match="core's tools"):
        Study(name="x", stages={"restore": "mine"}, metrics={"m": MAX}, primary_metric="m", monitor=("m", MAX),
              serving="a:b", schema="a:b")


def test_a_failed_stage_is_reported_by_its_error_line():
    from flows.stages import _last_line

    log = "Running stage 'vqa-clean':\n> mokuflow vqa clean\nmokuflow vqa clean: error: x.csv: line 3: bad\nERROR: failed"
    assert _last_line(log) == "mokuflow vqa clean: error: x.csv: line 3: bad"
    assert _last_line("x\nERROR: failed to reproduce 'vqa-clean'") == "ERROR: failed to reproduce 'vqa-clean'"
    assert _last_line("a\nmokuflow vqa clean: error: x.csv: bad\n\n") == "mokuflow vqa clean: error: x.csv: bad"


def test_a_second_run_in_the_same_second_gets_its_own_folder(tmp_path, monkeypatch):
    """Run folders are named <hash>-<time to the second>-<pid>: two runs one process starts within a
    second (a retrain right after a run, in-process flows) must not share, and overwrite, one folder."""
    import time

    from tasks.core.training import find_resumable, new_run_dir

    monkeypatch.setattr(time, "strftime", lambda fmt, *a: "20261203-115139")  # the clock stands still
    first, second, third = (new_run_dir(tmp_path / "runs", "abc") for _ in range(3))
    assert len({first, second, third}) == 3 and all(d.is_dir() and not any(d.iterdir()) for d in (first, second, third))
    assert second.name == f"{first.name}-2" and third.name == f"{first.name}-3"
    # the newest of a hash is the one resumed: the suffixed folder sorts after the first
    for d in (first, second):
        (d / "checkpoints").mkdir()
        (d / "checkpoints" / "last.ckpt").write_bytes(b"x")
        (d / "run.json").write_text("{}")
    assert find_resumable(tmp_path / "runs", "abc") == second
