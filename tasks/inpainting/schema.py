"""The ``inpainting`` section of params.yaml, checked before any stage runs (see tasks/core/schema.py)."""
from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import field_validator, model_validator

from tasks.core.schema import Field, RegisterConfig, ScheduleConfig, Section, SplitConfig, TrainConfig


def _size(v: list[int] | None) -> list[int] | None:
    if v is not None and (v[0] % 4 or v[1] % 4):
        raise ValueError(f"[height, width] must be multiples of 4 (the network halves twice), got {v}")
    return v


class FolderSource(Section):
    # a DAVIS, YouTube-VOS or object-removal (ProPainter: <seq>/ + <seq>_mask/) folder; `auto` tells them apart
    root: str | None = None
    layout: Literal["auto", "davis", "youtube-vos", "object-removal"] = "auto"
    resolution: str = "480p"          # DAVIS: JPEGImages/<resolution>/ when present
    sequences: list[str] | None = None  # a subset; null: every sequence


Split = SplitConfig


class Data(Section):
    source: Literal["synthetic", "folder"]
    folder: FolderSource = FolderSource()
    raw_dir: str
    clean_dir: str
    split: Split

    @model_validator(mode="after")
    def _folder_named(self):
        if self.source == "folder" and not self.folder.root:
            raise ValueError("source 'folder' needs folder.root (a DAVIS / YouTube-VOS / object-removal folder)")
        return self


class Synthetic(Section):
    seed: int
    n_videos: int = Field(ge=3)       # at least one each for train, val and test
    n_frames: int = Field(ge=2)
    height: int = Field(ge=16)
    width: int = Field(ge=16)


class Clean(Section):
    min_area: float = Field(ge=0, lt=1)  # speckles / holes under this share of the frame are removed / filled
    threshold: int = Field(ge=1, le=255)  # grey (anti-aliased) masks: object where >= this


class Model(Section):
    width: int = Field(gt=0)
    key_dim: int = Field(gt=0)
    value_dim: int = Field(gt=0)
    internal_size: list[int] = Field(min_length=2, max_length=2)  # [h, w] the network runs at
    max_memory: int = Field(ge=1)     # working-memory frames the session keeps (user frames stay on top)

    _check_size = field_validator("internal_size")(classmethod(lambda cls, v: _size(v)))


class Loss(Section):
    mask_weight: float = Field(ge=0)
    restore_weight: float = Field(ge=0)
    ssim_weight: float = Field(ge=0)


class Train(TrainConfig):
    warmup_steps: int = Field(ge=0)
    clip_len: int = Field(ge=2)
    max_gap: int = Field(ge=1)
    samples_per_epoch: int = Field(gt=0)
    corrective: float = Field(ge=0, le=1)  # share of clips that simulate a correction round
    loss: Loss


class Evaluate(Section):
    rounds: int = Field(ge=1, le=20)  # robot rounds per video (DAVIS interactive: 8)
    max_videos: int | None = Field(None, gt=0)  # null: every test video
    bootstrap: int = Field(ge=0)
    seed: int = 0
    out_dir: str


class Report(Section):
    n_strips: int = Field(ge=0)       # best and worst videos shown as frame strips
    out_dir: str


class Cloak(Section):
    model: str | None = None          # a model file; null: <train.out_dir>/model.pt
    internal_size: list[int] | None = Field(None, min_length=2, max_length=2)  # null: the model file's
    max_memory: int | None = Field(None, ge=1)  # null: the model file's
    device: str = "auto"              # auto: cuda when there is one
    fps: float | None = Field(None, gt=0)       # result.mp4 rate; null: the video's, 25 for a folder

    _check_size = field_validator("internal_size")(classmethod(lambda cls, v: _size(v)))


class Web(Section):
    """The cloak web page (``mokuflow inpainting web``, ``make cloak``): served on loopback only."""
    host: str = "127.0.0.1"           # 127.0.0.1, ::1 or localhost; never another interface
    port: int = Field(7860, ge=0, le=65535)  # 0: any free port
    max_upload_mb: float = Field(200, gt=0)
    max_frames: int = Field(600, ge=1)
    idle_timeout_s: float = Field(1800, gt=0)  # a tab's session is freed after this long unused
    device: str = "auto"
    videos: list[str] = []            # offered besides the clean sequences: video files, frame folders, or folders of them

    @field_validator("host")
    @classmethod
    def _loopback(cls, v: str) -> str:
        try:
            ok = v == "localhost" or ipaddress.ip_address(v).is_loopback
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"the cloak page binds to loopback only (127.0.0.1, ::1 or localhost), got {v!r}")
        return v


class InpaintingParams(Section):
    data: Data
    synthetic: Synthetic
    clean: Clean
    model: Model
    train: Train
    evaluate: Evaluate
    report: Report
    register_: RegisterConfig = Field(alias="register")  # BaseModel (an ABC) has .register
    schedule: ScheduleConfig
    cloak: Cloak = Cloak()
    web: Web = Web()
