"""The ``vqa`` section of params.yaml, checked before any stage runs (see tasks/core/schema.py)."""
from __future__ import annotations

from typing import Literal

from pydantic import field_validator, model_validator

from tasks.core.schema import Field, RegisterConfig, ScheduleConfig, Section, SplitConfig, TrainConfig


class FolderSource(Section):
    videos: str | None = None
    labels: str | None = None
    scores: str | None = None


class UrlSource(Section):
    href: str | None = None
    sha256: str | None = None
    labels: str | None = None
    scores: str | None = None
    cache_dir: str = ".cache/downloads"


Split = SplitConfig


class Data(Section):
    source: Literal["synthetic", "folder", "url"]
    folder: FolderSource = FolderSource()
    url: UrlSource = UrlSource()
    raw_dir: str
    clean_dir: str
    split: Split


class Synthetic(Section):
    seed: int
    n_contents: int = Field(gt=0)
    versions_per_content: int = Field(gt=0)
    n_frames: int = Field(ge=2)  # motion needs two frames: 1-frame videos are refused
    height: int = Field(ge=16)
    width: int = Field(ge=16)
    fps: int = Field(gt=0)
    n_raters: int = Field(gt=0)
    careless_fraction: float = Field(ge=0, le=1)
    missing_fraction: float = Field(ge=0, lt=1)

    @model_validator(mode="after")
    def _even_frame_size(self):
        if self.height % 2 or self.width % 2:
            raise ValueError(f"height and width must be even (mp4), got {self.height}x{self.width}")
        return self


class Clean(Section):
    method: Literal["mle", "mos"]
    max_iter: int = Field(gt=0)
    tol: float = Field(ge=0)
    min_std: float = Field(gt=0)
    # the rating scale [min, max] of per-rater scores; ratings outside it are refused or dropped
    scale: list[float] = Field(default_factory=lambda: [1.0, 5.0], min_length=2, max_length=2)
    out_of_scale: Literal["refuse", "drop"] = "refuse"

    @field_validator("scale")
    @classmethod
    def _ordered(cls, v: list[float]) -> list[float]:
        if not v[0] < v[1]:
            raise ValueError("expected [min, max] with min < max")
        return v


class Frames(Section):
    n_clips: int = Field(gt=0)
    clip_len: int = Field(gt=0)
    height: int = Field(gt=0)
    width: int = Field(gt=0)
    motion: Literal["diff", "flow"]
    cache_dir: str


class Model(Section):
    backbone_channels: list[int] = Field(min_length=1)
    pretrained: str | None = None
    gcn_layers: int = Field(ge=0)
    gcn_dim: int = Field(gt=0)
    attention_heads: int = Field(gt=0)
    motion_channels: int = Field(gt=0)
    lstm_hidden: int = Field(gt=0)
    dropout: float = Field(ge=0, lt=1)
    # the ablation switches (models.vqa.stdam); STDAM is all three on
    motion_branch: bool = True
    spatial: Literal["graph", "pool"] = "graph"
    temporal: Literal["lstm", "mean"] = "lstm"


class Loss(Section):
    plcc_weight: float = Field(ge=0)
    rank_weight: float = Field(ge=0)
    mse_weight: float = Field(ge=0)


class Train(TrainConfig):
    loss: Loss


class Baseline(Section):
    ridge_alpha: float = Field(gt=0)
    out_dir: str


# tasks.vqa.distortions.KINDS, spelled out: validating params must not import the data code (every
# stage validates them); tests/vqa/test_distortions.py checks the two agree.
DistortionKind = Literal["blur", "noise", "jpeg", "scale", "exposure", "flicker", "shake", "fps", "drops",
                         "freeze", "judder"]


class Sensitivity(Section):
    """Per-kind probes (tasks.vqa.sensitivity): graded distortions of the best-rated test videos."""
    n_videos: int = Field(ge=1)
    severities: list[float] = Field(min_length=2)
    kinds: list[DistortionKind] = Field(min_length=1)

    @field_validator("severities")
    @classmethod
    def _graded(cls, v: list[float]) -> list[float]:
        if any(not 0 < x <= 1 for x in v) or sorted(set(v)) != v:
            raise ValueError(f"expected increasing severities in (0, 1], got {v}")
        return v

    @field_validator("kinds")
    @classmethod
    def _distinct(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"expected distinct kinds, got {v}")
        return v


class Evaluate(Section):
    bootstrap: int = Field(ge=0)
    seed: int = 0
    sensitivity: Sensitivity
    out_dir: str


class Ablation(Section):
    """The ablation stage: each variant trained like STDAM (same data, seed, schedule), scored on the
    test split beside it. Off by default: it trains len(variants) more models."""
    enabled: bool = False
    variants: list[Literal["no_motion", "no_graph", "mean_pool"]] = Field(min_length=1)
    runs_dir: str
    out_dir: str


class Report(Section):
    out_dir: str


class VQAParams(Section):
    data: Data
    synthetic: Synthetic
    clean: Clean
    frames: Frames
    model: Model
    train: Train
    baseline: Baseline
    evaluate: Evaluate
    ablation: Ablation
    report: Report
    register_: RegisterConfig = Field(alias="register")  # BaseModel (an ABC) has .register
    schedule: ScheduleConfig
