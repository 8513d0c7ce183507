"""The serving contract every study shares (tasks/core/serving.py), on toy pyfuncs: the device param,
and for studies that write files the required ``out_dir``, one folder per row, folder inputs and a bad
row failing alone. Also: every declared study's signature carries the core's params."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from tasks.core.serving import OUT_DIR_KEY, ServingInputError, StudyPyfunc, file_path, row_dirs


class Echo(StudyPyfunc):
    """Reads nothing: answers each row with the device it was given."""
    inputs = (("path", "string"),)
    outputs = (("device", "string"),)

    def load(self, model_file):
        pass

    def prepare(self, row, params):
        return file_path(row, "path")

    def infer(self, items, params):
        return [[{"device": params["device"]}] for _ in items]


class Writer(StudyPyfunc):
    """A study that writes files: one file per row into the folder the core gave it."""
    inputs = (("source", "string"),)
    outputs = (("written", "string"),)
    writes_files = True

    def load(self, model_file):
        pass

    def prepare(self, row, params):
        return {"source": Path(file_path(row, "source", folder=True)), "out": Path(row[OUT_DIR_KEY])}

    def infer(self, items, params):
        out = []
        for it in items:
            it["out"].mkdir(parents=True, exist_ok=True)
            kind = "folder" if it["source"].is_dir() else "file"
            (it["out"] / "done.txt").write_text(f"{kind} {it['source'].name}")
            out.append([{"written": str(it["out"] / "done.txt")}])
        return out


def test_device_param_auto_cpu_and_refusals(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("x")
    m = Echo()
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert m.predict(None, pd.DataFrame({"path": [str(f)]}))["device"].tolist() == [want]
    assert m.predict(None, pd.DataFrame({"path": [str(f)]}), params={"device": "cpu"})["device"].tolist() == ["cpu"]
    with pytest.raises(ServingInputError, match="params device: 'gpu0' is not a device"):
        m.predict(None, pd.DataFrame({"path": [str(f)]}), params={"device": "gpu0"})
    if not torch.cuda.is_available():
        with pytest.raises(ServingInputError, match="no CUDA GPU"):
            m.predict(None, pd.DataFrame({"path": [str(f)]}), params={"device": "cuda"})
    assert [n for n, _, _ in Echo.all_params()] == ["device"]
    assert "out_dir" not in [n for n, _, _ in Echo.all_params()]


def test_file_writing_study_gets_a_folder_per_row_and_folder_inputs(tmp_path):
    (tmp_path / "frames").mkdir()
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"x")
    other = tmp_path / "sub"
    other.mkdir()
    (other / "clip.mp4").write_bytes(b"y")
    rows = pd.DataFrame({"source": [str(clip), str(tmp_path / "frames"), str(tmp_path / "gone.mp4"),
                                    str(other / "clip.mp4")]})
    out = Writer().predict(None, rows, params={"out_dir": str(tmp_path / "out")})
    assert list(out.columns) == ["written", "error"]
    assert out["error"].isna().tolist() == [True, True, False, True]
    assert "gone.mp4: file or folder not found" in out["error"][2]
    written = [Path(p) for p in out["written"][[0, 1, 3]]]
    assert [p.parent.name for p in written] == ["clip", "frames", "clip-2"]  # same stem: its own folder
    assert [p.read_text() for p in written] == ["file clip.mp4", "folder frames", "file clip.mp4"]
    assert all(p.parent.parent == (tmp_path / "out").resolve() for p in written)
    assert not (tmp_path / "out" / "gone").exists()


def test_file_writing_study_needs_out_dir_and_a_folder(tmp_path):
    rows = pd.DataFrame({"source": [str(tmp_path)]})
    with pytest.raises(ServingInputError, match="params out_dir is required"):
        Writer().predict(None, rows)
    (tmp_path / "f").write_text("x")
    with pytest.raises(ServingInputError, match="out_dir is a file"):
        Writer().predict(None, rows, params={"out_dir": str(tmp_path / "f")})
    assert [n for n, _, _ in Writer.all_params()] == ["device", "out_dir"]
    params = {p.name for p in Writer.signature().params.params}
    assert params == {"device", "out_dir"}


def test_row_dirs_are_unique_and_safe(tmp_path):
    rows = [{"v": "a/x.mp4"}, {"v": "b/x.mp4"}, {"v": "x-2.mp4"}, {"v": ""}, {"v": "../..//"}, {"v": "ü ß.mp4"}]
    names = [d.name for d in row_dirs(tmp_path, rows, "v")]
    assert names[:4] == ["x", "x-2", "x-2-2", "row3"]
    assert len(set(names)) == len(names) and all("/" not in n and n not in (".", "..") for n in names)


def test_every_study_signature_takes_the_device_param():
    from tasks.core.study import studies

    for name, study in studies().items():
        cls = study.load(study.serving)
        params = {p.name: p.default for p in cls.signature().params.params}
        assert params.get("device") == "auto", name
        assert ("out_dir" in params) == cls.writes_files, name
