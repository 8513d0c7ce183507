"""acquire: synthetic, folder (label files / raw scores), url (checksum, resume), atomicity."""
from __future__ import annotations

import hashlib
import http.server
import io
import json
import shutil
import tarfile
import threading
from pathlib import Path

import cv2  # noqa: F401  (declared dependency: a broken import must fail)
import numpy as np
import pandas as pd
import pytest

from tasks.core import MokuflowError, load_params  # noqa: E402
from tasks.vqa import acquire  # noqa: E402
from tasks.vqa.synthetic import write_mp4  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO.parent / "shared" / "fixtures" / "vqa"


def make_params(tmp_path: Path, **overrides) -> dict:
    base = {"vqa.synthetic.n_contents": 4, "vqa.synthetic.versions_per_content": 2,
            "vqa.synthetic.n_frames": 4, "vqa.synthetic.height": 24, "vqa.synthetic.width": 32,
            "vqa.synthetic.n_raters": 6, "vqa.data.split.val_fraction": 0.25,
            "vqa.data.split.test_fraction": 0.25}
    params = load_params(REPO / "params.yaml", base | overrides)
    params["_root"] = str(tmp_path)  # every relative path lands in tmp_path
    return params


def raw(tmp_path: Path) -> Path:
    return tmp_path / "data" / "vqa" / "raw"


def fixture(name: str) -> Path:
    p = FIXTURES / name
    if not p.is_file():
        pytest.skip(f"fixture {p} absent")
    return p


def tiny_video(path: Path, seed: int = 0, n: int = 4) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_mp4(path, rng.integers(0, 255, (n, 16, 24, 3), dtype=np.uint8), fps=8)
    return path


def check_layout(out: Path) -> pd.DataFrame:
    videos = pd.read_csv(out / "videos.csv", dtype=str)
    assert list(videos.columns) == ["video_id", "path", "content_id", "split"]
    assert videos["split"].isin(["train", "val", "test"]).all()
    assert (videos.groupby("content_id")["split"].nunique() == 1).all()  # no content in two splits
    assert all((out / p).is_file() for p in videos["path"])
    assert not videos["video_id"].duplicated().any()
    return videos


# ------------------------------------------------------------------------------------ synthetic

def test_synthetic_small_run(tmp_path):
    summary = acquire.run(make_params(tmp_path))
    out = raw(tmp_path)
    videos = check_layout(out)
    assert len(videos) == summary["n_videos"] == 8 and videos["content_id"].nunique() == 4
    assert set(videos["split"]) == {"train", "val", "test"}
    scores = pd.read_csv(out / "scores.csv", dtype={"video_id": str})
    assert list(scores.columns) == ["video_id", "rater_id", "score", "content_id"]
    assert set(scores["video_id"]) == set(videos["video_id"])
    truth = pd.read_csv(out / "truth.csv")
    assert {"video_id", "content_id", "true_quality", "sev_blur"} <= set(truth.columns)
    meta = json.loads((out / "acquire.json").read_text())
    assert meta["source"] == "synthetic" and meta["unreadable"] == []
    # deterministic: the same params give the same split and truth
    acquire.run(make_params(tmp_path))
    pd.testing.assert_frame_equal(videos, pd.read_csv(out / "videos.csv", dtype=str))
    pd.testing.assert_frame_equal(truth, pd.read_csv(out / "truth.csv"))


def test_splits_by_content_and_seed():
    ids = [f"c{i}" for i in range(40)]
    a = acquire.assign_splits(ids, seed=0, val_fraction=0.15, test_fraction=0.25)
    b = acquire.assign_splits(ids, seed=1, val_fraction=0.15, test_fraction=0.25)
    assert sum(v == "test" for v in a.values()) == 10 and sum(v == "val" for v in a.values()) == 6
    assert a == acquire.assign_splits(list(reversed(ids)), seed=0, val_fraction=0.15, test_fraction=0.25)
    assert a != b


# --------------------------------------------------------------------------------------- folder

def test_folder_labels_with_corrupt_and_missing(tmp_path):
    konvid, vsfa = fixture("konvid_10053703034.mp4"), fixture("vsfa_test.mp4")
    vids = tmp_path / "vids"
    (vids / "sub").mkdir(parents=True)
    shutil.copy(konvid, vids / "sub" / konvid.name)
    shutil.copy(vsfa, vids / vsfa.name)
    (vids / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(5000))
    labels = tmp_path / "labels.txt"
    labels.write_text(f"KoNViD_1k_videos/{konvid.name}, 8.008, 29.97, 3.46\n"
                      f"{vsfa.name}, 8.0, 29.97, 2.5\n"
                      "elsewhere/corrupt.mp4, 8.0, 30.0, 4.1\n"
                      "KoNViD_1k_videos/missing.mp4, 8.0, 30.0, 1.9\n")
    params = make_params(tmp_path, **{"vqa.data.source": "folder", "vqa.data.folder.videos": "vids",
                                      "vqa.data.folder.labels": "labels.txt"})
    summary = acquire.run(params)
    out = raw(tmp_path)
    videos = check_layout(out)
    assert sorted(videos["video_id"]) == sorted([konvid.stem, vsfa.stem])
    assert (videos["video_id"] == videos["content_id"]).all()  # label-only: each video its own content
    scores = pd.read_csv(out / "scores.csv").set_index("video_id")["mos"].to_dict()
    assert scores == {konvid.stem: 3.46, vsfa.stem: 2.5}
    meta = json.loads((out / "acquire.json").read_text())
    bad = {Path(u["path"]).name: u["reason"] for u in meta["unreadable"]}
    assert set(bad) == {"corrupt.mp4", "missing.mp4"} and "not found" in bad["missing.mp4"]
    assert summary["n_unreadable"] == 2 and summary["n_videos"] == 2


@pytest.mark.parametrize("label_file,local_name", [
    ("konvid1k_labels.txt", "KoNViD_1k_videos/10053703034.mp4"),   # folder prefix matches exactly
    ("live_vqc_labels.txt", "A001.mp4"),                           # prefix absent locally
    ("youtube_ugc_labels.txt", "x/Sports_2160P-4e9f_crf_10_ss_00_t_20.0.mp4"),  # basename only
])
def test_real_label_files(tmp_path, label_file, local_name):
    labels, video = fixture(label_file), fixture("konvid_10053703034.mp4")
    target = tmp_path / "vids" / local_name
    target.parent.mkdir(parents=True)
    shutil.copy(video, target)
    params = make_params(tmp_path, **{"vqa.data.source": "folder", "vqa.data.folder.videos": "vids",
                                      "vqa.data.folder.labels": str(labels)})
    summary = acquire.run(params)
    n_lines = sum(1 for line in labels.read_text().splitlines() if line.strip())
    assert summary["n_videos"] == 1 and summary["n_unreadable"] == n_lines - 1
    stem = Path(local_name).stem
    want = next(float(line.split(",")[3]) for line in labels.read_text().splitlines()
                if Path(line.split(",")[0].strip()).stem == stem)
    scores = pd.read_csv(raw(tmp_path) / "scores.csv", dtype={"video_id": str})
    assert scores.to_dict("records") == [{"video_id": stem, "mos": want}]


def test_folder_raw_scores(tmp_path):
    for i in range(3):
        tiny_video(tmp_path / "vids" / f"{i}.mp4", seed=i)
    rows = [(v, r, (v + r) % 5 + 1, "A" if v < 2 else "B") for v in range(4) for r in range(3)]
    pd.DataFrame(rows, columns=["video_id", "rater_id", "score", "content_id"]).assign(
        extra="x").to_csv(tmp_path / "scores.csv", index=False)
    params = make_params(tmp_path, **{"vqa.data.source": "folder", "vqa.data.folder.videos": "vids",
                                      "vqa.data.folder.scores": "scores.csv",
                                      "vqa.data.split.val_fraction": 0.0,
                                      "vqa.data.split.test_fraction": 0.4})
    acquire.run(params)
    out = raw(tmp_path)
    videos = check_layout(out)
    assert sorted(videos["video_id"]) == ["0", "1", "2"]
    assert videos.set_index("video_id")["content_id"].to_dict() == {"0": "A", "1": "A", "2": "B"}
    scores = pd.read_csv(out / "scores.csv", dtype=str)
    assert list(scores.columns) == ["video_id", "rater_id", "score", "content_id"]
    assert sorted(scores["video_id"].unique()) == ["0", "1", "2"] and len(scores) == 9
    meta = json.loads((out / "acquire.json").read_text())
    assert [u["path"] for u in meta["unreadable"]] == ["3.*"]
    assert (out / "videos" / "0.mp4").samefile(tmp_path / "vids" / "0.mp4")  # hard-linked, not copied


def test_truncated_video_is_left_out(tmp_path, monkeypatch):
    from models.vqa import video

    for i in range(2):
        tiny_video(tmp_path / "vids" / f"v{i}.mp4", seed=i)
    (tmp_path / "l.txt").write_text("v0.mp4, 1, 8, 3.0\nv1.mp4, 1, 8, 4.0\n")
    real_probe = video.probe_video

    def probe(path, **kw):  # v1's container claims 4x the frames that decode
        info = real_probe(path, **kw)
        return info | {"frames_meta": info["frames"] * 4} if Path(path).name == "v1.mp4" else info
    monkeypatch.setattr(video, "probe_video", probe)
    summary = acquire.run(make_params(tmp_path, **{"vqa.data.source": "folder", "vqa.data.folder.videos": "vids",
                                                   "vqa.data.folder.labels": "l.txt"}))
    meta = json.loads((raw(tmp_path) / "acquire.json").read_text())
    assert summary["n_videos"] == 1 and "truncated" in meta["unreadable"][0]["reason"]
    assert Path(meta["unreadable"][0]["path"]).name == "v1.mp4"


def test_bad_params_and_labels(tmp_path):
    with pytest.raises(MokuflowError, match="vqa.data.source"):
        acquire.run(make_params(tmp_path, **{"vqa.data.source": "ftp"}))
    with pytest.raises(MokuflowError, match="videos"):
        acquire.run(make_params(tmp_path, **{"vqa.data.source": "folder"}))
    with pytest.raises(MokuflowError, match="video folder not found"):
        acquire.run(make_params(tmp_path, **{"vqa.data.source": "folder", "vqa.data.folder.videos": "nope",
                                             "vqa.data.folder.labels": "l.txt"}))
    tiny_video(tmp_path / "vids" / "a.mp4")
    folder = {"vqa.data.source": "folder", "vqa.data.folder.videos": "vids"}
    with pytest.raises(MokuflowError, match="exactly one"):
        acquire.run(make_params(tmp_path, **folder))
    with pytest.raises(MokuflowError, match="label file not found"):
        acquire.run(make_params(tmp_path, **folder, **{"vqa.data.folder.labels": "l.txt"}))
    (tmp_path / "l.txt").write_text("a.mp4, 1, 8, 3.0\n\nb.mp4, 1, 8\n")
    with pytest.raises(MokuflowError, match=r"l\.txt:3: expected 4 fields"):
        acquire.run(make_params(tmp_path, **folder, **{"vqa.data.folder.labels": "l.txt"}))
    (tmp_path / "l.txt").write_text("a.mp4, 1, 8, good\n")
    with pytest.raises(MokuflowError, match=r"l\.txt:1: MOS 'good'"):
        acquire.run(make_params(tmp_path, **folder, **{"vqa.data.folder.labels": "l.txt"}))
    with pytest.raises(MokuflowError, match="even"):
        acquire.run(make_params(tmp_path, **{"vqa.synthetic.width": 33}))
    with pytest.raises(MokuflowError, match="missing_fraction"):
        acquire.run(make_params(tmp_path, **{"vqa.synthetic.missing_fraction": 1.0}))
    with pytest.raises(MokuflowError, match="split"):
        acquire.run(make_params(tmp_path, **{"vqa.data.split.test_fraction": 0.9}))


def test_previous_raw_dir_survives_failure(tmp_path):
    acquire.run(make_params(tmp_path))
    out = raw(tmp_path)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    (tmp_path / "vids").mkdir()
    (tmp_path / "l.txt").write_text("x.mp4, 1, 8, 3.0\nbroken line\n")
    with pytest.raises(MokuflowError):
        acquire.run(make_params(tmp_path, **{"vqa.data.source": "folder", "vqa.data.folder.videos": "vids",
                                             "vqa.data.folder.labels": "l.txt"}))
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert [p.name for p in out.parent.iterdir()] == ["raw"]  # no temp folders left behind


# ------------------------------------------------------------------------------------------ url

class _Server:
    """Serves one blob at /data.tar.gz on 127.0.0.1, honouring ``Range: bytes=N-``; logs requests."""

    def __init__(self, blob: bytes):
        self.blob, self.requests = blob, []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                rng = self.headers.get("Range")
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                body = owner.blob[start:]
                owner.requests.append({"range": rng, "sent": len(body)})
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(owner.blob) - 1}/{len(owner.blob)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/data.tar.gz"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served(tmp_path):
    src = tmp_path / "src"
    for i in range(3):
        tiny_video(src / "set" / "videos" / f"v{i}.mp4", seed=i)
    (src / "set" / "labels.txt").write_text("".join(f"videos/v{i}.mp4, 0.5, 8, {i + 2.5}\n" for i in range(3)))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        t.add(src / "set", arcname="set")
    server = _Server(buf.getvalue())
    yield server
    server.close()


def url_params(tmp_path, server, sha):
    return make_params(tmp_path, **{"vqa.data.source": "url", "vqa.data.url.href": server.url,
                                    "vqa.data.url.sha256": sha, "vqa.data.url.labels": "set/labels.txt"})


def test_url_download_and_extract(tmp_path, served):
    sha = hashlib.sha256(served.blob).hexdigest()
    summary = acquire.run(url_params(tmp_path, served, sha))
    videos = check_layout(raw(tmp_path))
    assert sorted(videos["video_id"]) == ["v0", "v1", "v2"] and summary["sha256"] == sha
    assert (tmp_path / ".cache" / "downloads" / "data.tar.gz").is_file()
    acquire.run(url_params(tmp_path, served, sha))  # cached: no second download
    assert len(served.requests) == 1


def test_url_checksum_mismatch(tmp_path, served):
    wrong = "0" * 64
    with pytest.raises(MokuflowError) as e:
        acquire.run(url_params(tmp_path, served, wrong))
    msg = str(e.value)
    assert served.url in msg and wrong in msg and hashlib.sha256(served.blob).hexdigest() in msg
    assert not raw(tmp_path).exists()
    assert not list((tmp_path / ".cache" / "downloads").iterdir())


def test_url_resumes_partial_download(tmp_path, served):
    half = len(served.blob) // 2
    cache = tmp_path / ".cache" / "downloads"
    cache.mkdir(parents=True)
    (cache / "data.tar.gz.part").write_bytes(served.blob[:half])
    acquire.run(url_params(tmp_path, served, hashlib.sha256(served.blob).hexdigest()))
    assert served.requests == [{"range": f"bytes={half}-", "sent": len(served.blob) - half}]
    assert (cache / "data.tar.gz").read_bytes() == served.blob
    assert len(check_layout(raw(tmp_path))) == 3


def test_url_bad_href(tmp_path):
    with pytest.raises(MokuflowError, match="href"):
        acquire.run(make_params(tmp_path, **{"vqa.data.source": "url", "vqa.data.url.href": "ftp://x/y.zip"}))
