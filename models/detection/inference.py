"""Saving, loading and running a trained detector: image paths in, COCO-style detections out.

Images are letterboxed: scaled so the longer side is ``image_size``, pasted top-left on a black
square. The per-axis scale is kept so boxes map back to the original pixels exactly.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

from models.common.io import load_payload, save_torch
from models.detection.detector import Detector

FORMAT = "mokuflow-detection-v1"
FIELDS = (("score", "scores"), ("iou", "iou"), ("purity", "purity"), ("integrity", "integrity"), ("rank", "rank"))


class ModelFileError(ValueError):
    """A model file that is missing or not in the ``save_model`` format."""


class ImageReadError(ValueError):
    """An image file that is missing or cannot be decoded."""


# ------------------------------------------------------------------------------------------ images

def letterbox(rgb: np.ndarray, image_size: int) -> tuple[np.ndarray, dict]:
    """uint8 [h, w, 3] -> (uint8 [S, S, 3], info). info: ``orig_size`` (h, w) and ``scale`` (sx, sy),
    resized = original * scale."""
    h, w = rgb.shape[:2]
    s = image_size / max(h, w)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    out = np.zeros((image_size, image_size, 3), dtype=np.uint8)
    out[:nh, :nw] = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    return out, {"orig_size": (h, w), "scale": (nw / w, nh / h)}


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """uint8 RGB [h, w, 3]; ``ImageReadError`` naming the file when it cannot be decoded."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR) if Path(path).is_file() else None
    if img is None or img.size == 0:
        raise ImageReadError(f"{path}: cannot be read as an image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def to_tensor(rgb: np.ndarray) -> Tensor:
    """uint8 [S, S, 3] -> float [3, S, S] in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255.0)


def read_image(path: str | os.PathLike, image_size: int) -> tuple[Tensor, dict]:
    """(float [3, S, S] in [0, 1], info with ``orig_size`` and ``scale``) of a letterboxed image."""
    rgb, info = letterbox(read_rgb(path), int(image_size))
    return to_tensor(rgb), info


def to_original(boxes: Tensor, info: dict) -> Tensor:
    """Letterboxed xyxy -> original-image xyxy, clipped to the original image."""
    sx, sy = info["scale"]
    h, w = info["orig_size"]
    out = boxes / boxes.new_tensor([sx, sy, sx, sy])
    return torch.stack([out[:, 0].clamp(0, w), out[:, 1].clamp(0, h), out[:, 2].clamp(0, w),
                        out[:, 3].clamp(0, h)], dim=1)


# ------------------------------------------------------------------------------------ model files

def save_model(path: str | os.PathLike, detector: Detector, *, category_ids: Sequence[int],
               category_names: Sequence[str], image_size: int) -> Path:
    """Write {format, config, state_dict, categories, image_size} atomically."""
    if len(category_ids) != detector.num_classes or len(category_names) != len(category_ids):
        raise ValueError(f"{len(category_ids)} category ids / {len(category_names)} names for a detector "
                         f"of {detector.num_classes} classes")
    payload = {
        "format": FORMAT,
        "config": detector.config,
        "state_dict": {k: v.detach().cpu() for k, v in detector.state_dict().items()},
        "categories": [{"id": int(i), "name": str(n)} for i, n in zip(category_ids, category_names)],
        "image_size": int(image_size),
    }
    return save_torch(path, payload)


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[Detector, dict]:
    """(Detector in eval mode, meta {categories, image_size, config}) from a ``save_model`` file."""
    p = Path(path)
    payload = load_payload(p, ModelFileError, map_location=map_location)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(f"{p}: not a mokuflow detection model")
    try:
        detector = Detector(**payload["config"])
        detector.load_state_dict(payload["state_dict"])
    except (TypeError, ValueError, RuntimeError, KeyError) as e:
        raise ModelFileError(f"{p}: weights do not match the config ({e})") from None
    meta = {"categories": list(payload["categories"]), "image_size": int(payload["image_size"]),
            "config": payload["config"]}
    return detector.to(map_location).eval(), meta


# -------------------------------------------------------------------------------------- predicting

@torch.no_grad()
def detect_loaded(detector: Detector, meta: dict, loaded: Sequence[tuple[Tensor, dict]], *,
                  variants: Sequence[str] = ("dir",), device: str | torch.device = "cpu",
                  score_threshold: float = 0.05, nms_threshold: float = 0.5, max_detections: int = 100,
                  candidates_out: list | None = None) -> dict[str, list[dict[str, np.ndarray]]]:
    """{variant: one dict per image} for images already read by :func:`read_image` (one batch).

    Each dict holds numpy arrays sorted by rank: ``bbox`` [n, 4] COCO xywh in the original image's
    pixels, ``category_id``, ``score`` (classification), ``iou``, ``purity``, ``integrity`` (NaN where
    the variant has none) and ``rank`` (score x IoU, or score for "none"). One network pass serves
    every variant.

    ``candidates_out``: a list that gets, per image, what reached NMS (every candidate with score >
    ``score_threshold``, at most the detector's ``max_candidates``): ``bbox``, ``category_id``,
    ``score`` and each IoU head's ``iou_<head>`` (numpy, by decreasing score). No extra network work."""
    cat_ids = np.array([c["id"] for c in meta["categories"]], dtype=np.int64)
    out: dict[str, list] = {v: [] for v in variants}
    cands = detector.candidates(torch.stack([t for t, _ in loaded]).to(device), score_threshold=score_threshold)
    if candidates_out is not None:
        for cand, (_, info) in zip(cands, loaded):
            candidates_out.append({**_coco_boxes(cand, info, cat_ids), "score": _np(cand["scores"]),
                                   **{k: _np(v) for k, v in cand.items() if k.startswith("iou_")}})
    for variant in variants:
        dets = detector.postprocess(cands, variant, nms_threshold=nms_threshold, max_detections=max_detections)
        for det, (_, info) in zip(dets, loaded):
            row = _coco_boxes(det, info, cat_ids)
            row.update({k: _np(det[src]) for k, src in FIELDS})
            out[variant].append(row)
    return out


def _np(t: Tensor) -> np.ndarray:
    return t.float().cpu().numpy().astype(np.float64)


def _coco_boxes(det: dict, info: dict, cat_ids: np.ndarray) -> dict[str, np.ndarray]:
    """``bbox`` (COCO xywh, original pixels) and ``category_id`` of a detector output's boxes / labels."""
    xyxy = to_original(det["boxes"].float(), info).cpu().numpy().astype(np.float64)
    return {"bbox": np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1),
            "category_id": cat_ids[det["labels"].cpu().numpy() - 1]}


def predict_images(detector: Detector, meta: dict, paths: Sequence[str | os.PathLike], *,
                   variants: Sequence[str] = ("dir",), batch_size: int = 8, device: str | torch.device = "cpu",
                   score_threshold: float = 0.05, nms_threshold: float = 0.5, max_detections: int = 100,
                   candidates_out: list | None = None) -> dict[str, list[dict[str, np.ndarray]]]:
    """{variant: one dict per path} (see :func:`detect_loaded`, also for ``candidates_out``: one
    entry per path), reading and detecting by batches."""
    detector = detector.to(device).eval()
    out: dict[str, list] = {v: [] for v in variants}
    paths = list(paths)
    bs = max(1, int(batch_size))
    for start in range(0, len(paths), bs):
        loaded = [read_image(p, meta["image_size"]) for p in paths[start:start + bs]]
        got = detect_loaded(detector, meta, loaded, variants=variants, device=device,
                            score_threshold=score_threshold, nms_threshold=nms_threshold,
                            max_detections=max_detections, candidates_out=candidates_out)
        for v in variants:
            out[v].extend(got[v])
    return out


def to_coco_results(image_ids: Sequence[int], detections: Sequence[dict[str, np.ndarray]]) -> list[dict]:
    """COCO result dicts; ``score`` is the rank (COCOeval ranks by it: score x IoU for IoU variants)."""
    if len(image_ids) != len(detections):
        raise ValueError(f"{len(image_ids)} image ids for {len(detections)} detection lists")
    return [{"image_id": int(i), "category_id": int(c), "bbox": [float(v) for v in b], "score": float(r)}
            for i, det in zip(image_ids, detections)
            for b, c, r in zip(det["bbox"], det["category_id"], det["rank"])]
