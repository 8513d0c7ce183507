"""Frame sequences at full resolution, shared by every study: read a video or a folder of frames,
write an H.264 MP4 and 0/255 mask PNGs.

numpy + OpenCV (+ PyAV for writing). Reading streams one frame at a time (a 480p DAVIS sequence of 100
frames is 120 MB decoded: never hold it all). Each frame comes as :class:`Frame` ``(index, name,
image)``: ``image`` RGB uint8 [H, W, 3], ``name`` the file stem (folders) or ``%05d`` of the index
(videos, DAVIS's own naming). Every problem raises :class:`FrameReadError` (a ``ValueError``) whose
one-line message names the file and the problem: a missing or unreadable video, a folder with no
images, a frame that does not decode, frames of differing sizes (checked as they stream and, for
folders, up front from the PNG / JPEG headers, which costs a few hundred bytes a file).
"""
from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import numpy as np

from models.common.io import atomic_file

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")  # compared lower-cased: FRAME.JPG counts


class FrameReadError(ValueError):
    """A frame source that cannot be read as one sequence; the message names the file and the problem."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class Frame(NamedTuple):
    index: int
    name: str
    image: np.ndarray  # RGB uint8 [H, W, 3]


def open_frames(path: str | os.PathLike) -> FolderFrames | VideoFrames:
    """A folder of images → :class:`FolderFrames`; a file → :class:`VideoFrames`."""
    p = Path(path)
    if p.is_dir():
        return FolderFrames(p)
    return VideoFrames(p)


class _Frames:
    """What both sources share: ``len``, iteration, ``reader[i]`` and the same-size check."""

    path: Path
    size: tuple[int, int] | None  # (height, width) once known

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, i: int) -> Frame:
        raise NotImplementedError

    def _index(self, i: int) -> int:
        n = len(self)
        if not isinstance(i, (int, np.integer)) or not -n <= i < n:
            raise IndexError(f"{self.path}: frame index {i!r} out of range for {n} frames")
        return int(i) % n

    def _checked(self, where, image: np.ndarray) -> np.ndarray:
        """``image`` if it has the sequence's size (the first size seen fixes it), else FrameReadError."""
        h, w = image.shape[:2]
        if self.size is None:
            self.size = (h, w)
        elif (h, w) != self.size:
            raise FrameReadError(where, f"frame is {w}x{h} px, the sequence's frames are "
                                        f"{self.size[1]}x{self.size[0]}")
        return image

    @property
    def height(self) -> int:
        return self._size()[0]

    @property
    def width(self) -> int:
        return self._size()[1]

    def _size(self) -> tuple[int, int]:
        if self.size is None:
            self[0]  # decoding the first frame fixes the size
        return self.size


# ------------------------------------------------------------------------------------------ folders

class FolderFrames(_Frames):
    """The images of a folder (``.jpg/.jpeg/.png`` in any case), sorted by file name."""

    def __init__(self, folder: str | os.PathLike, *, check_headers: bool = True):
        self.path = Path(folder)
        if not self.path.is_dir():
            raise FrameReadError(self.path, "folder not found")
        self.files = sorted(p for p in self.path.iterdir()
                            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise FrameReadError(self.path, f"no images in the folder (looked for {', '.join(IMAGE_SUFFIXES)})")
        self.size = None
        if check_headers:
            self._check_headers()

    def _check_headers(self) -> None:
        """Refuse mixed sizes before any decoding; files whose header we cannot parse wait for decoding."""
        for f in self.files:
            hw = image_size(f)
            if hw is not None:
                self._checked(f, np.empty((*hw, 0), np.uint8))

    @property
    def names(self) -> list[str]:
        return [f.stem for f in self.files]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Frame:
        i = self._index(i)
        f = self.files[i]
        return Frame(i, f.stem, self._checked(f, read_image(f)))

    def __iter__(self) -> Iterator[Frame]:
        for i in range(len(self)):
            yield self[i]


def read_image(path: str | os.PathLike) -> np.ndarray:
    """One image file as RGB uint8 [H, W, 3] (grey and alpha images included), or FrameReadError."""
    import cv2

    p = Path(path)
    if not p.is_file():
        raise FrameReadError(p, "image not found")
    # frames as stored: an EXIF rotation would disagree with the header sizes and with video frames
    bgr = cv2.imread(str(p), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if bgr is None or bgr.size == 0:
        raise FrameReadError(p, "not a readable image (could not be decoded)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


# ------------------------------------------------------------------------------------------- videos

class VideoFrames(_Frames):
    """The frames of a video file, decoded by cv2.VideoCapture.

    Frame-accurate: ``len`` is the number of frames that decode (one ``grab`` pass at open, since
    container frame counts lie for cut or variable-rate files), and ``reader[i]`` walks forward with
    ``grab`` from the current position, re-opening to go back (``CAP_PROP_POS_FRAMES`` seeks land on
    the wrong frame with some codecs). Iterating is one sequential pass of its own.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.size = None
        self._cap, self._pos = None, 0  # the capture random access reuses, and its next frame index
        cap = self._open()
        try:
            self._n = self._count(cap)
        finally:
            cap.release()

    def _open(self):
        import cv2

        if not self.path.is_file():
            raise FrameReadError(self.path, "video not found")
        if self.path.stat().st_size == 0:
            raise FrameReadError(self.path, "empty file")
        cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            raise FrameReadError(self.path, "not a readable video (container could not be opened)")
        return cap

    def _count(self, cap) -> int:
        """Frames that decode; the first is converted too, so a file that opens is readable and sized."""
        if not cap.grab():
            raise FrameReadError(self.path, "no decodable frame")
        self._retrieve(cap, 0)
        n = 1
        while cap.grab():
            n += 1
        return n

    def __len__(self) -> int:
        return self._n

    def _retrieve(self, cap, i: int) -> Frame:
        import cv2

        ok, bgr = cap.retrieve()
        if not ok or bgr is None or bgr.size == 0:
            raise FrameReadError(self.path, f"frame {i} could not be decoded")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return Frame(i, f"{i:05d}", self._checked(f"{self.path} frame {i}", rgb))

    def __getitem__(self, i: int) -> Frame:
        i = self._index(i)
        if self._cap is None or i < self._pos:
            self.close()
            self._cap, self._pos = self._open(), 0
        while self._pos <= i:
            if not self._cap.grab():
                raise FrameReadError(self.path, f"frame {self._pos} could not be decoded "
                                                f"({self._n} decoded when the video was opened)")
            self._pos += 1
        return self._retrieve(self._cap, i)

    def __iter__(self) -> Iterator[Frame]:
        cap = self._open()
        try:
            for i in range(self._n):
                if not cap.grab():
                    raise FrameReadError(self.path, f"frame {i} could not be decoded "
                                                    f"({self._n} decoded when the video was opened)")
                yield self._retrieve(cap, i)
        finally:
            cap.release()

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __del__(self):
        self.close()


# ------------------------------------------------------------------------------------ image headers

def image_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(height, width) from a PNG or JPEG header without decoding, or None when it cannot be parsed."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
            if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
                w, h = struct.unpack(">II", head[16:24])
                return h, w
            if head[:2] == b"\xff\xd8":
                f.seek(2)
                return _jpeg_size(f)
    except OSError:
        return None  # decoding will say what is wrong with the file
    return None


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(f) -> tuple[int, int] | None:
    """Walk JPEG segments (EXIF, tables) to the start-of-frame marker that holds the size."""
    while True:
        b = f.read(1)
        while b == b"\xff":  # fill bytes before a marker
            b = f.read(1)
        if not b:
            return None
        marker = b[0]
        if marker == 0xD8 or 0xD0 <= marker <= 0xD7 or marker == 0x01:
            continue  # markers without a length
        raw = f.read(2)
        if len(raw) < 2:
            return None
        (length,) = struct.unpack(">H", raw)
        if marker in _SOF:
            data = f.read(5)
            if len(data) < 5:
                return None
            h, w = struct.unpack(">HH", data[1:5])
            return (h, w) if h and w else None
        if marker == 0xDA or length < 2:  # scan data reached without a frame header: give up
            return None
        f.seek(length - 2, os.SEEK_CUR)


def _png_palette(path: Path) -> np.ndarray | None:
    """The PLTE chunk of a PNG as [N, 3] RGB, or None (not a palette PNG)."""
    data = path.read_bytes()
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"PLTE":
            return np.frombuffer(data[pos + 8:pos + 8 + length], np.uint8).reshape(-1, 3)
        if kind == b"IDAT":
            return None  # PLTE must come before the image data
        pos += 12 + length
    return None


# -------------------------------------------------------------------------------------------- masks

def read_mask(path: str | os.PathLike) -> np.ndarray:
    """A mask or label PNG as uint8 [H, W]: palette PNGs (DAVIS annotations) give their palette
    indices (0 background, 1.. objects, 255 void), grey PNGs their values.

    OpenCV expands palettes to colours, so the indices are recovered by matching each colour to the
    PLTE chunk (DAVIS palettes have one colour per index).
    """
    import cv2

    p = Path(path)
    if not p.is_file():
        raise FrameReadError(p, "mask not found")
    img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise FrameReadError(p, "not a readable mask image")
    palette = _png_palette(p) if p.suffix.lower() == ".png" else None
    if img.ndim == 2:
        return img.astype(np.uint8) if img.dtype == np.uint8 else (img > 0).astype(np.uint8) * 255
    rgb = cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2RGB)
    if palette is None:
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return _palette_indices(p, rgb, palette)


def _palette_indices(path: Path, rgb: np.ndarray, palette: np.ndarray) -> np.ndarray:
    code = lambda c: (c[..., 0].astype(np.int64) << 16) | (c[..., 1].astype(np.int64) << 8) | c[..., 2]  # noqa: E731
    keys = code(palette)
    # the first index of each colour wins: palettes padded with black repeat (0, 0, 0) after index 0
    uniq, first = np.unique(keys, return_index=True)
    pix = code(rgb)
    pos = np.searchsorted(uniq, pix).clip(0, len(uniq) - 1)
    if not np.array_equal(uniq[pos], pix):
        raise FrameReadError(path, "palette PNG holds colours that are not in its palette")
    return first[pos].astype(np.uint8)


def write_mask(path: str | os.PathLike, mask: np.ndarray) -> Path:
    """Write a 2-D mask as a grey PNG, 255 where ``mask`` is non-zero and 0 elsewhere; atomically."""
    import cv2

    m = np.asarray(mask)
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"{path}: a mask must be a non-empty 2-D array, got shape {m.shape}")
    ok, buf = cv2.imencode(".png", np.where(m != 0, 255, 0).astype(np.uint8))
    if not ok:
        raise ValueError(f"{path}: the mask could not be encoded as PNG")
    with atomic_file(path) as tmp:
        tmp.write_bytes(buf.tobytes())
    return Path(path)


# ------------------------------------------------------------------------------------------ writing

class Mp4Writer:
    """An H.264 MP4 a browser plays (libx264, yuv420p, moov atom first), written atomically.

    ``with Mp4Writer(path, fps=25) as w: w.write(rgb)`` for each RGB uint8 [H, W, 3] frame; the file
    appears at ``path`` only when the block ends without an error. yuv420p needs even sides: odd
    ones are padded by repeating the last row / column (``even="pad"``, nothing lost) or cropped
    (``even="crop"``). Every frame must have the first frame's size.
    """

    def __init__(self, path: str | os.PathLike, *, fps: float = 25, crf: int = 23, preset: str = "veryfast",
                 even: str = "pad"):
        if even not in ("pad", "crop"):
            raise ValueError(f"even must be 'pad' or 'crop', got {even!r}")
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.path, self.even = Path(path), even
        self.fps = Fraction(fps).limit_denominator(1001)  # 29.97 → 30000/1001
        self.crf, self.preset = crf, preset
        self.size: tuple[int, int] | None = None  # input (height, width)
        self.n_frames = 0
        self._stack = contextlib.ExitStack()
        self._container = self._stream = None

    def __enter__(self) -> Mp4Writer:
        import av

        tmp = self._stack.enter_context(atomic_file(self.path))
        # the temp name ends in .tmp: name the format, and faststart so playback starts before download ends
        self._container = self._stack.enter_context(
            av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}))
        return self

    def _even(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        if self.even == "crop":
            return rgb[: h - h % 2, : w - w % 2]
        return np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")

    def _check(self, rgb: np.ndarray) -> np.ndarray:
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"{self.path}: frames must be RGB uint8 [H, W, 3], got {rgb.dtype} {rgb.shape}")
        if self.size is None:
            if min(rgb.shape[:2]) < 2:
                raise ValueError(f"{self.path}: frames must be at least 2x2 px, got {rgb.shape[1]}x{rgb.shape[0]}")
            self.size = rgb.shape[:2]
        elif rgb.shape[:2] != self.size:
            raise ValueError(f"{self.path}: frame {self.n_frames} is {rgb.shape[1]}x{rgb.shape[0]} px, "
                             f"the first was {self.size[1]}x{self.size[0]}")
        return self._even(rgb)

    def write(self, rgb: np.ndarray) -> None:
        import av

        if self._container is None:
            raise RuntimeError("Mp4Writer.write outside its with-block")
        rgb = self._check(rgb)
        if self._stream is None:
            s = self._container.add_stream("libx264", rate=self.fps)
            s.height, s.width = rgb.shape[:2]
            s.pix_fmt = "yuv420p"
            s.options = {"crf": str(self.crf), "preset": self.preset}
            self._stream = s
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = self.n_frames  # one tick of 1/fps per frame: the stream's codec time base
        frame.time_base = 1 / self.fps
        self._container.mux(self._stream.encode(frame))
        self.n_frames += 1

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            try:
                if self._stream is None:
                    raise ValueError(f"{self.path}: no frames to write")
                self._container.mux(self._stream.encode())  # flush the encoder's delayed frames
            except BaseException as e:  # close the container and drop the temp file, then re-raise
                self._stack.__exit__(type(e), e, e.__traceback__)
                raise
        return self._stack.__exit__(exc_type, exc, tb)


def write_mp4(path: str | os.PathLike, frames: Iterable[np.ndarray], *, fps: float = 25, crf: int = 23,
              preset: str = "veryfast", even: str = "pad") -> Path:
    """Write RGB uint8 frames (any iterable, e.g. a reader's images) as an H.264 MP4; see :class:`Mp4Writer`."""
    with Mp4Writer(path, fps=fps, crf=crf, preset=preset, even=even) as w:
        for rgb in frames:
            w.write(rgb.image if isinstance(rgb, Frame) else rgb)
    return Path(path)
