"""Failure behaviour of the shared core: outputs a stage does not own, interrupted swaps, concurrent
writers, unwritable outputs, bad params and ``--set`` values, the CLI's help and one-line errors."""
from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from tasks.cli import main
from tasks.core import MokuflowError, atomic_dir, atomic_path
from tasks.core.outputs import MANIFEST, _locked
from tasks.core.tables import numeric, read_table

REPO = Path(__file__).resolve().parents[1]
PARAMS = REPO / "params.yaml"


def _scores(path: Path) -> Path:
    rows = ["video_id,rater_id,score"] + [f"v{v},r{r},{1 + (v + r) % 5}" for v in range(6) for r in range(5)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(rows) + "\n")
    return path


def _clean(scores, out, *extra, params=PARAMS) -> int:
    return main(["vqa", "clean", "--params", str(params), "--scores", str(scores), "--out", str(out), *extra])


def _one_error_line(capsys, *needles) -> str:
    """The stage's stderr: exactly one error line (log lines aside), containing every needle."""
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("[mokuflow]")]
    assert len(lines) == 1, err
    assert lines[0].startswith("mokuflow ") and ": error: " in lines[0], lines[0]
    for n in needles:
        assert str(n) in lines[0], (n, lines[0])
    return lines[0]


def _snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ----------------------------------------------------------------------- 1. a stage writes only what it owns

def test_out_folder_holding_the_input_and_other_files_is_refused(tmp_path, capsys):
    d = tmp_path / "d"
    scores = _scores(d / "scores.csv")
    (d / "notes.txt").write_text("mine")
    (d / "sub").mkdir()
    (d / "sub" / "more.txt").write_text("mine too")
    before = _snapshot(d)
    assert _clean(scores, d) == 2
    _one_error_line(capsys, d, "input", scores)
    assert _clean(_scores(tmp_path / "raw.csv"), d) == 2  # the input elsewhere: the other files still count
    _one_error_line(capsys, d, "notes.txt", "sub/more.txt")
    assert _snapshot(d) == before and _hidden(tmp_path) == []


def test_out_dot_is_refused(tmp_path, monkeypatch, capsys):
    scores = _scores(tmp_path / "raw.csv")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert _clean(scores, ".") == 2
    _one_error_line(capsys, work, "working directory")
    assert list(work.iterdir()) == []


def test_out_that_is_a_file_is_refused_and_kept(tmp_path, capsys):
    scores = _scores(tmp_path / "raw.csv")
    f = tmp_path / "result"
    f.write_text("precious")
    assert _clean(scores, f) == 2
    _one_error_line(capsys, f, "not a folder")
    assert f.read_text() == "precious" and _hidden(tmp_path) == []


def test_manifest_lists_what_the_stage_wrote_and_guards_the_folder(tmp_path, capsys):
    scores = _scores(tmp_path / "raw.csv")
    out = tmp_path / "clean"
    assert _clean(scores, out) == 0
    listed = (out / MANIFEST).read_text().splitlines()[1:]
    assert listed == sorted(p.name for p in out.iterdir() if p.name != MANIFEST)
    assert _clean(scores, out) == 0  # its own output: replaced
    for i in range(5):
        (out / f"user{i}.txt").write_text("x")
    before = _snapshot(out)
    assert _clean(scores, out) == 2
    line = _one_error_line(capsys, out, "5 file(s)", "user0.txt, user1.txt, user2.txt and 2 more")
    assert "user3.txt" not in line
    assert _snapshot(out) == before


def test_folder_from_before_manifests(tmp_path, capsys):
    """No manifest: adopted when every file is one the stage writes; anything else is refused."""
    scores = _scores(tmp_path / "raw.csv")
    old = tmp_path / "old"
    old.mkdir()
    for name in ("scores.csv", "raters.csv", "contents.csv", "clean.json"):  # contents.csv: not written now
        (old / name).write_text("old")
    assert _clean(scores, old) == 0
    assert not (old / "contents.csv").exists() and (old / MANIFEST).is_file()
    other = tmp_path / "other"
    other.mkdir()
    (other / "scores.csv").write_text("old")
    (other / "thesis.tex").write_text("mine")
    assert _clean(scores, other) == 2
    _one_error_line(capsys, other, "thesis.tex", "not written by this stage")
    assert (other / "scores.csv").read_text() == "old"


def test_atomic_dir_own_files_and_empty_folders(tmp_path):
    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        (tmp / "a").mkdir()
        (tmp / "a" / "x.txt").write_text("1")
        (tmp / "empty").mkdir()
    assert (target / MANIFEST).read_text().splitlines()[1:] == ["a/x.txt", "empty/"]
    with atomic_dir(target) as tmp:  # replaces all it owned, sub-folders included
        (tmp / "b.txt").write_text("2")
    assert sorted(_snapshot(target)) == [MANIFEST, "b.txt"] and not (target / "a").exists()
    (target / "stray").mkdir()  # an empty folder of someone else's is foreign too
    with pytest.raises(MokuflowError, match="stray/"):
        with atomic_dir(target) as tmp:
            (tmp / "b.txt").write_text("3")
    assert (target / "b.txt").read_text() == "2"


# ------------------------------------------------------------------------ 2. interrupted swap, concurrency

class Killed(BaseException):
    """Stands for SIGKILL: nothing in atomic_dir handles it."""


def test_interrupted_swap_is_repaired_by_the_next_run(tmp_path, monkeypatch):
    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        (tmp / "v.txt").write_text("old")
    real_replace = os.replace
    calls = []

    def replace_then_die(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # target -> .old done, tmp -> target never happens
            raise Killed()
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_then_die)
    with pytest.raises(Killed):
        with atomic_dir(target) as tmp:
            (tmp / "v.txt").write_text("new")
    monkeypatch.setattr(os, "replace", real_replace)
    assert not target.exists()
    assert [p.name.startswith(".out.old-") for p in tmp_path.iterdir()] == [True]
    # the next run repairs first: a failing one leaves the previous output back in place
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            raise RuntimeError("boom")
    assert (target / "v.txt").read_text() == "old" and _hidden(tmp_path) == []
    with atomic_dir(target) as tmp:
        (tmp / "v.txt").write_text("newer")
    assert (target / "v.txt").read_text() == "newer" and _hidden(tmp_path) == []


def test_sigkill_between_the_renames(tmp_path):
    """A real kill: the temp folder, the moved-aside output and the lock file are left behind; the next
    atomic_dir restores or replaces, and cleans up."""
    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        (tmp / "v.txt").write_text("old")
    script = textwrap.dedent(f"""
        import os, signal
        from tasks.core import atomic_dir
        real = os.replace
        def replace(src, dst):
            if str(src).endswith(".tmp") and str(dst) == {str(target)!r}:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(src, dst)
        os.replace = replace
        with atomic_dir({str(target)!r}) as tmp:
            (tmp / "v.txt").write_text("new")
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    left = _hidden(tmp_path)
    assert not target.exists() and any(n.startswith(".out.old-") for n in left) and \
        any(n.endswith(".tmp") for n in left), left
    with atomic_dir(target) as tmp:
        (tmp / "w.txt").write_text("next")
    assert sorted(_snapshot(target)) == [MANIFEST, "w.txt"] and _hidden(tmp_path) == []


def _writer(target: str, tag: str, barrier, results) -> None:
    import time

    try:
        barrier.wait(30)
        with atomic_dir(target) as tmp:
            for i in range(20):
                (tmp / f"part{i}.txt").write_text(tag)
            time.sleep(0.2)
        results.put((tag, "ok"))
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        results.put((tag, f"{type(e).__name__}: {e}"))


def test_concurrent_writers_both_succeed_and_the_output_is_whole(tmp_path):
    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        (tmp / "part0.txt").write_text("first")
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(str(target), tag, barrier, results)) for tag in ("A", "B", "C")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    got = dict(results.get(timeout=5) for _ in procs)
    assert got == {"A": "ok", "B": "ok", "C": "ok"}, got
    files = _snapshot(target)
    contents = {v for k, v in files.items() if k != MANIFEST}
    assert len(files) == 21 and len(contents) == 1 and contents <= {b"A", b"B", b"C"}  # one writer's, whole
    assert _hidden(tmp_path) == []


def test_a_writer_that_cannot_get_the_lock_fails_with_one_line(tmp_path):
    target = tmp_path / "out"
    errors = []

    def second():
        try:
            with atomic_dir(target, lock_timeout=0.3) as tmp:
                (tmp / "x").write_text("x")
        except MokuflowError as e:
            errors.append(str(e))

    with _locked(target):
        t = threading.Thread(target=second)
        t.start()
        t.join(30)
    assert len(errors) == 1 and "another process is writing" in errors[0] and "\n" not in errors[0]
    assert str(target) in errors[0] and not target.exists() and _hidden(tmp_path) == []


# --------------------------------------------------------------------------------- 4. unwritable outputs

def test_out_under_a_regular_file_or_the_root(tmp_path, capsys):
    scores = _scores(tmp_path / "raw.csv")
    (tmp_path / "afile").write_text("x")
    assert _clean(scores, tmp_path / "afile" / "x") == 2
    _one_error_line(capsys, tmp_path / "afile", "is a file")
    assert _clean(scores, "/") == 2
    _one_error_line(capsys, "filesystem root")
    for bad in (tmp_path / "afile" / "y.json", Path("/")):
        with pytest.raises(MokuflowError):
            with atomic_path(bad):
                pass
    with pytest.raises(MokuflowError, match="is a folder"):
        with atomic_path(tmp_path):
            pass
    assert (tmp_path / "afile").read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_out_in_a_read_only_folder(tmp_path, capsys):
    scores = _scores(tmp_path / "raw.csv")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert _clean(scores, ro / "out") == 2
        _one_error_line(capsys, ro / "out")
        with pytest.raises(MokuflowError, match="cannot write"):
            with atomic_path(ro / "x.json"):
                pass
    finally:
        ro.chmod(0o755)


def test_permission_errors_are_one_line(tmp_path, monkeypatch, capsys):
    """What a read-only folder does for a non-root user, simulated (tests run as root)."""
    import tempfile

    scores = _scores(tmp_path / "raw.csv")
    real_open, real_mkstemp = os.open, tempfile.mkstemp

    def no_lock(path, *a, **k):
        if str(path).endswith(".lock"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *a, **k)

    monkeypatch.setattr(os, "open", no_lock)
    assert _clean(scores, tmp_path / "out") == 2
    _one_error_line(capsys, tmp_path / "out", "Permission denied")
    monkeypatch.setattr(os, "open", real_open)

    def no_temp(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", no_temp)
    with pytest.raises(MokuflowError, match="cannot write in .*Permission denied"):
        with atomic_path(tmp_path / "x.json"):
            pass
    monkeypatch.setattr(tempfile, "mkstemp", real_mkstemp)
    monkeypatch.setattr(tempfile, "mkdtemp", no_temp)
    with pytest.raises(MokuflowError, match="cannot write in .*Permission denied"):
        with atomic_dir(tmp_path / "out"):
            pass
    assert not (tmp_path / "out").exists() and _hidden(tmp_path) == []


# ------------------------------------------------------------------------------- 4. CLI help, bad params

def test_help_of_every_study_and_stage_exits_0(capsys):
    from tasks.core.study import studies

    calls = [["--help"]]
    for name, study in studies().items():
        calls.append([name, "--help"])
        calls += [[name, stage, "--help"] for stage in study.commands]
    for argv in calls:
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 0, argv
        assert "usage: mokuflow" in capsys.readouterr().out, argv


def _params_file(tmp_path: Path, text: str | bytes) -> Path:
    p = tmp_path / "p.yaml"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


MLFLOW = "mlflow:\n  tracking_uri: sqlite:///x.db\n"


@pytest.mark.parametrize("text, needles", [
    (MLFLOW, ["no 'vqa' section"]),
    (MLFLOW + "vqa: 5\n", ["vqa must be a mapping"]),
    (b"\x7fELF\x02\x01\x01\x00\x00\x00\xff\xfe", ["not a text file"]),
    ("", ["expected a mapping"]),
    ("vqa: {}\n", ["missing section 'mlflow'"]),
    ("a: [\n", ["not valid YAML"]),
], ids=["no-section", "scalar-section", "binary", "empty", "no-mlflow", "bad-yaml"])
def test_bad_params_files_are_one_line(tmp_path, capsys, text, needles):
    p = _params_file(tmp_path, text)
    assert _clean(_scores(tmp_path / "raw.csv"), tmp_path / "out", params=p) == 2
    _one_error_line(capsys, p, *needles)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("setting, needles", [
    ("vqa.clean.min_std=0", ["vqa.clean.min_std", "greater than 0"]),
    ("vqa.clean.min_std=-1", ["vqa.clean.min_std", "greater than 0"]),
    ("vqa.clean.max_iter=0", ["vqa.clean.max_iter", "greater than 0"]),
    ("vqa.clean.tol=-1", ["vqa.clean.tol", "greater than or equal to 0"]),
    ("vqa.clean.max_iter=abc", ["vqa.clean.max_iter", "valid integer", "'abc'"]),
    ("vqa.clean.max_iter=true", ["vqa.clean.max_iter", "expected a number"]),
    ("vqa.clean.max_iter=1.5", ["vqa.clean.max_iter", "valid integer"]),
    ("vqa.clean=5", ["vqa.clean", "expected a mapping of settings", "got 5"]),
    ("vqa.clean.method=[unclosed", ["vqa.clean.method", "not valid YAML"]),
    ("vqa.clean.method=5", ["vqa.clean.method", "'mle' or 'mos'"]),
    ("vqa.clean.nope=1", ["unknown key 'vqa.clean.nope'"]),
    ("vqa.clean.scale=[5, 1]", ["vqa.clean.scale", "min < max"]),
    ("vqa.clean.scale=3", ["vqa.clean.scale", "valid list"]),
    ("vqa.clean.out_of_scale=keep", ["vqa.clean.out_of_scale", "'refuse' or 'drop'"]),
    ("novalue", ["key=value"]),
])
def test_bad_set_values_are_one_line_naming_the_key(tmp_path, capsys, setting, needles):
    out = tmp_path / "out"
    assert _clean(_scores(tmp_path / "raw.csv"), out, "--set", setting) == 2
    _one_error_line(capsys, *needles)
    assert not out.exists()


def test_schema_keys_absent_from_params_yaml_can_be_set(tmp_path):
    """Keys the schema declares with a default may be set even where params.yaml leaves them out."""
    import json

    import yaml

    params = yaml.safe_load(PARAMS.read_text())
    for k in ("scale", "out_of_scale"):
        params["vqa"]["clean"].pop(k, None)
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(params))
    raw = _scores(tmp_path / "raw.csv")
    raw.write_text(raw.read_text() + "v0,r9,45\n")  # a typo for 4 or 5
    out = tmp_path / "out"
    assert _clean(raw, out, params=p) == 2
    assert _clean(raw, out, "--set", "vqa.clean.out_of_scale=drop", params=p) == 0
    assert json.loads((out / "clean.json").read_text())["n_out_of_scale"] == 1


# ------------------------------------------------------------------------------- 5. the one table reader

def test_read_table_separators_ids_and_lines(tmp_path):
    cases = {
        "comma.csv": "video_id,rater_id,score\nNA,None,3\n\n007,r2,n/a\n",
        "semi.csv": "\ufeffvideo_id;rater_id;score\nNA;None;3\n\n007;r2;n/a\n",
        "tab.tsv": "video_id\trater_id\tscore\nNA\tNone\t3\n\n007\tr2\tn/a\n",
        "pipe.txt": "video_id | rater_id | score\nNA | None | 3\n\n007 | r2 | n/a\n",
    }
    for name, text in cases.items():
        t = read_table(_params_file(tmp_path, text).rename(tmp_path / name), ("video_id", "score"),
                       id_columns=("video_id", "rater_id"))
        assert t["video_id"].tolist() == ["NA", "007"] and t["rater_id"].tolist() == ["None", "r2"], name
        assert t.index.tolist() == [2, 4], name  # line numbers in the file
        values, n_na = numeric(t, "score", path=name)
        assert values.iloc[0] == 3 and values.isna().iloc[1] and n_na == 1, name


@pytest.mark.parametrize("text, needles", [
    ("video_id;rater_id;score\na;r1;3,5\n", ["non-numeric score", "lines [2]", "decimal commas"]),
    ("video_id,rater_id,score\na,r1,True\n", ["non-numeric score", "'True'"]),
    ("video_id,rater_id,score\na,r1,3\nb,r1,3,4\n", ["line 3 has 4 fields"]),
    ("video_id,video_id,score\na,a,3\n", ["duplicate column"]),
    ("who;rater_id;score\na;r1;3\n", ["missing column(s) ['video_id']", "semicolon-separated"]),
    ("video_id,rater_id,score\n,r1,3\n", ["empty video_id on lines [2]"]),
    ("video_id,rater_id,score\na,r1,inf\n", ["infinite score"]),
])
def test_read_table_errors_name_file_and_lines(tmp_path, text, needles):
    p = _params_file(tmp_path, text)
    with pytest.raises(MokuflowError) as e:
        t = read_table(p, ("video_id",), id_columns=("video_id",))
        numeric(t, "score", path=p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)
    for n in needles:
        assert n in str(e.value), (n, str(e.value))


def test_read_table_binary_and_not_utf8(tmp_path):
    for data, needle in ((b"\x00\x01\x02video_id", "binary"), (b"video_id\n\xff\xfe\n", "not UTF-8")):
        p = _params_file(tmp_path, data)
        with pytest.raises(MokuflowError, match=needle):
            read_table(p, ("video_id",))
