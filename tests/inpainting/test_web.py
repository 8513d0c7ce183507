"""The cloak web page as people use it: a real headless Chromium (Debian's, driven by Playwright) on the
page served from the tiny project's registered champion, plus the loopback, params, two-tab, idle and
no-champion checks. Screenshots of each step go to the test's tmp folder (printed)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, write_tiny_params
from tests.inpainting.conftest import BMX, BMX_MASK, need

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def server(project):
    """The page on a free loopback port: (url, uvicorn server, session store)."""
    from tasks.inpainting.web import settings
    from tasks.inpainting.webapp import address, make_server, start

    params = project[0]
    cfg = settings(params, port=0, max_upload_mb=4, videos=[str(BMX.parent)] if BMX.is_dir() else [])
    srv, store = make_server(params, cfg)
    thread = start(srv)
    yield address(srv), srv, store
    srv.should_exit = True
    thread.join(10)
    store.close()


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install -e '.[dev]')")
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} absent: `make browser` installs Debian's chromium (as root, with apt)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def bmx_mp4(tmp_path_factory):
    """The real 80-frame 432x240 bmx-trees clip as an H.264 MP4 (what a user uploads)."""
    from models.common.frames import open_frames, write_mp4

    path = tmp_path_factory.mktemp("bmx-mp4") / "bmx-trees.mp4"
    return write_mp4(path, (f.image for f in open_frames(need(BMX))), fps=24)


def gt(i: int) -> np.ndarray:
    from models.common.frames import read_mask

    return read_mask(sorted(need(BMX_MASK).glob("*.png"))[i]) > 0


def jaccard(a, b) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def draw(page, points, *, brush: str = "object"):
    """A stroke by mouse events through ``points`` (canvas pixels), with the chosen brush."""
    page.check(f"#brush-{brush}")
    box = page.locator("#draw").bounding_box()
    n = page.evaluate("() => document.body.dataset.strokes || '0'")
    page.mouse.move(box["x"] + points[0][0], box["y"] + points[0][1])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(box["x"] + x, box["y"] + y, steps=2)
    page.mouse.up()
    page.wait_for_function(f"() => (document.body.dataset.strokes || '0') !== '{n}'")


def object_path(mask: np.ndarray, n: int = 30) -> list:
    from models.inpainting.scribbles import skeleton_path

    path = skeleton_path(mask)
    return path[np.linspace(0, len(path) - 1, min(n, len(path))).round().astype(int)].tolist()


def overlay(page) -> np.ndarray:
    """The mask layer as the browser shows it: alpha > 0 of <canvas id="mask">, bool [H, W]."""
    flat = page.evaluate("""() => { const c = document.getElementById('mask');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const out = new Array(c.width * c.height); for (let i = 0; i < out.length; i++) out[i] = d[4 * i + 3] > 0 ? 1 : 0;
        return [c.height, c.width, out]; }""")
    return np.array(flat[2], bool).reshape(flat[0], flat[1])


def segment(page, expect_round: int) -> float:
    t0 = time.perf_counter()
    page.click("#segment")
    page.wait_for_function(f"() => document.body.dataset.round === '{expect_round}' && "
                           "document.body.dataset.job === 'done'", timeout=120_000)
    return time.perf_counter() - t0


def show_frame(page, i: int, round_: int):
    page.eval_on_selector("#slider", f"e => {{ e.value = {i}; e.dispatchEvent(new Event('input')); }}")
    page.wait_for_function(f"() => document.body.dataset.shown === '{i}:{round_}'")


def test_a_person_scribbles_segments_corrects_and_removes(browser, server, bmx_mp4, project, tmp_path):
    from models.common.frames import open_frames
    from tasks.inpainting.cloak import cloak

    url, _, store = server
    shots = tmp_path / "screenshots"
    shots.mkdir()
    page = browser.new_page(viewport={"width": 1100, "height": 720}, accept_downloads=True)
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']")
    page.screenshot(path=shots / "0-page.png")
    # 1. open: upload the MP4
    page.set_input_files("#upload", str(bmx_mp4))
    page.wait_for_selector("body[data-video='bmx-trees.mp4'][data-shown='0:0']")
    assert "80 frames, 432×240" in page.inner_text("#video-info")
    page.screenshot(path=shots / "1-opened.png")
    # 2. a stroke along the rider on frame 0, one on the background, Segment
    stroke = object_path(gt(0))
    draw(page, stroke)
    draw(page, [[20, 20], [120, 25], [220, 20]], brush="background")
    page.screenshot(path=shots / "2-scribbled.png")
    seconds = segment(page, 1)
    print(f"\nSegment -> masks shown, 80 frames 432x240, tiny model: {seconds:.2f} s "
          f"(page says {page.evaluate('() => document.body.dataset.seconds')} s)")
    page.screenshot(path=shots / "3-segmented.png")
    shown = overlay(page)
    sid = page.evaluate("() => document.body.dataset.session")
    session = store.get(sid)
    assert shown.shape == (240, 432) and (shown == session.mask(0)).all()  # the page shows the session's mask
    xs, ys = np.array(stroke).T
    assert shown[ys, xs].mean() >= 0.9  # the stroked pixels are the object
    j = jaccard(shown, gt(0))
    elsewhere = jaccard(np.roll(shown, (120, 216), axis=(0, 1)), gt(0))  # the same area placed elsewhere
    print(f"J(overlay, fixture mask) frame 0 = {j:.3f}; same area shifted = {elsewhere:.3f}; all background = 0")
    assert j > elsewhere and j > 0
    assert "Round 1" in page.inner_text("#round") and "80 frame(s) changed" in page.inner_text("#changed")
    # 3. a corrective stroke on frame 40, Segment again: the session keeps its memory
    show_frame(page, 40, 1)
    before = jaccard(overlay(page), gt(40))
    correction = object_path(gt(40))
    draw(page, correction)
    segment(page, 2)
    after = overlay(page)
    xs, ys = np.array(correction).T
    print(f"J frame 40: round 1 {before:.3f} -> round 2 {jaccard(after, gt(40)):.3f}; "
          f"{page.inner_text('#changed')[:60]}")
    assert after[ys, xs].mean() >= 0.9 and "Round 2" in page.inner_text("#round")
    assert session.round == 2 and 40 in session.changed and len(session.session.user_frames) == 2
    page.screenshot(path=shots / "4-corrected.png")
    # undo a stroke, clear a frame (neither was segmented: the session stays as it is)
    draw(page, [[30, 200], [60, 210]], brush="background")
    assert session.status()["n_strokes"] == 4
    page.click("#undo")
    page.wait_for_function("() => document.getElementById('message').textContent.startsWith('Undone')")
    show_frame(page, 70, 2)
    draw(page, [[300, 100], [320, 120]])
    page.click("#clear")
    page.wait_for_function("() => document.getElementById('message').textContent.includes('cleared')")
    assert session.status()["stroked_frames"] == [0, 40] and not session.dirty
    # bad input: a file that is not a video; the page says so and keeps everything
    junk = tmp_path / "notes.mp4"
    junk.write_text("not a video")
    page.set_input_files("#upload", str(junk))
    page.wait_for_function("() => document.getElementById('error').textContent.includes('notes.mp4')")
    assert "not a readable video" in page.inner_text("#error")
    assert session.round == 2 and session.video["name"] == "bmx-trees.mp4"
    # 4. Remove: the video plays in the page and downloads; masks and scribbles download
    page.click("#remove")
    page.wait_for_function("() => document.body.dataset.job === 'done' && !document.getElementById('result-box').hidden",
                           timeout=180_000)
    page.wait_for_function("() => document.getElementById('result').readyState >= 1", timeout=30_000)
    assert page.evaluate("() => document.getElementById('result').duration") == pytest.approx(80 / 24, abs=0.1)
    page.screenshot(path=shots / "5-removed.png")
    files = {}
    for link in ("dl-mp4", "dl-masks", "dl-scribbles"):
        with page.expect_download() as d:
            page.click(f"#{link}")
        files[link] = tmp_path / d.value.suggested_filename
        d.value.save_as(files[link])
    mp4 = open_frames(files["dl-mp4"])
    assert len(mp4) == 80 and (mp4.width, mp4.height) == (432, 240)
    with zipfile.ZipFile(files["dl-masks"]) as z:
        names = sorted(z.namelist())
        assert len(names) == 80 and names[0] == "masks/00000.png"
        import cv2

        page_masks = np.stack([cv2.imdecode(np.frombuffer(z.read(n), np.uint8), 0) > 0 for n in names])
    # the downloaded scribbles on the command line, on the uploaded video: the two rounds replayed in
    # order give the page's masks exactly
    net, meta = session.net, session.meta
    rounds = sorted({st.get("round") for f in json.loads(files["dl-scribbles"].read_text())["scribbles"] for st in f})
    assert rounds == [1, 2]
    out = cloak(bmx_mp4, files["dl-scribbles"], tmp_path / "cli", net=net,
                internal_size=meta.get("internal_size"), max_memory=meta.get("max_memory"), device="cpu", progress=False)
    from models.common.frames import read_mask

    cli = np.stack([read_mask(p) > 0 for p in sorted(Path(out["masks_dir"]).glob("*.png"))])
    assert cli.shape == page_masks.shape and (cli == page_masks).all()
    page.close()


def test_undoing_a_segmented_stroke_rebuilds_the_session_as_the_cli_does(server, bmx_mp4, tmp_path):
    """After an undo of a segmented stroke the next Segment replays the remaining strokes: the masks
    are then exactly what ``mokuflow inpainting cloak`` gives from the downloaded scribble file."""
    from models.common.frames import read_mask
    from models.inpainting.scribbles import save_scribbles
    from tasks.inpainting.cloak import cloak

    _, _, store = server
    s = store.new()
    s.open(bmx_mp4, "bmx-trees.mp4")
    s.add_stroke(0, 1, object_path(gt(0)))
    _wait(s, "segment")
    s.add_stroke(40, 1, object_path(gt(40)))
    s.add_stroke(60, 0, [[10, 10], [100, 12]])
    _wait(s, "segment")
    save_scribbles(tmp_path / "two-rounds.json", s.scribbles())  # a correction round: replayed in order
    out = cloak(bmx_mp4, tmp_path / "two-rounds.json", tmp_path / "cli2", net=s.net,
                internal_size=s.meta.get("internal_size"), max_memory=s.meta.get("max_memory"), device="cpu",
                progress=False)
    cli = [read_mask(p) > 0 for p in sorted(Path(out["masks_dir"]).glob("*.png"))]
    assert all((c == s.mask(t)).all() for t, c in enumerate(cli))
    s.undo()
    assert s.dirty
    _wait(s, "segment")
    assert s.round == 3 and s.session.user_frames == [0, 40]
    save_scribbles(tmp_path / "s.json", s.scribbles())
    out = cloak(bmx_mp4, tmp_path / "s.json", tmp_path / "cli", net=s.net, internal_size=s.meta.get("internal_size"),
                max_memory=s.meta.get("max_memory"), device="cpu", progress=False)
    cli = [read_mask(p) > 0 for p in sorted(Path(out["masks_dir"]).glob("*.png"))]
    assert all((c == s.mask(t)).all() for t, c in enumerate(cli))


def test_a_cancelled_segment_keeps_the_previous_round(server, bmx_mp4):
    _, _, store = server
    s = store.new()
    s.open(bmx_mp4, "bmx-trees.mp4")
    s.add_stroke(0, 1, object_path(gt(0)))
    _wait(s, "segment")
    first = s.mask(10).copy()
    s.add_stroke(40, 1, object_path(gt(40)))
    job = s.start("segment")
    s.cancel()
    while job.state in ("queued", "running"):
        time.sleep(0.02)
    assert job.state == "cancelled" and s.round == 1 and (s.mask(10) == first).all()
    _wait(s, "segment")  # the live session is rebuilt from every stroke
    assert s.round == 2 and s.session.user_frames == [0, 40]
    s.close()


def _wait(s, kind: str, timeout: float = 120):
    job = s.start(kind)
    deadline = time.monotonic() + timeout
    while job.state in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert job.state == "done", job.error
    return job


def test_two_tabs_have_their_own_sessions(browser, server):
    url, _, store = server
    context = browser.new_context()
    a, b = context.new_page(), context.new_page()
    for p in (a, b):
        p.goto(url)
        p.wait_for_selector("body[data-ready='1']")
        p.select_option("#videos", "bmx-trees")
        p.click("#open-listed")
        p.wait_for_selector("body[data-video='bmx-trees'][data-shown='0:0']")
    ids = [p.evaluate("() => document.body.dataset.session") for p in (a, b)]
    assert ids[0] != ids[1]
    draw(a, object_path(gt(0)))
    assert store.get(ids[0]).status()["n_strokes"] == 1 and store.get(ids[1]).status()["n_strokes"] == 0
    assert b.evaluate("() => document.getElementById('draw').getContext('2d').getImageData(0, 0, 432, 240)"
                      ".data.some(v => v > 0)") is False  # nothing drawn in the other tab
    b.click("#segment")  # no stroke in this tab: a clear line, nothing starts
    b.wait_for_function("() => document.getElementById('error').textContent.includes('no object stroke')")
    assert store.get(ids[1]).job is None
    context.close()


def test_listens_on_loopback_only_and_refuses_big_uploads(server):
    import psutil
    import requests

    url, srv, _ = server
    host, port = srv.servers[0].sockets[0].getsockname()[:2]
    assert host == "127.0.0.1" and all(s.getsockname()[0] == "127.0.0.1" for x in srv.servers for s in x.sockets)
    others = [a.address for addrs in psutil.net_if_addrs().values() for a in addrs
              if a.family == socket.AF_INET and not a.address.startswith("127.")]
    for ip in others:  # the machine's other addresses do not answer
        with pytest.raises(OSError):
            socket.create_connection((ip, port), timeout=2).close()
    sid = requests.post(f"{url}api/session", timeout=10).json()["id"]
    r = requests.post(f"{url}api/s/{sid}/upload?filename=big.mp4", data=b"\0" * (5 * 1024 * 1024), timeout=30)
    assert r.status_code == 413 and "larger than the upload limit of 4" in r.json()["error"]
    r = requests.post(f"{url}api/s/nope/segment", timeout=10)
    assert r.status_code == 404 and "reload the page" in r.json()["error"]


def test_params_refuse_a_non_loopback_host(tmp_path):
    from tasks.core import MokuflowError, load_params
    from tasks.inpainting.web import settings

    with pytest.raises(MokuflowError, match="loopback only"):
        load_params(write_tiny_params(tmp_path, {"inpainting.web.host": "0.0.0.0"}), study="inpainting")
    with pytest.raises(MokuflowError, match="loopback only"):
        settings({"inpainting": {"web": {"host": "192.168.1.4"}}})
    assert settings({"inpainting": {"web": {"host": "::1"}}})["port"] == 7860


def test_an_idle_session_is_freed(tmp_path):
    import cv2

    from tasks.inpainting.web import settings
    from tasks.inpainting.websession import SessionStore

    frames = tmp_path / "clip"
    frames.mkdir()
    for i in range(3):
        cv2.imwrite(str(frames / f"{i:05d}.png"), np.full((24, 32, 3), 40 * i, np.uint8))
    store = SessionStore(None, {}, settings({}, idle_timeout_s=0.3))
    try:
        s = store.new()
        s.open(frames, "clip")
        assert s.dir.is_dir() and s.frame_jpeg(2).is_file()
        time.sleep(1.0)
        assert not s.dir.exists()
        with pytest.raises(KeyError):
            store.get(s.id)
    finally:
        store.close()


def test_cli_refuses_to_start_without_a_champion(tmp_path):
    params = write_tiny_params(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-m", "tasks.cli", "inpainting", "web", "--params", str(params), "--port", "0"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    lines = [x for x in r.stderr.strip().splitlines() if "mokuflow inpainting web" in x]
    assert r.returncode == 2 and len(lines) == 1, r.stderr[-2000:]
    assert "no 'inpainting' champion" in lines[0] and "make run STUDY=inpainting" in lines[0]


def test_the_page_loads_nothing_from_the_internet():
    static = REPO / "tasks" / "inpainting" / "static"
    for f in static.iterdir():
        text = f.read_text()
        assert "http://" not in text and "https://" not in text, f
