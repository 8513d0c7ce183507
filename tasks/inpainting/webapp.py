"""The invisibility cloak as a web page: FastAPI + a plain ``<canvas>`` page, served from this package.

``mokuflow inpainting web`` (``make cloak``) loads ``models:/inpainting@champion`` and serves
http://127.0.0.1:<port>/ (``inpainting.web`` in params.yaml; loopback only). Each tab asks for a
session on load (``POST /api/session``) and talks to ``/api/s/<id>/...``: open a listed video or
upload one (raw request body, at most ``max_upload_mb``), draw strokes, segment, remove, download.
Errors are HTTP 4xx with ``{"error": "<one line>"}``; the session keeps what it had. The page's
files (``tasks/inpainting/static/``) load nothing from the internet.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from tasks.core import MokuflowError, log

STATIC = Path(__file__).with_name("static")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")


def champion(params: dict):
    """(net, meta, uri) of the registered ``inpainting`` champion, or one clear line when there is none."""
    import mlflow
    from mlflow import MlflowClient

    from tasks.core.tracking import setup, tracking_uri

    setup(params)
    name = params["inpainting"]["register"]["model_name"]
    try:
        MlflowClient().get_model_version_by_alias(name, "champion")
    except mlflow.exceptions.MlflowException:
        raise MokuflowError(f"no '{name}' champion is registered in {tracking_uri(params)}: "
                            "run `make run STUDY=inpainting` first") from None
    uri = f"models:/{name}@champion"
    model = mlflow.pyfunc.load_model(uri).unwrap_python_model()
    return model.net, dict(model.meta), uri


def listed_videos(params: dict, cfg: dict) -> dict[str, Path]:
    """Videos the page offers: the study's clean (synthetic) sequences, then ``web.videos`` entries
    (a video file, a frame folder, or a folder of those; ``*_mask`` folders are masks, not videos)."""
    from tasks.core import resolve

    found: dict[str, Path] = {}
    clean = resolve(params, params["inpainting"]["data"]["clean_dir"]) / "JPEGImages"
    if clean.is_dir():
        for d in sorted(p for p in clean.iterdir() if p.is_dir()):
            found[f"synthetic/{d.name}"] = d
    for entry in cfg.get("videos") or []:
        p = resolve(params, entry)
        for c in [p] if _is_video(p) else sorted(p.iterdir()) if p.is_dir() else []:
            if _is_video(c) and not c.name.endswith("_mask"):
                found[c.name] = c
    return found


def _is_video(p: Path) -> bool:
    if p.is_file():
        return p.suffix.lower() in VIDEO_SUFFIXES
    return p.is_dir() and any(f.suffix.lower() in (".jpg", ".jpeg", ".png") for f in p.iterdir())


def create_app(store, videos: dict[str, Path], cfg: dict):
    """The FastAPI app over a :class:`~tasks.inpainting.websession.SessionStore`."""
    app = FastAPI(title="mokuflow cloak", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    limit = int(float(cfg["max_upload_mb"]) * 1024 * 1024)

    def fail(message: str, code: int = 400):
        return JSONResponse({"error": message}, status_code=code)

    @app.exception_handler(MokuflowError)
    async def _mokuflow_error(request, exc):
        return fail(" ".join(str(exc).split()))

    @app.exception_handler(KeyError)
    async def _expired(request, exc):
        return fail("this session has expired or is unknown: reload the page", 404)

    @app.get("/")
    def index():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    @app.post("/api/session")
    def new_session():
        s = store.new()
        return {"id": s.id, "videos": sorted(videos), "max_upload_mb": cfg["max_upload_mb"],
                "max_frames": cfg["max_frames"], "idle_timeout_s": cfg["idle_timeout_s"]}

    @app.get("/api/s/{sid}/status")
    def status(sid: str):
        return store.get(sid).status()

    @app.post("/api/s/{sid}/open")
    def open_listed(sid: str, video: str):
        s = store.get(sid)
        if video not in videos:
            return fail(f"unknown video {video!r} (pick one from the list)", 404)
        return {"video": _public(s.open(videos[video], video))}

    @app.post("/api/s/{sid}/upload")
    async def upload(sid: str, request: Request, filename: str = "upload.mp4"):
        s = store.get(sid)
        declared = int(request.headers.get("content-length") or 0)
        too_big = f"{filename}: larger than the upload limit of {cfg['max_upload_mb']} MB (inpainting.web.max_upload_mb)"
        if declared > limit:
            return fail(too_big, 413)
        suffix = Path(filename).suffix.lower()[:8] or ".mp4"
        tmp = tempfile.NamedTemporaryFile(prefix="upload-", suffix=suffix, dir=s.dir, delete=False)
        size = 0
        with tmp:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    break
                tmp.write(chunk)
        path = Path(tmp.name)
        if size > limit:
            path.unlink(missing_ok=True)
            return fail(too_big, 413)
        if size == 0:
            path.unlink(missing_ok=True)
            return fail(f"{filename}: empty file")
        old = s.video and s.video.get("upload")
        try:
            video = s.open(path, Path(filename).name)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        if old and old != str(path):
            Path(old).unlink(missing_ok=True)
        video["upload"] = str(path)
        return {"video": _public(video)}

    @app.get("/api/s/{sid}/frame/{i}.jpg")
    def frame(sid: str, i: int):
        return FileResponse(store.get(sid).frame_jpeg(i), media_type="image/jpeg")

    @app.get("/api/s/{sid}/mask/{i}.png")
    def mask(sid: str, i: int):
        import cv2
        import numpy as np

        s = store.get(sid)
        m = s.mask(i)
        dw, dh = s.video["display"]
        if m.shape != (dh, dw):
            m = cv2.resize(m.astype(np.uint8), (dw, dh), interpolation=cv2.INTER_NEAREST) > 0
        rgba = np.zeros((dh, dw, 4), np.uint8)
        rgba[m] = (0, 80, 255, 140)  # BGRA: an orange-red veil over the object
        return Response(cv2.imencode(".png", rgba)[1].tobytes(), media_type="image/png",
                        headers={"Cache-Control": "no-store"})

    @app.get("/api/s/{sid}/strokes/{i}")
    def strokes(sid: str, i: int):
        return {"frame": i, "strokes": store.get(sid).strokes_on(i)}

    @app.post("/api/s/{sid}/stroke")
    async def stroke(sid: str, request: Request):
        s = store.get(sid)
        try:
            body = await request.json()
            frame_i, object_id, points = int(body["frame"]), int(body["object_id"]), body["points"]
        except (ValueError, KeyError, TypeError):
            return fail('a stroke is {"frame": i, "object_id": 0 or 1, "points": [[x, y], ...]}')
        s.add_stroke(frame_i, object_id, points)
        return s.status()

    def act(sid: str, do) -> dict:
        """One tab's action, answered with its status (a refused action raises: the page shows the line)."""
        s = store.get(sid)
        do(s)
        return s.status()

    @app.post("/api/s/{sid}/undo")
    def undo(sid: str):
        return act(sid, lambda s: s.undo())

    @app.post("/api/s/{sid}/clear/{i}")
    def clear(sid: str, i: int):
        return act(sid, lambda s: s.clear(i))

    @app.post("/api/s/{sid}/segment")
    def segment(sid: str):
        return act(sid, lambda s: s.start("segment"))

    @app.post("/api/s/{sid}/remove")
    def remove(sid: str):
        return act(sid, lambda s: s.start("remove"))

    @app.post("/api/s/{sid}/cancel")
    def cancel(sid: str):
        return act(sid, lambda s: s.cancel())

    @app.get("/api/s/{sid}/result.mp4")
    def result(sid: str):
        s = store.get(sid)
        if not s.result or not s.result.is_file():
            return fail("no result yet: press Remove", 404)
        return FileResponse(s.result, media_type="video/mp4", filename=f"{_stem(s)}-cloaked.mp4")

    @app.get("/api/s/{sid}/masks.zip")
    def masks_zip(sid: str):
        s = store.get(sid)
        return Response(s.masks_zip(), media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="{_stem(s)}-masks.zip"'})

    @app.get("/api/s/{sid}/scribbles.json")
    def scribbles(sid: str):
        s = store.get(sid)
        return Response(json.dumps(s.scribbles()), media_type="application/json",
                        headers={"Content-Disposition": f'attachment; filename="{_stem(s)}-scribbles.json"'})

    return app


def _public(video: dict) -> dict:
    return {k: video[k] for k in ("name", "n_frames", "width", "height", "display")}


def _stem(s) -> str:
    return Path(s.video["name"]).stem if s.video else "cloak"


def make_server(params: dict, cfg: dict, *, net=None, meta=None):
    """(uvicorn.Server, SessionStore) for the page, bound to ``cfg['host']`` (loopback) and ``cfg['port']``
    (0: any free port). ``net`` / ``meta``: a model to serve instead of the registered champion (tests)."""
    import uvicorn

    from tasks.inpainting.websession import SessionStore

    if net is None:
        net, meta, uri = champion(params)
        log(f"cloak web: serving {uri}")
    store = SessionStore(net, meta or {}, cfg)
    app = create_app(store, listed_videos(params, cfg), cfg)
    config = uvicorn.Config(app, host=cfg["host"], port=int(cfg["port"]), log_level="warning",
                            access_log=False, timeout_graceful_shutdown=2)
    return uvicorn.Server(config), store


def address(server) -> str:
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    return f"http://{host}:{port}/"


def start(server, timeout: float = 30.0):
    """Run ``server`` in a daemon thread; returns the thread once it listens (one line if it cannot)."""
    import threading
    import time

    thread = threading.Thread(target=server.run, daemon=True, name="cloak-web")
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            c = server.config
            raise MokuflowError(f"cloak web: could not listen on {c.host}:{c.port} (in use? set inpainting.web.port)")
        time.sleep(0.02)
    return thread
