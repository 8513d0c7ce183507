"""The pair-relationship network: per-modality encoders, a fusion, fine (5-way) and coarse (3-way) heads.

Inputs are the feature dict of :mod:`models.relationship.features` (batched, as tensors): each
encoder turns its modality into one vector per time step, ``[B, T, dim]``, with a mask saying where
the modality is present. ``fusion`` picks how they meet:

- ``"sync"`` (the paper's synchronous modal-temporal attention): per unit, at every time step the
  modalities present attend to each other (with a step token that is always there), then the step
  tokens attend over time. Cues are bound while they co-occur, before time is summarised;
- ``"concat"``: the step vectors concatenated (zeros where missing) and projected, then the same
  temporal attention: co-occurrence is visible, but without attention across modalities;
- ``"late"``: one temporal encoder and head per modality; class probabilities averaged over the
  modalities present (late fusion);

``modalities`` (any subset of visual / audio / text) gives the single-modality variants. Training
mode drops whole modalities per clip (``modality_dropout``; one present modality always kept), so a
clip without audio or subtitles at test time is a case the network has seen. ``forward(batch,
modalities=...)`` also masks modalities at inference ("predict from visual alone").
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

MODALITIES = ("visual", "audio", "text")
FUSIONS = ("sync", "concat", "late")
MASK_KEYS = {"visual": "visual_mask", "audio": "audio_mask", "text": "text_mask"}
COARSE_OF_FINE = (0, 0, 1, 2, 2)  # hostile, tense -> negative; neutral; mild, intimate -> positive


def _cnn(channels: int, dim: int) -> nn.Module:
    """A small image encoder for crops of a few dozen pixels."""
    return nn.Sequential(
        nn.Conv2d(3, channels, 3, padding=1), nn.GELU(), nn.MaxPool2d(2),
        nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.GELU(), nn.MaxPool2d(2),
        nn.Conv2d(2 * channels, 2 * channels, 3, padding=1), nn.GELU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * channels, dim))


class VisualEncoder(nn.Module):
    """Both characters' face and body crops (shared CNNs) + relative motion -> [B, T, dim].
    The pair is unordered: the two characters enter as their sum and absolute difference."""

    def __init__(self, *, dim: int, channels: int, motion_dim: int):
        super().__init__()
        self.face, self.body = _cnn(channels, dim), _cnn(channels, dim)
        self.motion = nn.Sequential(nn.Linear(motion_dim, dim), nn.GELU())
        self.out = nn.Sequential(nn.Linear(3 * dim, dim), nn.GELU(), nn.LayerNorm(dim))

    def forward(self, faces: Tensor, bodies: Tensor, motion: Tensor) -> Tensor:
        B, T = faces.shape[:2]

        def encode(cnn, x):
            x = x.reshape(B * T * 2, *x.shape[3:]).float() / 255.0 - 0.5
            return cnn(x).reshape(B, T, 2, -1)

        per = encode(self.face, faces) + encode(self.body, bodies)
        pair = torch.cat([per.sum(2), (per[:, :, 0] - per[:, :, 1]).abs()], dim=-1)
        return self.out(torch.cat([pair, self.motion(motion.float())], dim=-1))


class AudioEncoder(nn.Module):
    """Log-mel sub-steps of each time step (energy contour and spectrum: prosody, music) -> [B, T, dim],
    each step told the clip's summary: the mean and spread of every mel band over the sound track.

    The summary is there because the music's cues (loudness, the regularity of the beat) are spreads
    over time, which attention, an average, does not compute: a linear probe on these statistics
    reads the relationship far better than per-step features alone (benchmarks/README.md)."""

    def __init__(self, *, dim: int, n_mels: int, mel_steps: int):
        super().__init__()
        # a fixed affine, not a LayerNorm: loudness is a cue and must survive normalisation
        self.net = nn.Sequential(nn.Linear(n_mels * mel_steps, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.summary = nn.Sequential(nn.BatchNorm1d(2 * n_mels, affine=False), nn.Linear(2 * n_mels, 2 * dim), nn.GELU(),
                                     nn.Linear(2 * dim, dim))
        self.norm = nn.LayerNorm(dim)
        self.n_mels = n_mels

    def forward(self, mel: Tensor, mask: Tensor | None = None) -> Tensor:
        B, T = mel.shape[:2]
        x = (mel.float().reshape(B, T, -1) + 7.0) / 5.0
        sub = x.reshape(B, T, -1, self.n_mels)                                   # [B, T, M, n_mels]
        w = (torch.ones(B, T, device=mel.device) if mask is None else mask.float())[:, :, None, None]
        w = w.expand_as(sub[..., :1])
        n = w.sum((1, 2)).clamp(min=1.0)                                           # sub-steps with sound
        mean = (sub * w).sum((1, 2)) / n
        std = (((sub - mean[:, None, None]) ** 2 * w).sum((1, 2)) / n).clamp(min=1e-6).sqrt()
        return self.norm(self.net(x) + self.summary(torch.cat([mean, std], -1))[:, None])


class TextEncoder(nn.Module):
    """The subtitle words of each step through a GRU; its state after the last word -> [B, T, dim].
    Order matters: "not" before a word, and the clause after "but", change the meaning."""

    def __init__(self, *, dim: int, vocab_size: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.gru = nn.GRU(dim, dim, batch_first=True)
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens: Tensor) -> Tensor:
        B, T, L = tokens.shape
        flat = tokens.reshape(B * T, L).long()
        states, _ = self.gru(self.embed(flat))
        last = (flat != 0).sum(1).clamp_min(1) - 1  # padding is at the end
        out = states[torch.arange(B * T, device=tokens.device), last]
        return self.norm(out.reshape(B, T, -1))


def _layer(dim: int, heads: int, dropout: float) -> nn.TransformerEncoderLayer:
    return nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=dropout,
                                      batch_first=True, norm_first=True)


class SyncUnit(nn.Module):
    """Synchronous modal-temporal attention: modalities attend to each other at each step, then the
    steps attend over time."""

    def __init__(self, *, dim: int, heads: int, dropout: float):
        super().__init__()
        self.modal, self.temporal = _layer(dim, heads, dropout), _layer(dim, heads, dropout)

    def forward(self, tokens: Tensor, present: Tensor, steps: Tensor) -> Tensor:
        """``tokens`` [B, T, 1 + M, dim] (the step token first), ``present`` [B, T, 1 + M] bool,
        ``steps`` [B, T] bool (steps with any modality). Returns the updated tokens."""
        B, T, K, D = tokens.shape
        x = self.modal(tokens.reshape(B * T, K, D), src_key_padding_mask=~present.reshape(B * T, K))
        x = x.reshape(B, T, K, D)
        # the step's fused vector: the mean of its tokens after they attended to each other (a direct
        # path from every modality, which a lone step token's attention would make slow to learn)
        w = present.float()[..., None]
        fused = (x * w).sum(2) / w.sum(2)
        step = self.temporal(fused, src_key_padding_mask=~steps)
        return torch.cat([step[:, :, None], x[:, :, 1:]], dim=2)


class RelationshipNet(nn.Module):
    """See the module docstring. ``config`` rebuilds it: ``RelationshipNet(**net.config)``."""

    def __init__(self, *, vocab_size: int, fusion: str = "sync", modalities: Sequence[str] = MODALITIES,
                 dim: int = 32, heads: int = 2, layers: int = 1, n_steps: int = 16, channels: int = 8,
                 motion_dim: int = 4, n_mels: int = 32, mel_steps: int = 4, dropout: float = 0.1,
                 modality_dropout: float = 0.25, n_fine: int = 5, n_coarse: int = 3):
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        if isinstance(modalities, str) or not modalities or set(modalities) - set(MODALITIES):
            raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}, got {modalities!r}")
        modalities = tuple(m for m in MODALITIES if m in set(modalities))  # a fixed order: config is canonical
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be a multiple of heads ({heads})")
        self.config = {"vocab_size": vocab_size, "fusion": fusion, "modalities": list(modalities), "dim": dim,
                       "heads": heads, "layers": layers, "n_steps": n_steps, "channels": channels,
                       "motion_dim": motion_dim, "n_mels": n_mels, "mel_steps": mel_steps, "dropout": dropout,
                       "modality_dropout": modality_dropout, "n_fine": n_fine, "n_coarse": n_coarse}
        self.fusion, self.modalities, self.modality_dropout = fusion, modalities, float(modality_dropout)
        encoders = {"visual": lambda: VisualEncoder(dim=dim, channels=channels, motion_dim=motion_dim),
                    "audio": lambda: AudioEncoder(dim=dim, n_mels=n_mels, mel_steps=mel_steps),
                    "text": lambda: TextEncoder(dim=dim, vocab_size=vocab_size)}
        self.encoders = nn.ModuleDict({m: encoders[m]() for m in modalities})
        self.modality_embed = nn.Parameter(torch.randn(len(modalities), dim) * 0.02)
        self.time_embed = nn.Parameter(torch.randn(n_steps, dim) * 0.02)
        self._build_fusion(dim=dim, heads=heads, layers=layers, dropout=dropout, n_fine=n_fine, n_coarse=n_coarse)

    def _build_fusion(self, *, dim, heads, layers, dropout, n_fine, n_coarse) -> None:
        M = len(self.modalities)
        if self.fusion == "sync":
            self.step_token = nn.Parameter(torch.randn(dim) * 0.02)
            self.units = nn.ModuleList(SyncUnit(dim=dim, heads=heads, dropout=dropout) for _ in range(layers))
        elif self.fusion == "concat":
            self.project = nn.Sequential(nn.Linear(M * dim + M, dim), nn.GELU(), nn.LayerNorm(dim))
            self.temporal = nn.ModuleList(_layer(dim, heads, dropout) for _ in range(layers))
        if self.fusion == "late":  # one temporal encoder and pair of heads per modality
            self.temporal = nn.ModuleDict({m: nn.ModuleList(_layer(dim, heads, dropout) for _ in range(layers))
                                           for m in self.modalities})
            self.heads = nn.ModuleDict({m: nn.ModuleDict({"fine": nn.Linear(dim, n_fine),
                                                          "coarse": nn.Linear(dim, n_coarse)})
                                        for m in self.modalities})
        else:
            self.norm = nn.LayerNorm(dim)
            self.heads = nn.ModuleDict({"fine": nn.Linear(dim, n_fine), "coarse": nn.Linear(dim, n_coarse)})

    # -- inputs ------------------------------------------------------------------------------------
    def encode(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        out = {}
        for m, enc in self.encoders.items():
            if m == "visual":
                out[m] = enc(batch["faces"], batch["bodies"], batch["motion"])
            elif m == "audio":
                out[m] = enc(batch["mel"], batch["audio_mask"].bool())
            else:
                out[m] = enc(batch["tokens"])
        return out

    def masks(self, batch: dict[str, Tensor], modalities: Sequence[str] | None = None) -> Tensor:
        """[B, T, M] bool: modality present at the step (asked for, in the batch, not dropped)."""
        asked = set(self.modalities if modalities is None else modalities)
        ref = batch[MASK_KEYS[self.modalities[0]]]
        cols = [batch[MASK_KEYS[m]].bool() & (m in asked) for m in self.modalities]
        mask = torch.stack(cols, dim=-1) if cols else torch.zeros(*ref.shape, 0, dtype=torch.bool)
        if self.training and self.modality_dropout > 0:
            mask = self._drop_modalities(mask)
        return mask

    def _drop_modalities(self, mask: Tensor) -> Tensor:
        """Drop whole modalities per clip with probability ``modality_dropout``; keep one present."""
        present = mask.any(dim=1)                                             # [B, M]
        keep = present & (torch.rand(present.shape, device=mask.device) >= self.modality_dropout)
        lost = present.any(1) & ~keep.any(1)
        if lost.any():  # everything dropped: restore one present modality at random
            score = torch.rand(present.shape, device=mask.device) * present
            keep[lost] = nn.functional.one_hot(score[lost].argmax(1), present.shape[1]).bool()
        return mask & keep[:, None, :]

    # -- forward -----------------------------------------------------------------------------------
    def forward(self, batch: dict[str, Tensor], *, modalities: Sequence[str] | None = None) -> dict[str, Tensor]:
        """``{"fine": [B, n_fine], "coarse": [B, n_coarse]}`` logits (log-probabilities for ``late``)."""
        feats = self.encode(batch)
        mask = self.masks(batch, modalities)
        x = torch.stack([feats[m] for m in self.modalities], dim=2)          # [B, T, M, D]
        x = x + self.modality_embed + self.time_embed[None, :, None, :]
        if self.fusion == "late":
            return self._late(x, mask)
        steps = mask.any(-1)
        steps = steps | ~steps.any(1, keepdim=True)  # nothing present at all: attend over every step
        if self.fusion == "sync":
            pooled = self._sync(x, mask, steps)
        else:
            pooled = self._concat(x, mask, steps)
        z = self.norm(pooled)
        return {k: head(z) for k, head in self.heads.items()}

    def _sync(self, x: Tensor, mask: Tensor, steps: Tensor) -> Tensor:
        B, T, M, D = x.shape
        step = (self.step_token + self.time_embed)[None].expand(B, T, D)
        tokens = torch.cat([step[:, :, None], x], dim=2)
        present = torch.cat([torch.ones(B, T, 1, dtype=torch.bool, device=x.device), mask], dim=2)
        for unit in self.units:
            tokens = unit(tokens, present, steps)
        return _masked_mean(tokens[:, :, 0], steps)

    def _concat(self, x: Tensor, mask: Tensor, steps: Tensor) -> Tensor:
        B, T, M, D = x.shape
        h = self.project(torch.cat([(x * mask[..., None]).reshape(B, T, M * D), mask.float()], dim=-1))
        h = h + self.time_embed
        for layer in self.temporal:
            h = layer(h, src_key_padding_mask=~steps)
        return _masked_mean(h, steps)

    def _late(self, x: Tensor, mask: Tensor) -> dict[str, Tensor]:
        probs = {"fine": 0.0, "coarse": 0.0}
        present = mask.any(1).float()                                         # [B, M]
        weight = present / present.sum(1, keepdim=True).clamp_min(1)
        weight = torch.where(present.sum(1, keepdim=True) > 0, weight, torch.full_like(weight, 1 / x.shape[2]))
        for k, m in enumerate(self.modalities):
            steps = mask[:, :, k] | ~mask[:, :, k].any(1, keepdim=True)
            h = x[:, :, k]
            for layer in self.temporal[m]:
                h = layer(h, src_key_padding_mask=~steps)
            z = _masked_mean(h, steps)
            for name, head in self.heads[m].items():
                probs[name] = probs[name] + weight[:, k:k + 1] * head(z).softmax(-1)
        return {k: p.clamp_min(1e-8).log() for k, p in probs.items()}


def _masked_mean(h: Tensor, mask: Tensor) -> Tensor:
    w = mask.float()[..., None]
    return (h * w).sum(1) / w.sum(1).clamp_min(1.0)


def to_batch(features: dict, device: torch.device | str | None = None) -> dict[str, Tensor]:
    """numpy feature arrays (already batched) -> tensors on ``device``."""
    return {k: torch.as_tensor(v, device=device) for k, v in features.items()}
