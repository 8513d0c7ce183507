"""The invisibility cloak: scribble on an object in a few frames, get it segmented and removed everywhere.

``mokuflow inpainting cloak --video V --scribbles S.json --out DIR`` (once the study is declared):
``V`` is a video file or a folder of frames (jpg / png in any case, sorted by name), ``S.json`` a
DAVIS interactive scribble file (:mod:`models.inpainting.scribbles`) with strokes on one frame or on
several. Every stroke with ``object_id`` >= 1 marks the object to remove, 0 marks background. Strokes
with a ``round`` (the web page writes it) are given round by round, each round followed by a
propagation, so a session of corrections gives the same masks again. Writes,
atomically (:func:`tasks.core.atomic_dir`: all of it or, on any failure, ``DIR`` as it was)::

    DIR/masks/<stem>.png     one per input frame, its size: 0 background, 255 object
    DIR/result/<stem>.png    one per input frame, its size: the object removed (lossless PNG)
    DIR/result.mp4           the result as H.264 yuv420p with the moov atom first (browser-playable)

``<stem>`` is the input frame's file stem, or ``00000``, ``00001``... for a video. Bad input (an
unreadable video or frame, a folder with no images, frames of differing sizes, a scribble file not in
the DAVIS format, a scribble on a frame the video lacks, no scribble at all) is a one-line
:class:`tasks.core.MokuflowError` naming the file and the problem, raised before ``DIR`` is touched.

Settings (``run``): a plain dict, ``params["inpainting"]["cloak"]`` when the study's params section
has one, over :data:`DEFAULTS`. torch and cv2 are imported inside functions (cheap module import).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from tasks.core import MokuflowError, atomic_dir, log

DEFAULTS = {
    "model": None,          # a save_model file; None: <inpainting.train.out_dir>/model.pt
    "internal_size": None,  # [h, w] the network runs at; None: the model file's, else <= 432 px long side
    "max_memory": None,     # working-memory frames; None: the model file's, else 8
    "device": "auto",       # auto: cuda when there is one
    "fps": None,            # result.mp4 frame rate; None: the video's, or 25 for a folder
}
OWNS = ("masks/*", "result/*", "result.mp4")


def add_arguments(parser) -> None:
    parser.add_argument("--video", default=None, metavar="V", help="a video file or a folder of frames (jpg/png)")
    parser.add_argument("--scribbles", default=None, metavar="S.json", help="DAVIS interactive scribble file")
    parser.add_argument("--out", default=None, metavar="DIR", help="output folder (masks/, result/, result.mp4)")
    parser.add_argument("--model", default=None, metavar="MODEL.pt", help="model file (default: the trained one)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when present)")


def run(params: dict | None = None, video: str | None = None, scribbles: str | None = None, out: str | None = None,
        model: str | None = None, device: str | None = None, settings: dict | None = None) -> dict:
    """A thin wrapper around :func:`cloak`: CLI paths are the user's (relative to the cwd)."""
    missing = [f"--{k}" for k, v in (("video", video), ("scribbles", scribbles), ("out", out)) if not v]
    if missing:
        raise MokuflowError(f"inpainting cloak needs {', '.join(missing)} (--video V --scribbles S.json --out DIR)")
    cfg = _settings(params or {}, settings)
    model_path = Path(model).resolve() if model else _default_model(params or {}, cfg)
    return cloak(Path(video).resolve(), Path(scribbles).resolve(), Path(out).resolve(), net=model_path,
                 internal_size=cfg["internal_size"], max_memory=cfg["max_memory"],
                 device=device or cfg["device"], fps=cfg["fps"], progress=True)


def _settings(params: dict, settings: dict | None) -> dict:
    section = (params.get("inpainting") or {}).get("cloak") or {}
    cfg = {**DEFAULTS, **section, **(settings or {})}
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise MokuflowError(f"inpainting cloak settings: unknown keys {unknown} (known: {sorted(DEFAULTS)})")
    return cfg


def _default_model(params: dict, cfg: dict) -> Path:
    from tasks.core import resolve

    if cfg["model"]:
        return resolve(params, cfg["model"]) if "_root" in params else Path(cfg["model"]).resolve()
    train = (params.get("inpainting") or {}).get("train") or {}
    if "out_dir" not in train:
        raise MokuflowError("inpainting cloak: no model given (--model MODEL.pt) and no inpainting.train.out_dir")
    return resolve(params, train["out_dir"]) / "model.pt"


# ------------------------------------------------------------------------------------------ core

def cloak(video, scribbles_json, out_dir, *, net, internal_size=None, max_memory: int | None = None,
          device: str | None = "auto", progress: bool | Callable[[str, int, int], None] | None = True,
          fps: float | None = None) -> dict:
    """Segment the scribbled object through ``video``, remove it, write ``out_dir`` (module docstring).

    ``net``: an :class:`~models.inpainting.network.InpaintingNet` or a ``save_model`` file (whose
    ``meta`` gives ``internal_size`` / ``max_memory`` when they are None here). ``progress``: True logs
    a line every ~10 % of each pass (read, propagate, inpaint), a callable gets ``(stage, done,
    total)``, False / None is silent. Returns a summary (frame count, sizes, folders, timings).
    """
    import torch

    from models.common.frames import FrameReadError, Mp4Writer, open_frames
    from models.inpainting.scribbles import ScribbleError, load_scribbles
    from models.inpainting.session import InpaintingSession, default_internal_size

    t0 = time.perf_counter()
    video, scribbles_json, out_dir = Path(video), Path(scribbles_json), Path(out_dir)
    net, meta = _net(net)
    try:
        frames = open_frames(video)
        n = len(frames)
        height, width = frames.height, frames.width  # decodes the first frame: unreadable files fail here
    except FrameReadError as e:
        raise MokuflowError(str(e)) from None
    try:
        scribbles = load_scribbles(scribbles_json)
    except ScribbleError as e:
        raise MokuflowError(str(e)) from None
    strokes = _check_scribbles(scribbles_json, scribbles, n)
    size = _internal_size(internal_size if internal_size is not None else meta.get("internal_size"),
                          default_internal_size(height, width))
    memory = int(max_memory if max_memory is not None else meta.get("max_memory", 8))
    dev = _device(device)
    rate = float(fps) if fps else _fps(video)
    report = _reporter(progress, n)
    with atomic_dir(out_dir, inputs=[video, scribbles_json], owns=OWNS) as tmp:
        try:
            with torch.inference_mode(), InpaintingSession(net, frames, internal_size=size, max_memory=memory,
                                                           device=dev, progress=report) as session:
                for batch in _rounds(strokes):  # corrections replay in the order they were given
                    for t in sorted(batch):
                        session.add_scribbles(t, batch[t])
                    session.propagate()
                t_seg = time.perf_counter()
                (tmp / "masks").mkdir()
                session.save_masks(tmp / "masks")
                (tmp / "result").mkdir()
                with Mp4Writer(tmp / "result.mp4", fps=rate) as mp4:
                    for frame in session.inpaint():
                        _write_png(tmp / "result" / f"{frame.name}.png", frame.image)
                        mp4.write(frame.image)
                peak = session.peak_memory
            _readable(tmp)
        except FrameReadError as e:  # a frame that does not decode, found while streaming
            raise MokuflowError(str(e)) from None
    seconds = time.perf_counter() - t0
    summary = {"video": str(video), "scribbles": str(scribbles_json), "out": str(out_dir), "n_frames": n,
               "size": [width, height], "internal_size": list(size), "max_memory": memory,
               "scribbled_frames": sorted(strokes), "peak_memory_frames": int(peak), "device": str(dev),
               "masks_dir": str(out_dir / "masks"), "result_dir": str(out_dir / "result"),
               "result_mp4": str(out_dir / "result.mp4"), "fps": rate,
               "seconds": round(seconds, 3), "segment_seconds": round(t_seg - t0, 3),
               "frames_per_second": round(n / seconds, 3) if seconds > 0 else None}
    if progress:
        log(f"cloak: {n} frames {width}x{height} -> {out_dir} ({seconds:.1f} s, {n / max(seconds, 1e-9):.2f} frames/s)")
    return summary


def _net(net):
    """(InpaintingNet, meta) from a net or a model file."""
    from models.inpainting.inference import ModelFileError, load_model
    from models.inpainting.network import InpaintingNet

    if isinstance(net, InpaintingNet):
        return net, {}
    if net is None:
        raise MokuflowError("cloak: no model given (a trained InpaintingNet or a model file)")
    try:
        return load_model(net)
    except ModelFileError as e:
        raise MokuflowError(f"{e} (train one first, or pass --model)") from None


def _check_scribbles(path: Path, scribbles, n_frames: int) -> dict:
    """{frame: strokes} of a parsed file, refusing strokes on frames the video lacks and files that
    mark no object. A per-frame list shorter or longer than the video is accepted when the extra
    lists are empty (a file cut for a trimmed video)."""
    beyond = [s.frame for s in scribbles if s.frame >= n_frames]
    if beyond:
        raise MokuflowError(f"{path}: scribble on frame {beyond[0]} but the video has {n_frames} frames "
                            f"(0-{n_frames - 1})")
    if not any(s.object_id >= 1 for s in scribbles):
        raise MokuflowError(f"{path}: no object scribble (every stroke has object_id 0, background): "
                            "mark the object to remove with object_id >= 1")
    return {t: list(f) for t, f in enumerate(scribbles.frames) if f}


def _rounds(strokes: dict) -> list[dict]:
    """{frame: strokes} split by the strokes' ``round`` (absent: 1), in round order: one session
    interaction + propagation per round, as the web page did them."""
    by_round: dict[int, dict] = {}
    for t, frame_strokes in strokes.items():
        for st in frame_strokes:
            by_round.setdefault(st.round or 1, {}).setdefault(t, []).append(st)
    return [by_round[r] for r in sorted(by_round)]


def _internal_size(value, default: tuple[int, int]) -> tuple[int, int]:
    if value is None:
        return default
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError):
        raise MokuflowError(f"cloak internal_size: expected [height, width], got {value!r}") from None
    if h < 16 or w < 16 or h % 4 or w % 4:
        raise MokuflowError(f"cloak internal_size: sides must be multiples of 4 and >= 16, got [{h}, {w}]")
    return h, w


def _device(device):
    from models.common.device import DeviceError, resolve_device

    try:
        return resolve_device(device)
    except DeviceError as e:
        raise MokuflowError(f"cloak device: {e}") from None


def _fps(video: Path) -> float:
    """The video's frame rate (25 for folders, or when the container does not say)."""
    import cv2

    if video.is_dir():
        return 25.0
    cap = cv2.VideoCapture(str(video), cv2.CAP_FFMPEG)
    try:
        rate = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        cap.release()
    return rate if 1.0 <= rate <= 240.0 else 25.0


def _readable(folder: Path) -> None:
    """Files as the umask allows (the atomic writers' temp files are private, 0600)."""
    import os

    mask = os.umask(0)
    os.umask(mask)
    for p in folder.rglob("*"):
        if p.is_file():
            os.chmod(p, 0o666 & ~mask)


def _write_png(path: Path, rgb) -> None:
    import cv2

    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise MokuflowError(f"{path}: could not write the image")


def _reporter(progress, n: int):
    """The session's progress callback: a user's callable, silence, or a log line every ~10 % a pass."""
    if callable(progress):
        return progress
    if not progress:
        return None
    t0, shown = time.perf_counter(), {}

    def report(stage: str, done: int, total: int) -> None:
        step = max(1, total // 10) if total >= 50 else total  # short passes: their last line only
        last = shown.get(stage, 0)
        if total and (done == total or done - last >= step) and done != last:
            shown[stage] = done
            log(f"cloak {stage}: {done}/{total} frames ({time.perf_counter() - t0:.1f} s)")

    return report
