"""The shared-memory network: one spatio-temporal memory read by a mask decoder and an inpainting decoder.

STM / XMem's pattern in plain torch, small enough for CPU:

- key encoder: frame → key (``key_dim``) and features at 1/2 and 1/4 of the input;
- value encoder: frame + mask + the user's positive / negative scribbles (+ the key features) → value;
- memory: keys and values of other frames (user frames and propagated ones); the current frame's key
  reads it by attention (XMem's L2 similarity, softmax over every memory location of every frame);
- mask decoder: the readout + the frame's own features + its scribbles → mask logits;
- inpainting decoder: the same readout, plus memory frames warped onto this one (homographies, see
  :mod:`models.inpainting.align`) and blended per pixel by learned scores where memory saw background
  (what memory saw of that place), refined by a small U-Net → the restored frame.

Images are float [0, 1] RGB; masks float [0, 1] (1 = object). Sides must be multiples of 4 (the
session resizes to an internal size that is). ``warps`` are 3x3 maps in normalised coordinates from
the query frame to each memory frame (:func:`sampling_matrix`); None means an unmoving camera.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, dilation, dilation=dilation),
                         nn.GroupNorm(_groups(cout), cout), nn.ReLU(inplace=True))


def _groups(c: int) -> int:
    return 4 if c % 4 == 0 else 1


class _Res(nn.Module):
    def __init__(self, c: int, dilation: int = 1):
        super().__init__()
        self.a = _conv(c, c, dilation=dilation)
        self.b = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1), nn.GroupNorm(_groups(c), c))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x + self.b(self.a(x)))


class _Encoder(nn.Module):
    """in_ch → (f2: ``w`` at 1/2, f4: ``2w`` at 1/4); dilated blocks widen the view for matching."""

    def __init__(self, in_ch: int, w: int):
        super().__init__()
        self.s2 = nn.Sequential(_conv(in_ch, w, 2), _conv(w, w))
        self.s4 = nn.Sequential(_conv(w, 2 * w, 2), _Res(2 * w), _Res(2 * w, dilation=2))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        f2 = self.s2(x)
        return f2, self.s4(f2)


def _up(x: Tensor, like: Tensor) -> Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


# ------------------------------------------------------------------------------------- geometry

def sampling_matrix(hom_pixels: Tensor, height: int, width: int) -> Tensor:
    """A homography taking memory-frame pixels to query-frame pixels ([..., 3, 3], OpenCV pixel
    coordinates at ``height`` x ``width``) → the map from query to memory in grid_sample's normalised
    coordinates (align_corners=False), valid at any resolution of the same frame."""
    a = hom_pixels.new_tensor([[2.0 / width, 0, 1.0 / width - 1], [0, 2.0 / height, 1.0 / height - 1], [0, 0, 1]])
    return a @ torch.linalg.inv(hom_pixels) @ torch.linalg.inv(a)


def warp(x: Tensor, warps: Tensor | None) -> Tensor:
    """Sample memory maps ``x`` [B, N, C, h, w] at the query's pixels through ``warps`` [B, N, 3, 3]
    (normalised query → memory); outside the memory frame is 0 (so a warped validity map is 0 there)."""
    if warps is None:
        return x
    b, n, c, h, w = x.shape
    ys = (torch.arange(h, device=x.device, dtype=x.dtype) * 2 + 1) / h - 1
    xs = (torch.arange(w, device=x.device, dtype=x.dtype) * 2 + 1) / w - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    base = torch.stack([gx, gy, torch.ones_like(gx)], -1).reshape(1, -1, 3)  # [1, hw, 3]
    p = base @ warps.reshape(b * n, 3, 3).to(x.dtype).transpose(1, 2)  # [BN, hw, 3]
    grid = (p[..., :2] / p[..., 2:].clamp_min(1e-6)).reshape(b * n, h, w, 2)
    out = F.grid_sample(x.reshape(b * n, c, h, w), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.reshape(b, n, c, h, w)


# ----------------------------------------------------------------------------------------- net

class InpaintingNet(nn.Module):
    """Keyword-only; ``config`` rebuilds it: ``InpaintingNet(**net.config)``."""

    def __init__(self, *, width: int = 24, key_dim: int = 32, value_dim: int = 64, affinity_budget: int = 1 << 24):
        super().__init__()
        self.config = {"width": width, "key_dim": key_dim, "value_dim": value_dim, "affinity_budget": affinity_budget}
        w, dv = width, value_dim
        self.key_dim, self.value_dim, self.affinity_budget = key_dim, value_dim, int(affinity_budget)
        self.key_encoder = _Encoder(3, w)
        self.key_proj = nn.Conv2d(2 * w, key_dim, 1)
        self.value_encoder = _Encoder(6, w)  # rgb, mask, positive and negative scribbles
        self.value_fuse = nn.Sequential(nn.Conv2d(4 * w, dv, 1), _Res(dv))
        # mask decoder
        self.m4 = nn.Sequential(_conv(dv + 2 * w + 3, 2 * w), _Res(2 * w))
        self.m2 = _conv(2 * w + w + 3, w)
        self.m1 = nn.Sequential(_conv(w + 3, w), nn.Conv2d(w, 1, 1))
        # inpainting: per-memory-frame blend scores, then a refining U-Net fed by the readout
        self.score = nn.Sequential(_conv(3 * key_dim, w), nn.Conv2d(w, 1, 3, 1, 1))
        self.r1 = _conv(8, w)
        self.r2 = nn.Sequential(_conv(w, 2 * w, 2))
        self.r2b = nn.Sequential(_conv(2 * w + dv, 2 * w), _Res(2 * w))
        self.r_out = nn.Sequential(_conv(3 * w, w), nn.Conv2d(w, 3, 3, 1, 1))
        nn.init.zeros_(self.r_out[-1].weight)  # start as the blend of memory frames, learn corrections
        nn.init.zeros_(self.r_out[-1].bias)

    # ---------------------------------------------------------------------------------- encoders
    def encode_key(self, image: Tensor) -> tuple[Tensor, dict]:
        """image [B, 3, H, W] → key [B, key_dim, H/4, W/4] and the features the decoders reuse."""
        f2, f4 = self.key_encoder(image - 0.5)
        return self.key_proj(f4), {"f2": f2, "f4": f4}

    def encode_value(self, image: Tensor, mask: Tensor, feats: dict, scribbles: Tensor | None = None) -> Tensor:
        """Value [B, value_dim, H/4, W/4] of a frame with its mask; ``scribbles`` [B, 2, H, W]
        (positive, negative) on user frames, zeros elsewhere."""
        if scribbles is None:
            scribbles = mask.new_zeros(mask.shape[0], 2, *mask.shape[-2:])
        _, v4 = self.value_encoder(torch.cat([image - 0.5, mask, scribbles], 1))
        return self.value_fuse(torch.cat([v4, feats["f4"]], 1))

    # ------------------------------------------------------------------------------------ memory
    def read(self, key: Tensor, mem_keys: Tensor, mem_values: Tensor) -> tuple[Tensor, Tensor]:
        """Attention of the query ``key`` [B, Ck, h, w] over every location of ``mem_keys`` [B, N, Ck, h', w'].

        Similarity is XMem's negative squared distance (up to the query's own norm, which softmax
        ignores): ``2 q.k - |k|^2``, scaled by 1/sqrt(Ck). Returns the readout [B, Cv, h, w] and each
        memory frame's usage [B, N] (the attention it received, summed over queries): what a bounded
        memory keeps. Queries go in chunks so one affinity block holds at most ``affinity_budget``
        numbers per batch item (64 MB in float32 by default), whatever the memory's size.
        """
        b, ck, h, w = key.shape
        n = mem_keys.shape[1]
        k = mem_keys.transpose(1, 2).reshape(b, ck, -1)  # [B, Ck, M]
        v = mem_values.transpose(1, 2).reshape(b, mem_values.shape[2], -1)  # [B, Cv, M]
        k_sq = (k * k).sum(1, keepdim=True)  # [B, 1, M]
        q = key.reshape(b, ck, -1)
        outs, usage = [], key.new_zeros(b, k.shape[-1])
        chunk = max(1, self.affinity_budget // k.shape[-1])
        for s in range(0, q.shape[-1], chunk):
            qs = q[..., s:s + chunk]
            sim = (2 * qs.transpose(1, 2) @ k - k_sq) / math.sqrt(ck)  # [B, hw_chunk, M]
            att = sim.softmax(-1)
            outs.append(v @ att.transpose(1, 2))  # [B, Cv, hw_chunk]
            usage = usage + att.detach().sum(1)
        readout = torch.cat(outs, -1).reshape(b, -1, h, w)
        return readout, usage.reshape(b, n, -1).sum(-1)

    # ---------------------------------------------------------------------------------- decoders
    def segment(self, feats: dict, readout: Tensor, hints: Tensor) -> Tensor:
        """Mask logits [B, 1, H, W]; ``hints`` [B, 3, H, W]: positive, negative scribbles, previous mask."""
        h2 = F.adaptive_avg_pool2d(hints, feats["f2"].shape[-2:])
        h4 = F.adaptive_avg_pool2d(hints, feats["f4"].shape[-2:])
        x = self.m4(torch.cat([readout, feats["f4"], h4], 1))
        x = self.m2(torch.cat([_up(x, feats["f2"]), feats["f2"], h2], 1))
        return self.m1(torch.cat([_up(x, hints), hints], 1))

    def restore(self, image: Tensor, hole: Tensor, key: Tensor, readout: Tensor, mem_images: Tensor,
                mem_masks: Tensor, mem_keys: Tensor, warps: Tensor | None = None) -> dict:
        """The frame with ``hole`` [B, 1, H, W] filled: memory frames ([B, N, 3, H, W], their object
        masks [B, N, 1, H, W]) are warped onto this one, blended per pixel where they saw background
        (softmax over frames of a learned score + log validity), then refined by a U-Net that also sees
        the readout. Returns ``restored`` (outside the hole: the input), ``fill`` and ``coverage``."""
        images, valid = warp(mem_images, warps), warp(1.0 - mem_masks, warps)
        keys = warp(mem_keys, warps)
        n = images.shape[1]
        q = key.unsqueeze(1).expand(-1, n, -1, -1, -1)
        pair = torch.cat([q, keys, (q - keys).abs()], 2).flatten(0, 1)
        score = _up(self.score(pair), image).reshape(image.shape[0], n, 1, *image.shape[-2:])
        weight = (score + torch.log(valid.clamp_min(1e-4))).softmax(1)
        fill = (weight * images).sum(1)
        coverage = (weight * valid).sum(1).clamp(0, 1)  # ~1 where some memory frame saw the background
        known = image * (1 - hole)
        e1 = self.r1(torch.cat([known, hole, fill, coverage], 1))
        e2 = self.r2(e1)
        e2 = self.r2b(torch.cat([e2, _up(readout, e2)], 1))
        base = coverage * fill + (1 - coverage) * 0.5
        out = (base + self.r_out(torch.cat([_up(e2, e1), e1], 1))).clamp(0, 1)
        return {"restored": hole * out + known, "fill": fill, "coverage": coverage}

    # ----------------------------------------------------------------------------------- forward
    def forward(self, image: Tensor, mem_keys: Tensor, mem_values: Tensor, *, hints: Tensor | None = None,
                hole: Tensor | None = None, mem_images: Tensor | None = None, mem_masks: Tensor | None = None,
                warps: Tensor | None = None) -> dict:
        """One query frame against a memory: ``logits`` always; ``restored`` (+ ``fill``, ``coverage``)
        when ``hole`` and the memory frames' images and masks are given. Also ``key``, ``feats`` (to
        encode this frame's value next) and ``usage``."""
        key, feats = self.encode_key(image)
        readout, usage = self.read(key, mem_keys, mem_values)
        if hints is None:
            hints = image.new_zeros(image.shape[0], 3, *image.shape[-2:])
        out = {"logits": self.segment(feats, readout, hints), "key": key, "feats": feats, "usage": usage}
        if hole is not None and mem_images is not None and mem_masks is not None:
            out.update(self.restore(image, hole, key, readout, mem_images, mem_masks, mem_keys, warps))
        return out
