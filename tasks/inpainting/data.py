"""Where the inpainting stages find their inputs: the clean DAVIS-layout folder, its splits, the model file."""
from __future__ import annotations

from pathlib import Path

from tasks.core import MokuflowError, resolve


def clean_root(params: dict) -> Path:
    return resolve(params, params["inpainting"]["data"]["clean_dir"])


def split_names(params: dict, split: str, *, min_n: int = 1) -> list[str]:
    """The sequences of a split, as clean wrote them (``<clean_dir>/ImageSets/<split>.txt``)."""
    path = clean_root(params) / "ImageSets" / f"{split}.txt"
    if not path.is_file():
        raise MokuflowError(f"{path}: not found (run the clean stage first)")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(names) < min_n:
        raise MokuflowError(f"{path}: {len(names)} sequences in the '{split}' split, need at least {min_n}")
    return names


def model_file(params: dict) -> Path:
    path = resolve(params, params["inpainting"]["train"]["out_dir"]) / "model.pt"
    if not path.is_file():
        raise MokuflowError(f"{path}: not found (run the train stage first)")
    return path
