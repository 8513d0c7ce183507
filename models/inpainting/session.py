"""The stateful per-video inference core: scribble, propagate both ways, correct, inpaint.

XMem's ``InferenceCore`` / SAM 2's video predictor pattern::

    session = InpaintingSession(net, open_frames("video.mp4"), internal_size=(240, 432), max_memory=8)
    session.add_scribbles(40, strokes)        # any frame; returns that frame's mask
    session.propagate()                       # forwards and backwards from every scribbled frame
    session.masks(10)                         # bool [H, W] at the input's resolution
    session.add_scribbles(70, corrections)    # a corrective round on another frame
    session.propagate()
    for frame in session.inpaint():           # Frame(index, name, RGB uint8 at input resolution)
        ...

Memory stays bounded on long videos. Frames are read once, streamed, and kept only at the internal
size in a temporary memory-mapped file (on disk, not in RAM), with each frame's mask probability and
the chained camera homographies. User frames (those with scribbles) stay in memory permanently; the
propagated frames a run adds go to a working memory of at most ``max_memory`` frames: when it is
full, the frame the reads used least (attention received per read since it was added, XMem's
usage counting) leaves, the most recent frame always stays. So memory holds at most
``max_memory + len(user_frames)`` frames (``peak_memory`` records it).

Between two user frames each frame is predicted from both (the forward run from the earlier one,
the backward run from the later one) and the two are blended by temporal distance, as MiVOS fuses
propagations; before the first and after the last user frame one direction decides. Masks are
binary: every scribble with ``object_id`` >= 1 marks the object to remove, 0 marks background.
"""
from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from models.common.frames import Frame
from models.inpainting import align
from models.inpainting.network import InpaintingNet, sampling_matrix
from models.inpainting.scribbles import Stroke, rasterize

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class _Entry:
    frame: int
    key: Tensor     # [1, Ck, h, w]
    value: Tensor   # [1, Cv, h, w]
    permanent: bool
    usage: float = 0.0
    reads: int = 0

    def score(self) -> float:
        return self.usage / max(1, self.reads)


def default_internal_size(height: int, width: int, *, long_side: int = 432) -> tuple[int, int]:
    """The input's aspect at most ``long_side`` px on the long side, both sides multiples of 4 (>= 16)."""
    s = min(1.0, long_side / max(height, width))
    return tuple(max(16, int(round(v * s / 4)) * 4) for v in (height, width))


class InpaintingSession:
    """One video, one object to remove. ``frames``: a reader (:func:`models.common.frames.open_frames`)
    or any sized iterable of RGB uint8 arrays / :class:`Frame` s, read once in order."""

    def __init__(self, net: InpaintingNet, frames, *, internal_size: tuple[int, int] | None = None,
                 max_memory: int = 8, mem_every: int = 1, device: str | torch.device = "cpu",
                 progress: Progress | None = None):
        if max_memory < 1 or mem_every < 1:
            raise ValueError(f"max_memory and mem_every must be >= 1, got {max_memory}, {mem_every}")
        self.net = net.to(device).eval()
        self.device = torch.device(device)
        self.reader = frames
        self.max_memory, self.mem_every = int(max_memory), int(mem_every)
        self.progress = progress or (lambda stage, done, total: None)
        self.n_frames = len(frames)
        if self.n_frames == 0:
            raise ValueError("the video has no frames")
        self.internal_size = internal_size
        self._dir = Path(tempfile.mkdtemp(prefix="mokuflow-session-"))
        self._read_all()
        self._user: dict[int, dict[str, np.ndarray]] = {}  # frame → {"pos", "neg"} bool maps (internal size)
        self._permanent: dict[int, _Entry] = {}
        self.peak_memory = 0

    # ------------------------------------------------------------------------------------ frames
    def _read_all(self) -> None:
        """One streaming pass: frames resized into a disk-backed array."""
        import cv2

        self.names: list[str] = []
        for i, item in enumerate(self._stream()):
            name, rgb = item
            if i == 0:
                self.input_size = rgb.shape[:2]
                if self.internal_size is None:
                    self.internal_size = default_internal_size(*self.input_size)
                h, w = self.internal_size
                if h % 4 or w % 4:
                    raise ValueError(f"internal_size sides must be multiples of 4, got {self.internal_size}")
                self._frames = np.lib.format.open_memmap(self._dir / "frames.npy", "w+", np.uint8, (self.n_frames, h, w, 3))
                self._prob = np.lib.format.open_memmap(self._dir / "prob.npy", "w+", np.uint8, (self.n_frames, h, w))
                self._has = np.zeros(self.n_frames, bool)
            elif rgb.shape[:2] != self.input_size:
                raise ValueError(f"frame {i} is {rgb.shape[1]}x{rgb.shape[0]}, the first was "
                                 f"{self.input_size[1]}x{self.input_size[0]}")
            small = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
            self._frames[i] = small
            self.names.append(name)
            self.progress("read", i + 1, self.n_frames)
        if len(self.names) != self.n_frames:
            raise ValueError(f"the reader gave {len(self.names)} frames, its length says {self.n_frames}")

    def _stream(self) -> Iterator[tuple[str, np.ndarray]]:
        for i, item in enumerate(self.reader):
            if isinstance(item, Frame):
                yield item.name, item.image
            else:
                yield f"{i:05d}", np.asarray(item)

    def _image(self, t: int) -> Tensor:
        x = torch.from_numpy(np.ascontiguousarray(self._frames[t])).to(self.device)
        return x.permute(2, 0, 1)[None].float() / 255.0

    def _mask_tensor(self, t: int) -> Tensor:
        return torch.from_numpy(self._prob[t].astype(np.float32) / 255.0).to(self.device)[None, None]

    # ------------------------------------------------------------------------------- interaction
    @property
    def user_frames(self) -> list[int]:
        return sorted(self._user)

    def add_scribbles(self, frame_index: int, strokes: Iterable) -> np.ndarray:
        """Add strokes (:class:`Stroke` s, or DAVIS stroke dicts ``{"path", "object_id"}``) on one
        frame; that frame's mask is recomputed from them (and its current mask, on a correction), it
        joins the permanent memory, and its mask at input resolution is returned. Later strokes win
        where they cross earlier ones. Call :meth:`propagate` to update the other frames."""
        t = self._check_index(frame_index)
        h, w = self.internal_size
        strokes = [self._as_stroke(t, s) for s in strokes]
        if not strokes:
            raise ValueError(f"no strokes given for frame {t}")
        lab = rasterize(strokes, height=h, width=w)
        user = self._user.setdefault(t, {"pos": np.zeros((h, w), bool), "neg": np.zeros((h, w), bool)})
        user["pos"] = np.where(lab >= 0, lab > 0, user["pos"])
        user["neg"] = np.where(lab >= 0, lab == 0, user["neg"])
        self._interact(t)
        return self.masks(t)

    def _as_stroke(self, t: int, s) -> Stroke:
        if isinstance(s, Stroke):
            return s
        if isinstance(s, dict) and "path" in s and "object_id" in s:
            return Stroke(t, int(s["object_id"]), np.asarray(s["path"], np.float64).reshape(-1, 2))
        raise ValueError(f"frame {t}: a stroke must be a Stroke or a dict with 'path' and 'object_id', got {s!r}")

    def _check_index(self, i) -> int:
        if not isinstance(i, (int, np.integer)) or not 0 <= i < self.n_frames:
            raise IndexError(f"frame index {i!r} out of range for {self.n_frames} frames")
        return int(i)

    def _scribble_maps(self, t: int) -> Tensor:
        u = self._user[t]
        m = np.stack([u["pos"], u["neg"]]).astype(np.float32)
        return torch.from_numpy(m).to(self.device)[None]

    @torch.inference_mode()
    def _interact(self, t: int) -> None:
        """The user frame's mask from its scribbles (and previous mask), read against the other user
        frames and this frame's own scribble-only entry; then it becomes a permanent memory frame."""
        image = self._image(t)
        prev = self._mask_tensor(t) if self._has[t] else torch.zeros_like(image[:, :1])
        scrib = self._scribble_maps(t)
        key, feats = self.net.encode_key(image)
        own = _Entry(t, key, self.net.encode_value(image, prev, feats, scrib), permanent=True)
        memory = [e for f, e in self._permanent.items() if f != t] + [own]
        keys, values = _stack(memory)
        readout, _ = self.net.read(key, keys, values)
        prob = torch.sigmoid(self.net.segment(feats, readout, torch.cat([scrib, prev], 1)))
        prob = torch.where(scrib[:, :1] > 0, 1.0, torch.where(scrib[:, 1:] > 0, 0.0, prob))  # the user is right
        self._store(t, prob)
        self._permanent[t] = _Entry(t, key, self.net.encode_value(image, prob, feats, scrib), permanent=True)

    def _store(self, t: int, prob: Tensor) -> None:
        self._prob[t] = (prob[0, 0].clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        self._has[t] = True

    # ------------------------------------------------------------------------------- propagation
    def propagate(self) -> None:
        """Masks on every frame that is not a user frame: forwards and backwards from each user frame
        up to the next one (or the video's end), blended by distance between two user frames."""
        users = self.user_frames
        if not users:
            raise ValueError("no scribbles yet: add_scribbles on some frame first")
        total = self.n_frames - len(users)
        self._done = 0
        for k, u in enumerate(users):  # forward runs write, backward runs blend into them
            stop = users[k + 1] if k + 1 < len(users) else self.n_frames
            self._run(u, range(u + 1, stop), blend_with=None)
        for k, u in enumerate(users):
            stop = users[k - 1] if k > 0 else -1
            self._run(u, range(u - 1, stop, -1), blend_with=users[k - 1] if k > 0 else None)
        self.progress("propagate", total, total)

    @torch.inference_mode()
    def _run(self, source: int, frames: range, *, blend_with: int | None) -> None:
        working: list[_Entry] = []
        total = self.n_frames - len(self._user)
        for step, t in enumerate(frames, start=1):
            image = self._image(t)
            memory = list(self._permanent.values()) + working
            self.peak_memory = max(self.peak_memory, len(memory))
            keys, values = _stack(memory)
            out = self.net(image, keys, values)
            for e, u in zip(memory, out["usage"][0].tolist()):
                e.usage += u
                e.reads += 1
            prob = torch.sigmoid(out["logits"])
            if blend_with is not None:  # the forward run from the earlier user frame already wrote t
                d_back, d_fwd = source - t, t - blend_with
                prob = (d_back * self._mask_tensor(t) + d_fwd * prob) / (d_back + d_fwd)
            self._store(t, prob)
            if step % self.mem_every == 0:
                working.append(_Entry(t, out["key"], self.net.encode_value(image, prob, out["feats"]), permanent=False))
                if len(working) > self.max_memory:
                    working.pop(_least_used(working))
            self._done += 1
            self.progress("propagate", min(self._done, total), total)

    # ------------------------------------------------------------------------------------- masks
    def mask_probability(self, i: int) -> np.ndarray:
        """Frame ``i``'s object probability float32 [h, w] at the internal size."""
        t = self._check_index(i)
        if not self._has[t]:
            raise ValueError(f"frame {t} has no mask yet: add scribbles and propagate() first")
        return self._prob[t].astype(np.float32) / 255.0

    def masks(self, i: int) -> np.ndarray:
        """Frame ``i``'s object mask, bool [H, W] at the input's resolution."""
        import cv2

        h, w = self.input_size
        return cv2.resize(self.mask_probability(i), (w, h), interpolation=cv2.INTER_LINEAR) > 0.5

    def save_masks(self, folder) -> list[Path]:
        """One PNG per frame (0 background, 255 object), named after the input frame, at its size."""
        from models.common.frames import write_mask

        return [write_mask(Path(folder) / f"{name}.png", self.masks(t)) for t, name in enumerate(self.names)]

    # ---------------------------------------------------------------------------------- inpaint
    def _hole(self, t: int, dilation: int) -> np.ndarray:
        import cv2

        m = (self.mask_probability(t) > 0.5).astype(np.uint8)
        if dilation > 0:
            m = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilation + 1,) * 2))
        return m.astype(np.float32)

    def _references(self, t: int, stride: int) -> list[int]:
        """Memory frames for restoring t: nearest first on both sides at ``stride``, at most ``max_memory``."""
        out, k = [], 1
        while len(out) < self.max_memory and (t - k * stride >= 0 or t + k * stride < self.n_frames):
            out += [j for j in (t - k * stride, t + k * stride) if 0 <= j < self.n_frames]
            k += 1
        return out[: self.max_memory]

    @torch.inference_mode()
    def inpaint(self, *, stride: int | None = None, dilation: int | None = None) -> Iterator[Frame]:
        """The video with the object removed, one :class:`Frame` at a time (RGB uint8 at input
        resolution; outside the dilated mask the input's own pixels). Each frame reads a memory of
        other frames at ``stride`` apart (default: spread over the video, at most 5 apart) with their
        masks, warped onto it by homographies chained between neighbours (estimated first, with the
        masks left out); the input is streamed again in order."""
        import cv2

        missing = np.flatnonzero(~self._has)
        if len(missing):
            raise ValueError(f"{len(missing)} frames have no mask (first: {missing[0]}): propagate() first")
        if stride is None:
            stride = min(5, max(1, math.ceil((self.n_frames - 1) / self.max_memory)))
        h, w = self.internal_size
        if dilation is None:
            dilation = max(1, round(0.006 * math.hypot(h, w)))
        # the camera, now that the objects are known: their corners would pull the homographies
        holes = (self._hole(t, dilation) > 0 for t in range(self.n_frames))
        self._homs = align.video_homographies((self._frames[t] for t in range(self.n_frames)), holes)
        cache: dict[int, tuple] = {}
        for t, (name, rgb) in enumerate(self._stream()):
            refs = self._references(t, stride)
            for j in list(cache):  # keep only what this frame or the next ones need: bounded
                if abs(j - t) > (self.max_memory // 2 + 1) * stride:
                    del cache[j]
            restored = self._restore(t, refs, cache, dilation) if refs else self._image(t)
            small = (restored[0].permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
            H, W = rgb.shape[:2]
            hole = cv2.resize(self._hole(t, dilation), (W, H), interpolation=cv2.INTER_LINEAR) > 0.5
            out = rgb.copy()
            out[hole] = cv2.resize(small, (W, H), interpolation=cv2.INTER_LINEAR)[hole]
            self.progress("inpaint", t + 1, self.n_frames)
            yield Frame(t, name, out)

    def _encoded(self, j: int, cache: dict, dilation: int) -> tuple:
        if j not in cache:
            image = self._image(j)
            hole = torch.from_numpy(self._hole(j, dilation)).to(self.device)[None, None]
            key, feats = self.net.encode_key(image)
            cache[j] = (image, hole, key, self.net.encode_value(image, hole, feats))
        return cache[j]

    def _restore(self, t: int, refs: list[int], cache: dict, dilation: int) -> Tensor:
        image, hole, key, _ = self._encoded(t, cache, dilation)
        mem = [self._encoded(j, cache, dilation) for j in refs]
        images = torch.cat([m[0] for m in mem])[None]
        holes = torch.cat([m[1] for m in mem])[None]
        keys = torch.cat([m[2] for m in mem])[None]
        values = torch.cat([m[3] for m in mem])[None]
        h, w = self.internal_size
        homs = np.stack([align.relative(self._homs, j, t) for j in refs])  # memory j → this frame
        warps = sampling_matrix(torch.from_numpy(homs).float().to(self.device), h, w)[None]
        readout, _ = self.net.read(key, keys, values)
        return self.net.restore(image, hole, key, readout, images, holes, keys, warps)["restored"]

    # ----------------------------------------------------------------------------------- cleanup
    def close(self) -> None:
        """Drop the temporary frame store (also done when the session is garbage-collected)."""
        for a in ("_frames", "_prob"):
            if hasattr(self, a):
                delattr(self, a)
        shutil.rmtree(getattr(self, "_dir", ""), ignore_errors=True)

    def __enter__(self) -> InpaintingSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        self.close()


def _stack(memory: list[_Entry]) -> tuple[Tensor, Tensor]:
    """Keys [1, N, Ck, h, w] and values [1, N, Cv, h, w] of memory entries."""
    return torch.stack([e.key[0] for e in memory])[None], torch.stack([e.value[0] for e in memory])[None]


def _least_used(working: list[_Entry]) -> int:
    """Index of the working-memory frame to drop: lowest usage per read, never the newest."""
    return min(range(len(working) - 1), key=lambda i: working[i].score())
