"""Saving, loading and running a trained STDAM: "video path in, quality score out".

Used by the evaluate and register stages and by the MLflow pyfunc server, so it accepts any readable
video (``read_clip`` samples and resizes it to the model's frame settings).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from models.common.io import load_payload, save_torch
from models.vqa.stdam import STDAM, to_model_inputs
from models.vqa.video import FrameCache, frame_settings, read_clip


class ModelFileError(ValueError):
    """A model file that is missing or not in the ``save_model`` format."""


class QualityModel(nn.Module):
    """STDAM whose outputs are mapped back from the normalised training scale to quality."""

    def __init__(self, stdam: STDAM, *, target_mean: float, target_std: float):
        super().__init__()
        self.stdam = stdam
        self.register_buffer("target_mean", torch.tensor(float(target_mean)))
        self.register_buffer("target_std", torch.tensor(float(target_std)))

    def forward(self, frames: Tensor, motion: Tensor) -> Tensor:
        return self.stdam(frames, motion).float() * self.target_std + self.target_mean


def _target_stats(target_stats) -> tuple[float, float]:
    if isinstance(target_stats, dict):
        return float(target_stats["mean"]), float(target_stats["std"])
    mean, std = target_stats
    return float(mean), float(std)


def save_model(path: str | os.PathLike, model: nn.Module, frames_cfg: dict, target_stats) -> Path:
    """Write ``{"model_kwargs", "frames", "target_stats", "state_dict"}`` atomically.

    ``model``: an STDAM (outputs on the normalised scale given by ``target_stats`` = {mean, std} or
    (mean, std)) or a QualityModel (its own stats are used and ``target_stats`` is ignored).
    """
    if isinstance(model, QualityModel):
        stdam, mean, std = model.stdam, float(model.target_mean), float(model.target_std)
    else:
        (mean, std), stdam = _target_stats(target_stats), model
    payload = {
        # pretrained=None: the backbone weights are in state_dict; the original file need not exist.
        "model_kwargs": dict(stdam.config, pretrained=None),
        "frames": frame_settings(frames_cfg),
        "target_stats": {"mean": mean, "std": std},
        "state_dict": {k: v.detach().cpu() for k, v in stdam.state_dict().items()},
    }
    return save_torch(path, payload)


def load_model(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> tuple[QualityModel, dict]:
    """(QualityModel in eval mode, frames_cfg) from a ``save_model`` file."""
    p = Path(path)
    payload = load_payload(p, ModelFileError, map_location=map_location)
    missing = {"model_kwargs", "frames", "target_stats", "state_dict"} - set(payload if isinstance(payload, dict) else ())
    if missing:
        raise ModelFileError(f"{p}: not a mokuflow VQA model (missing {sorted(missing)})")
    stdam = STDAM(**payload["model_kwargs"])
    try:
        stdam.load_state_dict(payload["state_dict"])
    except RuntimeError as e:
        raise ModelFileError(f"{p}: weights do not match model_kwargs ({e})") from None
    stats = payload["target_stats"]
    model = QualityModel(stdam, target_mean=stats["mean"], target_std=stats["std"])
    return model.eval(), frame_settings(payload["frames"])


def _default_device(model: nn.Module, device) -> torch.device:
    if device is not None:
        return torch.device(device)
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


@torch.no_grad()
def predict_clips(model: nn.Module, clips: Sequence[tuple[np.ndarray, np.ndarray]], *, batch_size: int = 8,
                  device=None) -> np.ndarray:
    """One score per (frames, motion) clip as ``read_clip`` / ``sample_clip`` return them (float64 [N])."""
    dev = _default_device(model, device)
    model = model.to(dev).eval()
    bs = max(1, int(batch_size))  # one value for stepping and slicing: batch_size <= 0 gave empty slices
    out: list[np.ndarray] = []
    for start in range(0, len(clips), bs):
        batch = clips[start:start + bs]
        frames, motion = to_model_inputs(torch.from_numpy(np.stack([c[0] for c in batch])).to(dev),
                                         torch.from_numpy(np.stack([c[1] for c in batch])).to(dev))
        out.append(model(frames, motion).float().cpu().numpy().astype(np.float64))
    return np.concatenate(out) if out else np.zeros(0)


def predict_paths(model: nn.Module, frames_cfg: dict, paths: Sequence[str | os.PathLike], *,
                  batch_size: int = 8, cache: FrameCache | None = None, device=None) -> np.ndarray:
    """One score per path (float64 [N]). ``cache``: a FrameCache with the same frame settings, to
    skip decoding videos seen before. Unreadable videos raise ``VideoReadError`` naming the file."""
    cfg = frame_settings(frames_cfg)
    if cache is not None and any(getattr(cache, k) != v for k, v in cfg.items()):
        raise ValueError(f"{cache.cache_dir}: frame cache settings differ from the model's {cfg}")
    out: list[np.ndarray] = []
    paths = list(paths)
    bs = max(1, int(batch_size))
    for start in range(0, len(paths), bs):  # decode a batch at a time: memory stays one batch
        clips = [cache.get(p) if cache is not None else read_clip(p, **cfg) for p in paths[start:start + bs]]
        out.append(predict_clips(model, clips, batch_size=bs, device=device))
    return np.concatenate(out) if out else np.zeros(0)
