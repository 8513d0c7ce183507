"""A small from-scratch CNN + FPN, sized to train in minutes on CPU at 128-192 px.

Stage i of the CNN has stride 2**(i+2) (4, 8, 16, 32 for four stages); the FPN reads the stages of
``fpn_levels`` (level L = stride 2**L) and returns one ``fpn_channels`` map per level, finest first.
Normalisation is ``norm``: "bn" (BatchNorm, the default of params.yaml since issue 13) or "gn"
(GroupNorm, the detector's constructor default, so models saved before keep loading as they were).
Batches are small (4 images of 160 px), but BatchNorm still sees 4 x 40 x 40 positions a channel at
stride 4, and on this budget it trains much faster: plain detector AP 0.23 -> 0.32 at the same
steps (benchmarks/README.md, "a credible detector").
"""
from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

NORMS = ("bn", "gn")


def conv_norm_relu(cin: int, cout: int, stride: int = 1, *, norm: str = "gn") -> nn.Sequential:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    layer = nn.BatchNorm2d(cout) if norm == "bn" else nn.GroupNorm(max(1, min(8, cout // 4)), cout)
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), layer, nn.ReLU(inplace=True))


class Backbone(nn.Module):
    """stem (stride 2) -> stages, each a strided conv + one plain conv; returns {level: feature}."""

    def __init__(self, *, channels: Sequence[int] = (16, 32, 64, 96), stem_channels: int = 16, norm: str = "gn"):
        super().__init__()
        self.stem = conv_norm_relu(3, stem_channels, stride=2, norm=norm)
        stages, cin = [], stem_channels
        for c in channels:
            stages.append(nn.Sequential(conv_norm_relu(cin, c, stride=2, norm=norm), conv_norm_relu(c, c, norm=norm)))
            cin = c
        self.stages = nn.ModuleList(stages)
        self.channels = tuple(int(c) for c in channels)
        self.levels = tuple(range(2, 2 + len(channels)))  # stage i -> level i + 2 (stride 2**level)

    def forward(self, x: Tensor) -> dict[int, Tensor]:
        x = self.stem(x)
        out = {}
        for level, stage in zip(self.levels, self.stages):
            x = stage(x)
            out[level] = x
        return out


class FPN(nn.Module):
    """Top-down pathway with lateral 1x1 convs and 3x3 output convs (Lin et al. 2017)."""

    def __init__(self, *, in_channels: dict[int, int], out_channels: int = 64):
        super().__init__()
        self.levels = tuple(sorted(in_channels))
        self.lateral = nn.ModuleDict({str(l): nn.Conv2d(in_channels[l], out_channels, 1) for l in self.levels})
        self.output = nn.ModuleDict({str(l): nn.Conv2d(out_channels, out_channels, 3, padding=1)
                                     for l in self.levels})

    def forward(self, feats: dict[int, Tensor]) -> list[Tensor]:
        out, top = [], None
        for level in reversed(self.levels):  # coarse to fine
            lat = self.lateral[str(level)](feats[level])
            if top is not None:
                lat = lat + F.interpolate(top, size=lat.shape[-2:], mode="nearest")
            top = lat
            out.append(self.output[str(level)](lat))
        return out[::-1]


class BackboneFPN(nn.Module):
    """CNN + FPN: image [B,3,H,W] -> list of [B, fpn_channels, H/2**l, W/2**l] for l in fpn_levels."""

    def __init__(self, *, channels: Sequence[int] = (16, 32, 64, 96), fpn_channels: int = 64,
                 fpn_levels: Sequence[int] = (3, 4, 5), norm: str = "gn"):
        super().__init__()
        self.body = Backbone(channels=channels, norm=norm)
        missing = set(fpn_levels) - set(self.body.levels)
        if missing:
            raise ValueError(f"fpn_levels {sorted(missing)} not produced by a {len(channels)}-stage backbone "
                             f"(levels {self.body.levels})")
        self.fpn_levels = tuple(sorted(int(l) for l in fpn_levels))
        chans = dict(zip(self.body.levels, self.body.channels))
        self.fpn = FPN(in_channels={l: chans[l] for l in self.fpn_levels}, out_channels=fpn_channels)
        self.strides = tuple(2 ** l for l in self.fpn_levels)
        self.out_channels = int(fpn_channels)

    def forward(self, images: Tensor) -> list[Tensor]:
        return self.fpn(self.body(images))
