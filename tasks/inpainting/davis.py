"""Writing the DAVIS layout: palette PNG annotations (DAVIS's own palette) without Pillow.

DAVIS annotations are 8-bit palette PNGs whose pixel values are object ids (0 background, 1.. objects,
255 void); :func:`models.common.frames.read_mask` reads them back as ids. OpenCV cannot write palette
PNGs, so the few chunks are written here (zlib + struct).
"""
from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np


def davis_palette() -> np.ndarray:
    """The PASCAL VOC / DAVIS palette, [256, 3] uint8: index 1 is (128, 0, 0), 2 is (0, 128, 0), ...
    (each index's bits spread over the high bits of R, G, B); 255 is DAVIS's void colour."""
    pal = np.zeros((256, 3), np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for k in range(8):
            r |= ((c >> 0) & 1) << (7 - k)
            g |= ((c >> 1) & 1) << (7 - k)
            b |= ((c >> 2) & 1) << (7 - k)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def palette_png(labels: np.ndarray) -> bytes:
    """An 8-bit palette PNG of a uint8 label map [H, W] with DAVIS's palette."""
    lab = np.asarray(labels)
    if lab.ndim != 2 or lab.size == 0 or lab.dtype != np.uint8:
        raise ValueError(f"labels must be a non-empty uint8 [H, W] array, got {lab.dtype} {lab.shape}")
    h, w = lab.shape
    rows = np.concatenate([np.zeros((h, 1), np.uint8), lab], axis=1)  # filter byte 0 (none) per row
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0)  # 8 bits, colour type 3 (palette)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"PLTE", davis_palette().tobytes())
            + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + _chunk(b"IEND", b""))


def write_palette_png(path: str | os.PathLike, labels: np.ndarray) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(palette_png(labels))
    return p
