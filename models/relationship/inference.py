"""Saving, loading and running a trained RelationshipNet: one file holds everything serving needs.

``model.pt`` is a plain dict read with ``torch.load(weights_only=True)``: the network's config and
weights, the vocabulary (its words, in id order), the feature config
(:class:`~models.relationship.features.FeatureConfig`) and the class names (fine labels, most negative
first; coarse labels). ``ablations.pt`` holds the other fusion variants the train stage fitted for the
evaluate stage's comparison (``{fusion: (config, weights)}``, same vocabulary and features).
Written atomically (a kill mid-save leaves the previous file whole).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from models.common.io import load_payload, save_torch
from models.relationship.features import FeatureConfig, Vocabulary
from models.relationship.network import MODALITIES, RelationshipNet, to_batch

FORMAT = "mokuflow-relationship-v1"
ABLATIONS_FORMAT = "mokuflow-relationship-ablations-v1"
COARSE_LABELS = ("negative", "neutral", "positive")


class ModelFileError(ValueError):
    """A model file that is missing or not in the ``save_model`` format; the message names the file."""


@dataclass
class LoadedModel:
    net: RelationshipNet
    vocab: Vocabulary
    features: FeatureConfig
    labels: list[str]
    coarse_labels: list[str] = field(default_factory=lambda: list(COARSE_LABELS))
    meta: dict = field(default_factory=dict)


def _net_payload(net: RelationshipNet) -> dict:
    if not isinstance(net, RelationshipNet):
        raise TypeError(f"expected a RelationshipNet, got {type(net).__name__}")
    return {"config": dict(net.config), "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()}}


def _net_of(p: Path, entry: dict) -> RelationshipNet:
    try:
        net = RelationshipNet(**entry["config"])
        net.load_state_dict(entry["state_dict"])
    except (TypeError, ValueError, RuntimeError, KeyError) as e:
        raise ModelFileError(f"{p}: weights do not match the config ({e})") from None
    return net


def save_model(path: str | os.PathLike, net: RelationshipNet, *, vocab: Vocabulary, features: FeatureConfig,
               labels: Sequence[str], coarse_labels: Sequence[str] = COARSE_LABELS, meta: dict | None = None) -> Path:
    """Write ``{format, config, state_dict, vocab, features, labels, coarse_labels, meta}`` atomically."""
    labels = [str(x) for x in labels]
    if len(labels) != net.config["n_fine"]:
        raise ValueError(f"{len(labels)} labels for a network of {net.config['n_fine']} classes")
    payload = {"format": FORMAT, **_net_payload(net), "vocab": list(vocab.words), "features": features.to_dict(),
               "labels": labels, "coarse_labels": [str(x) for x in coarse_labels], "meta": dict(meta or {})}
    return save_torch(path, payload)


def load_model(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> LoadedModel:
    """The model in eval mode with its vocabulary, feature config and labels; :class:`ModelFileError`
    naming the file when it is missing, unreadable, not a relationship model or its weights do not fit."""
    p = Path(path)
    payload = load_payload(p, ModelFileError, map_location=map_location)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(f"{p}: not a mokuflow relationship model")
    net = _net_of(p, payload)
    try:
        vocab, cfg = Vocabulary(payload["vocab"]), FeatureConfig(**payload["features"])
    except (TypeError, ValueError, KeyError) as e:
        raise ModelFileError(f"{p}: bad vocabulary or feature config ({e})") from None
    return LoadedModel(net.to(map_location).eval(), vocab, cfg, list(payload["labels"]),
                       list(payload.get("coarse_labels") or COARSE_LABELS), dict(payload.get("meta") or {}))


def save_ablations(path: str | os.PathLike, nets: dict[str, RelationshipNet]) -> Path:
    """Other fusion variants ``{name: net}`` in one file (possibly none)."""
    return save_torch(path, {"format": ABLATIONS_FORMAT, "models": {k: _net_payload(v) for k, v in nets.items()}})


def load_ablations(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> dict[str, RelationshipNet]:
    p = Path(path)
    payload = load_payload(p, ModelFileError, map_location=map_location)
    if not isinstance(payload, dict) or payload.get("format") != ABLATIONS_FORMAT:
        raise ModelFileError(f"{p}: not a mokuflow relationship ablations file")
    return {k: _net_of(p, v).to(map_location).eval() for k, v in payload["models"].items()}


def check_modalities(modalities) -> list[str]:
    """A non-empty subset of visual / audio / text, in canonical order; ValueError naming the problem."""
    if isinstance(modalities, str):
        modalities = [modalities]
    given = [str(m).strip() for m in (modalities or [])]
    unknown = [m for m in given if m not in MODALITIES]
    if not given or unknown:
        raise ValueError(f"modalities must be a non-empty subset of {list(MODALITIES)}, got {given}")
    return [m for m in MODALITIES if m in given]


@torch.inference_mode()
def predict_proba(net: RelationshipNet, features: dict[str, np.ndarray], *, modalities: Sequence[str] | None = None,
                  device: str | torch.device = "cpu", batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(fine [N, n_fine], coarse [N, n_coarse]) class probabilities of stacked ``features``, predicted
    from ``modalities`` alone (None: the network's own)."""
    net = net.to(device).eval()
    n = len(next(iter(features.values())))
    fine, coarse = [], []
    for start in range(0, n, batch_size):
        batch = to_batch({k: v[start:start + batch_size] for k, v in features.items()}, device)
        out = net(batch, modalities=modalities)
        fine.append(out["fine"].float().softmax(-1).cpu().numpy())  # late fusion's log-probs: softmax = probs
        coarse.append(out["coarse"].float().softmax(-1).cpu().numpy())
    return np.concatenate(fine), np.concatenate(coarse)
