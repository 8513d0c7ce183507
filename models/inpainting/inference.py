"""Saving and loading a trained InpaintingNet: one file holds the network's config, its weights and the
settings the session should run it with (``meta``: e.g. ``internal_size``, ``max_memory``).

The file is a plain dict read with ``torch.load(weights_only=True)``, so ``meta`` must hold only plain
values (str, int, float, bool, None, lists / dicts of them). Written atomically (a kill mid-save
leaves the previous file whole).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from models.common.io import load_payload, save_torch
from models.inpainting.network import InpaintingNet

FORMAT = "mokuflow-inpainting-v1"


class ModelFileError(ValueError):
    """A model file that is missing or not in the ``save_model`` format; the message names the file."""


def _plain(value, where: str = "meta"):
    """``value`` if it is JSON-like (what weights_only loading accepts), else ValueError naming the key."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    raise ValueError(f"{where}: only plain values can be saved with a model, got {type(value).__name__}")


def save_model(path: str | os.PathLike, net: InpaintingNet, meta: dict | None = None) -> Path:
    """Write ``{format, config, state_dict, meta}`` atomically; returns ``path``."""
    if not isinstance(net, InpaintingNet):
        raise TypeError(f"save_model needs an InpaintingNet, got {type(net).__name__}")
    payload = {
        "format": FORMAT,
        "config": dict(net.config),
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "meta": _plain(dict(meta or {})),
    }
    return save_torch(path, payload)


def load_model(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> tuple[InpaintingNet, dict]:
    """(InpaintingNet in eval mode, meta) from a ``save_model`` file; :class:`ModelFileError` naming
    the file when it is missing, unreadable, not an inpainting model or its weights do not fit."""
    p = Path(path)
    payload = load_payload(p, ModelFileError, map_location=map_location)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(f"{p}: not a mokuflow inpainting model")
    try:
        net = InpaintingNet(**payload["config"])
        net.load_state_dict(payload["state_dict"])
    except (TypeError, ValueError, RuntimeError, KeyError) as e:
        raise ModelFileError(f"{p}: weights do not match the config ({e})") from None
    meta = payload.get("meta") or {}
    return net.to(map_location).eval(), dict(meta)
