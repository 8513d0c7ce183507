"""One browser tab's cloak: its video, its strokes, its :class:`InpaintingSession`, its background jobs.

The web page (:mod:`tasks.inpainting.webapp`) keeps one :class:`WebSession` per tab in a
:class:`SessionStore`, which frees sessions idle longer than ``idle_timeout_s``. Rounds follow the
interactive session: a Segment adds the strokes drawn since the last one to the live
:class:`~models.inpainting.session.InpaintingSession` (its memory and current masks kept) and
propagates. Undoing or clearing a stroke that was already segmented cannot be taken out of that
memory: the next Segment rebuilds the session from the remaining strokes, frame by frame in order,
exactly as ``mokuflow inpainting cloak`` does with the downloaded scribble file. Jobs (segment,
remove) run one at a time across sessions (2 cores); a cancelled or failed job leaves the last
finished round's masks and result as they were.
"""
from __future__ import annotations

import io
import shutil
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tasks.core import MokuflowError

DISPLAY_LONG_SIDE = 960   # frames are shown (and drawn on) at most this wide / high
CHANGED_SHARE = 0.002     # a frame "changed" in a round when this share of its pixels flipped
JOBS = threading.Lock()   # one segmentation / removal at a time on the machine


class Cancelled(Exception):
    """Raised from the session's progress callback when the user pressed Cancel."""


@dataclass
class Job:
    kind: str                 # segment | remove
    state: str = "queued"     # queued | running | done | cancelled | error
    stage: str = ""
    done: int = 0
    total: int = 0
    error: str = ""
    seconds: float = 0.0
    cancel: threading.Event = field(default_factory=threading.Event)

    def as_dict(self) -> dict:
        return {"kind": self.kind, "state": self.state, "stage": self.stage, "done": self.done,
                "total": self.total, "error": self.error, "seconds": round(self.seconds, 3)}


@dataclass
class PageStroke:
    stroke: object            # models.inpainting.scribbles.Stroke (normalised path)
    points: list              # display pixels, as drawn (the page redraws them)
    applied: bool = False     # already given to the live session
    round: int | None = None  # the live session's interaction round it went in with (the scribble file's "round")


class WebSession:
    """The state of one tab. Methods raise :class:`MokuflowError` with the line the page shows."""

    def __init__(self, sid: str, net, meta: dict, cfg: dict):
        self.id, self.net, self.meta, self.cfg = sid, net, meta, cfg
        self.dir = Path(tempfile.mkdtemp(prefix=f"mokuflow-web-{sid[:8]}-"))
        self.lock = threading.RLock()
        self.last_seen = time.monotonic()
        self.video: dict | None = None
        self.strokes: list[PageStroke] = []
        self.session = None
        self.dirty = False        # a segmented stroke was removed: rebuild at the next Segment
        self.masks: np.ndarray | None = None  # packed bits [n, H*W/8] of the last finished round
        self.round, self.changed = 0, []
        self.replay_round = 0  # interaction rounds in the live session (a rebuild gives every stroke in one)
        self.job: Job | None = None
        self.result: Path | None = None

    # --------------------------------------------------------------------------------- video
    def open(self, path: Path, name: str) -> dict:
        """Decode ``path`` (a video file or a frame folder) into display JPEGs and a new session."""
        import cv2

        from models.common.frames import FrameReadError, open_frames

        self._idle("open a video")
        folder = Path(tempfile.mkdtemp(prefix="video-", dir=self.dir))
        try:
            frames = open_frames(path)
            n, h, w = len(frames), frames.height, frames.width
            if n > int(self.cfg["max_frames"]):
                raise MokuflowError(f"{name}: {n} frames, more than the limit of {self.cfg['max_frames']} "
                                    "(inpainting.web.max_frames)")
            s = min(1.0, DISPLAY_LONG_SIDE / max(h, w))
            dw, dh = max(2, round(w * s)), max(2, round(h * s))
            names = []
            for f in frames:
                small = f.image if s == 1.0 else cv2.resize(f.image, (dw, dh), interpolation=cv2.INTER_AREA)
                cv2.imwrite(str(folder / f"{f.index:05d}.jpg"), cv2.cvtColor(small, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, 90])
                names.append(f.name)
        except FrameReadError as e:
            shutil.rmtree(folder, ignore_errors=True)
            raise MokuflowError(f"{name}: {e.problem}") from None
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        with self.lock:  # only now does the new video replace the old one
            self._drop_video()
            self.video = {"name": name, "path": str(path), "n_frames": n, "width": w, "height": h,
                          "display": [dw, dh], "frames_dir": str(folder), "names": names}
        return self.video

    def _drop_video(self) -> None:
        if self.session is not None:
            self.session.close()
        if self.video:
            shutil.rmtree(self.video["frames_dir"], ignore_errors=True)
        if self.result:
            self.result.unlink(missing_ok=True)
        self.session, self.video, self.result, self.masks = None, None, None, None
        self.strokes, self.dirty, self.round, self.changed, self.replay_round = [], False, 0, [], 0

    def frame_jpeg(self, i: int) -> Path:
        return Path(self._need_video()["frames_dir"]) / f"{self._index(i):05d}.jpg"

    def _need_video(self) -> dict:
        if not self.video:
            raise MokuflowError("no video open: upload one or pick one from the list")
        return self.video

    def _index(self, i: int) -> int:
        n = self._need_video()["n_frames"]
        if not 0 <= i < n:
            raise MokuflowError(f"frame {i} is outside the video (0-{n - 1})")
        return i

    # ------------------------------------------------------------------------------- strokes
    def add_stroke(self, frame: int, object_id: int, points) -> None:
        from models.inpainting.scribbles import stroke_from_pixels

        v = self._need_video()
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if len(pts) == 0:
            raise MokuflowError("a stroke needs at least one point")
        dw, dh = v["display"]
        s = stroke_from_pixels(pts, frame=self._index(frame), object_id=1 if object_id else 0, height=dh, width=dw)
        with self.lock:
            self._idle("draw")
            self.strokes.append(PageStroke(s, pts.round(1).tolist()))

    def undo(self) -> None:
        with self.lock:
            self._idle("undo")
            if not self.strokes:
                raise MokuflowError("nothing to undo")
            self.dirty |= self.strokes.pop().applied

    def clear(self, frame: int) -> None:
        with self.lock:
            self._idle("clear a frame")
            gone = [p for p in self.strokes if p.stroke.frame == frame]
            self.strokes = [p for p in self.strokes if p.stroke.frame != frame]
            self.dirty |= any(p.applied for p in gone)

    def strokes_on(self, frame: int) -> list[dict]:
        return [{"object_id": p.stroke.object_id, "points": p.points} for p in self.strokes if p.stroke.frame == frame]

    def scribbles(self) -> dict:
        """The strokes as a DAVIS interactive scribble dict (what ``mokuflow inpainting cloak`` reads)."""
        import dataclasses

        from models.inpainting.scribbles import build_scribbles

        v = self._need_video()
        if not self.strokes:
            raise MokuflowError("no strokes drawn yet")
        nxt = self.replay_round + 1  # strokes not segmented yet: the next round
        strokes = [dataclasses.replace(p.stroke, round=p.round if p.applied and p.round else nxt) for p in self.strokes]
        return build_scribbles(strokes, n_frames=v["n_frames"], sequence=Path(v["name"]).stem)

    # ---------------------------------------------------------------------------------- jobs
    def start(self, kind: str) -> Job:
        """Check the request, then run ``segment`` or ``remove`` in a background thread."""
        self._need_video()
        with self.lock:
            self._idle(kind)
            if kind == "segment" and not any(p.stroke.object_id for p in self.strokes):
                raise MokuflowError("no object stroke yet: draw on the object (Object brush) before Segment")
            if kind == "remove" and self.masks is None:
                raise MokuflowError("no masks yet: Segment before Remove")
            self.job = Job(kind)
        threading.Thread(target=self._work, args=(self.job,), daemon=True, name=f"cloak-{kind}").start()
        return self.job

    def _idle(self, what: str) -> None:
        if self.job and self.job.state in ("queued", "running"):
            raise MokuflowError(f"cannot {what} while {self.job.kind} runs: wait or cancel it")

    def cancel(self) -> None:
        if self.job:
            self.job.cancel.set()

    def _progress(self, job: Job):
        def report(stage: str, done: int, total: int) -> None:
            if job.cancel.is_set():
                raise Cancelled()
            job.stage, job.done, job.total = stage, done, total
        return report

    def _work(self, job: Job) -> None:
        with JOBS:
            t0 = time.perf_counter()
            job.state = "running"
            try:
                if job.cancel.is_set():
                    raise Cancelled()
                self._segment(job) if job.kind == "segment" else self._remove(job)
                job.state = "done"
            except Cancelled:
                job.state = "cancelled"
            except Exception as e:  # the page shows the line; the session keeps its last results
                job.state, job.error = "error", " ".join(str(e).split()) or type(e).__name__
            finally:
                job.seconds = time.perf_counter() - t0
                self.last_seen = time.monotonic()

    def _new_session(self, job: Job):
        from models.common.frames import open_frames
        from models.inpainting.session import InpaintingSession
        from tasks.inpainting.cloak import _device

        return InpaintingSession(self.net, open_frames(self.video["path"]), internal_size=self.meta.get("internal_size"),
                                 max_memory=int(self.meta.get("max_memory", 8)),
                                 device=_device(self.cfg.get("device", "auto")), progress=self._progress(job))

    def _segment(self, job: Job) -> None:
        import torch

        with self.lock:
            todo = page = list(self.strokes)
            rebuild = self.dirty or self.session is None
        if rebuild:
            if self.session is not None:
                self.session.close()
            self.session = None
            todo = [PageStroke(p.stroke, p.points) for p in todo]  # all of them go in again
        try:
            with torch.inference_mode():
                if self.session is None:
                    self.session = self._new_session(job)
                self.session.progress = self._progress(job)
                by_frame: dict[int, list] = {}
                for p in todo:
                    if not p.applied:
                        by_frame.setdefault(p.stroke.frame, []).append(p.stroke)
                for t in sorted(by_frame):
                    self.session.add_scribbles(t, by_frame[t])
                self.session.propagate()
                masks = np.stack([np.packbits(self.session.masks(t)) for t in range(self.session.n_frames)])
        except BaseException:
            self._restore()  # the live session is out of step with the page: rebuilt at the next Segment
            raise
        with self.lock:
            given = self.replay_round = 1 if rebuild else self.replay_round + 1
            for p in page:
                if rebuild or not p.applied:
                    p.round = given
                p.applied = True
            self.dirty = False
            if self.masks is not None:
                flipped = np.unpackbits(self.masks ^ masks, axis=1).sum(1)
                h, w = self.session.input_size
                self.changed = [int(t) for t in np.flatnonzero(flipped > CHANGED_SHARE * h * w)]
            else:
                self.changed = list(range(len(masks)))
            self.masks, self.round = masks, self.round + 1
            if self.result:
                self.result.unlink(missing_ok=True)
                self.result = None

    def _restore(self) -> None:
        if self.session is not None:
            self.session.close()
        self.session, self.dirty = None, True

    def mask(self, i: int) -> np.ndarray:
        """Frame ``i``'s mask of the last finished round, bool [H, W] at the input's size."""
        v = self._need_video()
        if self.masks is None:
            raise MokuflowError("no masks yet: Segment first")
        h, w = v["height"], v["width"]
        return np.unpackbits(self.masks[self._index(i)], count=h * w).reshape(h, w).astype(bool)

    def _remove(self, job: Job) -> None:
        import torch

        from models.common.frames import Mp4Writer
        from tasks.inpainting.cloak import _fps

        if self.session is None or self.dirty:  # after a cancelled round: the last finished round again
            self.dirty = True
            self._segment(job)
        self.session.progress = self._progress(job)
        out = self.dir / "result.mp4"
        with torch.inference_mode(), Mp4Writer(out, fps=_fps(Path(self.video["path"]))) as mp4:
            for frame in self.session.inpaint():
                mp4.write(frame.image)
        self.result = out

    # ------------------------------------------------------------------------------ downloads
    def masks_zip(self) -> bytes:
        import cv2

        v = self._need_video()
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
            for t, name in enumerate(v["names"]):
                ok, png = cv2.imencode(".png", self.mask(t).astype(np.uint8) * 255)
                z.writestr(f"masks/{name}.png", png.tobytes())
        return buf.getvalue()

    def status(self) -> dict:
        v = self.video
        return {"id": self.id, "video": None if not v else {k: v[k] for k in ("name", "n_frames", "width", "height", "display")},
                "job": self.job.as_dict() if self.job else None, "round": self.round, "changed_frames": self.changed,
                "has_masks": self.masks is not None, "has_result": self.result is not None,
                "n_strokes": len(self.strokes), "stroked_frames": sorted({p.stroke.frame for p in self.strokes})}

    def close(self) -> None:
        self.cancel()
        with self.lock:
            self._drop_video()
        shutil.rmtree(self.dir, ignore_errors=True)


class SessionStore:
    """The tabs' sessions by id; a reaper thread frees those idle over ``idle_timeout_s`` (not while a job runs)."""

    def __init__(self, net, meta: dict, cfg: dict):
        self.net, self.meta, self.cfg = net, meta, cfg
        self.sessions: dict[str, WebSession] = {}
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self.timeout = float(cfg["idle_timeout_s"])
        threading.Thread(target=self._reap_loop, daemon=True, name="cloak-reaper").start()

    def new(self) -> WebSession:
        import secrets

        s = WebSession(secrets.token_urlsafe(16), self.net, self.meta, self.cfg)
        with self.lock:
            self.sessions[s.id] = s
        return s

    def get(self, sid: str) -> WebSession:
        with self.lock:
            s = self.sessions.get(sid)
        if s is None:
            raise KeyError(sid)
        s.last_seen = time.monotonic()
        return s

    def reap(self) -> list[str]:
        now = time.monotonic()
        with self.lock:
            idle = [s for s in self.sessions.values() if now - s.last_seen > self.timeout
                    and not (s.job and s.job.state in ("queued", "running"))]
            for s in idle:
                del self.sessions[s.id]
        for s in idle:
            s.close()
        return [s.id for s in idle]

    def _reap_loop(self) -> None:
        while not self._stop.wait(max(0.05, min(30.0, self.timeout / 4))):
            self.reap()

    def close(self) -> None:
        self._stop.set()
        with self.lock:
            sessions, self.sessions = list(self.sessions.values()), {}
        for s in sessions:
            s.close()
