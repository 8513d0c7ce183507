"""The shared plumbing: params loading and overrides, atomic writes, DVC-compatible data hashes."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tasks.core import (
    MokuflowError,
    atomic_dir,
    atomic_path,
    dvc_dir_hash,
    flatten,
    load_params,
    parse_override,
    resolve,
)

REPO = Path(__file__).resolve().parents[1]


def test_params_overrides_and_paths(tmp_path):
    (tmp_path / "params.yaml").write_text("a:\n  b: 1\n  out: data/x\n")
    # a bare file (no study sections): the mechanism alone, schema checks off
    p = load_params(tmp_path / "params.yaml", dict([parse_override("a.b=[1, 2]")]), validate=False)
    assert p["a"]["b"] == [1, 2]
    assert resolve(p, p["a"]["out"]) == tmp_path / "data" / "x"
    assert flatten({"a": {"b": 1, "c": {"d": None}}}) == {"a.b": 1, "a.c.d": None}


def test_params_errors_name_the_problem(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("a: [1,\n")
    with pytest.raises(MokuflowError, match="params.yaml: not valid YAML"):
        load_params(f)
    f.write_text("a:\n  b: 1\n")
    with pytest.raises(MokuflowError, match="unknown key 'a.c'"):
        load_params(f, {"a.c": 2})
    with pytest.raises(MokuflowError, match="not found"):
        load_params(tmp_path / "nope.yaml")


def test_atomic_path_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.csv"]
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"


def test_atomic_dir_swaps_whole_folder_only_on_success(tmp_path):
    from tasks.core.io import MANIFEST

    target = tmp_path / "clean"
    with atomic_dir(target) as tmp:  # the previous output, with its ownership manifest
        (tmp / "scores.csv").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "scores.csv").write_text("half")
            raise RuntimeError("boom")
    assert (target / "scores.csv").read_text() == "old"
    with atomic_dir(target) as tmp:
        (tmp / "raters.csv").write_text("new")
    assert sorted(os.listdir(target)) == [MANIFEST, "raters.csv"]
    assert sorted(os.listdir(tmp_path)) == ["clean"]


@pytest.mark.skipif(shutil.which("dvc") is None and not (REPO / ".venv/bin/dvc").exists(), reason="dvc not installed")
def test_dir_hash_matches_what_dvc_records(tmp_path):
    """The data_version tag we log to MLflow must be the hash dvc.lock / .dvc files record."""
    dvc = shutil.which("dvc") or str(REPO / ".venv/bin/dvc")
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "b.csv").write_text("x,y\n1,2\n")
    (data / "a b.txt").write_text("hello")
    (data / "sub" / "c.bin").write_bytes(bytes(range(256)) * 10)
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([dvc, "init", "-q"], cwd=tmp_path, check=True, env=env)
    subprocess.run([dvc, "add", "-q", "data"], cwd=tmp_path, check=True, env=env)
    import yaml

    recorded = yaml.safe_load((tmp_path / "data.dvc").read_text())["outs"][0]["md5"]
    assert dvc_dir_hash(data) == recorded
    (data / "b.csv").write_text("x,y\n1,3\n")
    assert dvc_dir_hash(data) != recorded


def test_tracking_uri_is_absolute_whatever_the_cwd(tmp_path):
    """Every process (DVC stage, Prefect runner, Lightning's logger) must write to the same store."""
    from tasks.core.tracking import tracking_uri

    (tmp_path / "params.yaml").write_text("mlflow:\n  tracking_uri: x\n")
    p = load_params(tmp_path / "params.yaml", validate=False)
    for given, expected in [("sqlite:///mlflow.db", f"sqlite:///{tmp_path}/mlflow.db"),
                            ("sqlite:////abs/m.db", "sqlite:////abs/m.db"),
                            ("mlruns", (tmp_path / "mlruns").as_uri()),
                            ("file:mlruns", f"file:{tmp_path}/mlruns"),
                            ("http://mlflow:5000", "http://mlflow:5000")]:
        p["mlflow"]["tracking_uri"] = given
        assert tracking_uri(p) == expected, given


def test_read_json_names_the_file_and_the_problem(tmp_path):
    from tasks.core import read_json

    for name, data, needle in (("bin.json", b"\xff\xfe\x00", "not UTF-8"), ("bad.json", b"{", "not JSON")):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(MokuflowError, match=needle) as e:
            read_json(tmp_path / name)
        assert name in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(MokuflowError, match="not a file"):
        read_json(tmp_path)
    with pytest.raises(MokuflowError, match="not found .has the stage"):
        read_json(tmp_path / "missing.json")


def test_saved_models_are_byte_reproducible(tmp_path):
    """The same weights give the same file whatever its name, so DVC hashes of model.pt agree."""
    import torch

    from models.common.io import save_torch

    obj = {"state_dict": {"w": torch.arange(6.0).reshape(2, 3)}, "config": {"k": 1}}
    a, b = save_torch(tmp_path / "a" / "model.pt", obj), save_torch(tmp_path / "other.pt", obj)
    assert a.read_bytes() == b.read_bytes()
    assert torch.equal(torch.load(a, weights_only=True)["state_dict"]["w"], obj["state_dict"]["w"])
    assert not list(tmp_path.rglob(".*.tmp"))


def test_link_or_copy_links_keeps_an_existing_file_and_makes_parents(tmp_path):
    from tasks.core import link_or_copy

    src = tmp_path / "a.bin"
    src.write_bytes(b"frames")
    dst = link_or_copy(src, tmp_path / "out" / "deep" / "a.bin")
    assert dst.read_bytes() == b"frames" and os.stat(dst).st_ino == os.stat(src).st_ino  # a link, not a copy
    other = tmp_path / "b.bin"
    other.write_bytes(b"other")
    assert link_or_copy(other, dst).read_bytes() == b"frames"  # a second row naming the same target


def test_split_config_refuses_fractions_that_leave_nothing_to_train():
    from pydantic import ValidationError

    from tasks.core.schema import SplitConfig

    assert SplitConfig(val_fraction=0.2, test_fraction=0.2).seed == 0
    with pytest.raises(ValidationError, match="below 1"):
        SplitConfig(val_fraction=0.5, test_fraction=0.5)


def test_interval_verdict_reads_the_paired_interval():
    from models.common.stats import interval_verdict

    assert interval_verdict({"value": 0.1, "ci_low": 0.01, "ci_high": 0.2}) == "holds"
    assert interval_verdict({"value": -0.1, "ci_low": -0.2, "ci_high": -0.01}) == "reversed"
    assert interval_verdict({"value": 0.1, "ci_low": -0.01, "ci_high": 0.2}) == "not shown"
    assert interval_verdict({"value": 0.1, "ci_low": None, "ci_high": None}) == "not shown"
    assert interval_verdict({"value": 0.1, "ci_low": 0.01, "ci_high": 0.2}, n=5, min_n=10) == "not shown"
