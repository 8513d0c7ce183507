"""STDAM: spatial-temporal distortion-aware model for no-reference video quality.

The input is a clip as ``models.vqa.video`` samples it: K runs of consecutive frames, one spatial
frame per run and the motion of every step of every run (K x L steps). Per spatial frame: a small
CNN backbone (trained from scratch, or from an optional local checkpoint) gives a feature map whose
HxW cells are graph nodes; graph convolution over a learned feature-similarity adjacency plus the
spatial grid spreads distortion evidence between regions; multi-head attention pooling over nodes
gives the frame's spatial distortion feature. A motion branch encodes each step's motion (frame
difference or optical flow). Each step's feature is its motion feature beside its run's spatial
feature; the K x L steps go through a bidirectional LSTM and an attention pooling over time (at the
video's frame rate, so a duplicate every other frame or a freeze is a pattern it can see), then a
regression head gives one score per video.

The three ablations of the temporal and spatial halves are switches of the same class:
``motion_branch=False`` (no motion: the LSTM reads the K spatial features), ``spatial="pool"``
(plain globally pooled CNN features instead of graph convolution + attention pooling) and
``temporal="mean"`` (mean pooling of the step features instead of the BiLSTM + attention).

Pure PyTorch: no params.yaml, explicit keyword-only arguments.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PretrainedWeightsError(ValueError):
    """The ``pretrained`` backbone checkpoint is missing or does not fit the backbone."""


def _norm(channels: int) -> nn.GroupNorm:
    # GroupNorm, not BatchNorm: identical behaviour in train and eval, and independent of the batch
    # size (small per-GPU batches of clips are the norm here). gcd: the group count must divide the
    # channel count (min(8, c) fails for e.g. 12 channels).
    return nn.GroupNorm(num_groups=math.gcd(8, channels), num_channels=channels)


def _conv_block(c_in: int, c_out: int, *, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), _norm(c_out), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), _norm(c_out), nn.ReLU(inplace=True),
    )


class FrameBackbone(nn.Module):
    """Small CNN, one stride-2 block per entry of ``channels``: [N,3,H,W] -> [N,C_last,H/2^k,W/2^k]."""

    def __init__(self, *, channels: Sequence[int]):
        super().__init__()
        if not channels:
            raise ValueError("backbone_channels: need at least one stage")
        c_in, blocks = 3, []
        for c in channels:
            blocks.append(_conv_block(c_in, int(c), stride=2))
            c_in = int(c)
        self.blocks = nn.Sequential(*blocks)
        self.out_channels = c_in
        # Frames arrive in [0, 1]; centring them helps training from scratch.
        self.register_buffer("mean", torch.tensor([0.45, 0.45, 0.45]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.225, 0.225, 0.225]).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks((x - self.mean) / self.std)

    def load_pretrained(self, path: str | os.PathLike) -> None:
        """Load a local checkpoint: a backbone state_dict, optionally under "state_dict" and/or with a
        "backbone." prefix (as saved from a whole STDAM)."""
        if not os.path.isfile(path):
            raise PretrainedWeightsError(f"{path}: pretrained backbone checkpoint not found")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
            raise PretrainedWeightsError(f"{path}: not a readable torch checkpoint ({e})") from None
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise PretrainedWeightsError(f"{path}: expected a state_dict, got {type(state).__name__}")
        if any(k.startswith("backbone.") for k in state):
            state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        bad_shape = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
        if missing or unexpected or bad_shape:
            raise PretrainedWeightsError(
                f"{path}: checkpoint does not match backbone_channels "
                f"(missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shape {bad_shape[:5]})")
        self.load_state_dict(state)


def _channel_first_float(x: Tensor) -> Tensor:
    """[B,T,H,W,C] -> contiguous float32 [B,T,C,H,W] in one copy. (``.float()`` of the permuted view
    keeps its strides, so a ``.contiguous()`` after it copied a second time; ``.to`` with an
    unchanged dtype ignores ``memory_format``, hence the two cases.)"""
    x = x.permute(0, 1, 4, 2, 3)
    if x.dtype == torch.float32:
        return x.contiguous()
    return x.to(torch.float32, memory_format=torch.contiguous_format)


def to_model_inputs(frames: Tensor, motion: Tensor) -> tuple[Tensor, Tensor]:
    """Batched uint8 [B,T,H,W,3] frames + float [B,T,H,W,C] motion -> STDAM's channel-first inputs.

    Clips travel as uint8 (4x less host->device traffic); conversion happens on the device.
    """
    f = _channel_first_float(frames)
    # In place only on our own copy: float32 frames that are already channel-first are not copied.
    f = f.div_(255.0) if f.data_ptr() != frames.data_ptr() else f / 255.0
    return f, _channel_first_float(motion)


def grid_adjacency(h: int, w: int, *, device=None) -> Tensor:
    """Row-normalised 4-neighbour grid adjacency with self loops, [h*w, h*w]."""
    idx = torch.arange(h * w, device=device)
    r, c = idx // w, idx % w
    dr = (r[:, None] - r[None, :]).abs()
    dc = (c[:, None] - c[None, :]).abs()
    a = ((dr + dc) <= 1).float()
    return a / a.sum(dim=1, keepdim=True)


class GraphConv(nn.Module):
    """One graph convolution over feature-map nodes.

    Adjacency = mix of softmax(QK^T/sqrt(d)) (regions that look alike, e.g. all blocky areas) and the
    spatial grid (neighbouring regions); both are row-stochastic, so is their convex mix.
    """

    def __init__(self, *, dim: int, dropout: float):
        super().__init__()
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.lin = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.mix_logit = nn.Parameter(torch.zeros(()))  # sigmoid(0) = half similarity, half grid
        self.drop = nn.Dropout(dropout)

    def adjacency(self, x: Tensor, grid: Tensor) -> Tensor:
        """x [N, nodes, D], grid [nodes, nodes] -> row-stochastic [N, nodes, nodes]."""
        sim = self.q(x) @ self.k(x).transpose(1, 2) / math.sqrt(x.shape[-1])
        alpha = torch.sigmoid(self.mix_logit)
        return alpha * sim.softmax(dim=-1) + (1 - alpha) * grid.to(sim.dtype)

    def forward(self, x: Tensor, grid: Tensor) -> Tensor:
        a = self.adjacency(x, grid)
        return x + self.drop(F.relu(self.lin(self.norm(a @ x))))


class AttentionPool(nn.Module):
    """Multi-head attention pooling: a learned query attends over the set, [N, S, D] -> [N, D]."""

    def __init__(self, *, dim: int, heads: int, dropout: float):
        super().__init__()
        self.query = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.attn(self.query.expand(x.shape[0], -1, -1), x, x, need_weights=False)
        return out.squeeze(1)


class MotionBranch(nn.Module):
    """Small CNN on the motion input; mean + max pooling keeps both overall and local motion/jitter."""

    def __init__(self, *, in_channels: int, channels: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, stride=2, padding=1, bias=False), _norm(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.ReLU(inplace=True),
        )
        self.out_dim = 2 * channels

    def forward(self, m: Tensor) -> Tensor:
        y = self.net(m)
        return torch.cat([y.mean(dim=(2, 3)), y.amax(dim=(2, 3))], dim=1)


SPATIAL = ("graph", "pool")
TEMPORAL = ("lstm", "mean")


class STDAM(nn.Module):
    """forward(frames [B,K,3,H,W] float in [0,1], motion [B,K*L,C,H,W]) -> [B] scores."""

    def __init__(
        self,
        *,
        backbone_channels: Sequence[int] = (16, 32, 64),
        gcn_layers: int = 2,
        gcn_dim: int = 64,
        attention_heads: int = 4,
        motion_in_channels: int = 1,
        motion_channels: int = 16,
        lstm_hidden: int = 64,
        dropout: float = 0.1,
        motion_branch: bool = True,
        spatial: str = "graph",
        temporal: str = "lstm",
        pretrained: str | os.PathLike | None = None,
    ):
        super().__init__()
        if gcn_dim % attention_heads:
            raise ValueError(f"gcn_dim ({gcn_dim}) must be divisible by attention_heads ({attention_heads})")
        if spatial not in SPATIAL or temporal not in TEMPORAL:
            raise ValueError(f"spatial must be one of {SPATIAL} and temporal one of {TEMPORAL}, "
                             f"got {spatial!r}, {temporal!r}")
        # Kept so the model can be saved and rebuilt (models.vqa.inference); weights carry the rest.
        self.config = dict(
            backbone_channels=[int(c) for c in backbone_channels], gcn_layers=int(gcn_layers),
            gcn_dim=int(gcn_dim), attention_heads=int(attention_heads),
            motion_in_channels=int(motion_in_channels), motion_channels=int(motion_channels),
            lstm_hidden=int(lstm_hidden), dropout=float(dropout),
            motion_branch=bool(motion_branch), spatial=str(spatial), temporal=str(temporal),
        )
        self.backbone = FrameBackbone(channels=backbone_channels)
        if pretrained is not None:
            self.backbone.load_pretrained(pretrained)
        self.node_proj = nn.Linear(self.backbone.out_channels, gcn_dim)
        if spatial == "graph":
            self.gcn = nn.ModuleList(GraphConv(dim=gcn_dim, dropout=dropout) for _ in range(gcn_layers))
            self.node_pool = AttentionPool(dim=gcn_dim, heads=attention_heads, dropout=dropout)
        self.motion = MotionBranch(in_channels=motion_in_channels, channels=motion_channels) if motion_branch else None
        frame_dim = gcn_dim + (self.motion.out_dim if motion_branch else 0)
        self.frame_proj = nn.Sequential(nn.LayerNorm(frame_dim), nn.Linear(frame_dim, lstm_hidden), nn.ReLU())
        pooled_dim = lstm_hidden
        if temporal == "lstm":
            self.lstm = nn.LSTM(lstm_hidden, lstm_hidden, batch_first=True, bidirectional=True)
            self.time_score = nn.Linear(2 * lstm_hidden, 1)
            pooled_dim = 2 * lstm_hidden
        self.head = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(pooled_dim, lstm_hidden), nn.ReLU(), nn.Linear(lstm_hidden, 1))
        self._grid_cache: dict[tuple, Tensor] = {}

    # -- spatial ------------------------------------------------------------------------------
    def nodes(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """frames [N,3,H,W] -> (nodes [N, h*w, D], grid adjacency [h*w, h*w])."""
        fmap = self.backbone(frames)
        n, c, h, w = fmap.shape
        x = self.node_proj(fmap.flatten(2).transpose(1, 2))
        return x, self._grid(h, w, x.device)

    def _grid(self, h: int, w: int, device) -> Tensor:
        key = (h, w, str(device))
        if key not in self._grid_cache:
            self._grid_cache[key] = grid_adjacency(h, w, device=device)
        return self._grid_cache[key]

    def spatial_features(self, frames: Tensor) -> Tensor:
        """frames [N,3,H,W] -> [N, gcn_dim]."""
        if self.config["spatial"] == "pool":  # the ablation: globally pooled CNN features
            return self.node_proj(self.backbone(frames).mean(dim=(2, 3)))
        x, grid = self.nodes(frames)
        for layer in self.gcn:
            x = layer(x, grid)
        return self.node_pool(x)

    # -- full model ----------------------------------------------------------------------------
    def steps(self, frames: Tensor, motion: Tensor) -> Tensor:
        """Per-step features [B, S, lstm_hidden]: each motion step beside its run's spatial feature
        (S = K*L), or the K spatial features alone without the motion branch."""
        if (frames.ndim != 5 or motion.ndim != 5 or frames.shape[0] != motion.shape[0]
                or motion.shape[1] % frames.shape[1]):
            raise ValueError(f"expected frames [B,K,3,H,W] and motion [B,K*L,C,H,W], got "
                             f"{tuple(frames.shape)} and {tuple(motion.shape)}")
        b, k = frames.shape[:2]
        spatial = self.spatial_features(frames.flatten(0, 1)).view(b, k, -1)
        if self.motion is None:
            return self.frame_proj(spatial)
        run = motion.shape[1] // k
        moving = self.motion(motion.flatten(0, 1).to(spatial.dtype)).view(b, k, run, -1)
        both = torch.cat([spatial[:, :, None].expand(-1, -1, run, -1), moving], dim=-1)
        return self.frame_proj(both.flatten(1, 2))

    def forward(self, frames: Tensor, motion: Tensor) -> Tensor:
        per_step = self.steps(frames, motion)
        if self.config["temporal"] == "mean":  # the ablation: no recurrence, no attention over time
            return self.head(per_step.mean(dim=1)).squeeze(-1)
        # LSTM in fp32 even under autocast: CUDA autocast casts cuDNN RNNs to fp16 (not bf16), and
        # bf16-mixed training has no GradScaler to keep fp16 gradients from underflowing.
        with torch.autocast(device_type=per_step.device.type, enabled=False):
            seq, _ = self.lstm(per_step.float())
        # Attention over time: a few badly distorted steps can dominate perceived quality.
        w = self.time_score(seq).softmax(dim=1)
        pooled = (w * seq).sum(dim=1)
        return self.head(pooled).squeeze(-1)
