"""The ``relationship`` section of params.yaml, checked before any stage runs (see tasks/core/schema.py)."""
from __future__ import annotations

from typing import Literal

from pydantic import field_validator, model_validator

from tasks.core.schema import Field, RegisterConfig, ScheduleConfig, Section, SplitConfig, TrainConfig

LABELS = ["hostile", "tense", "neutral", "mild", "intimate"]
Modality = Literal["visual", "audio", "text"]
Fusion = Literal["sync", "concat", "late"]


class FolderSource(Section):
    # an ERATO-like folder: a manifest of clips (same columns as the synthetic one) + a raw label table
    root: str | None = None
    manifest: str = "manifest.csv"      # relative to root
    labels: str = "labels_raw.csv"      # relative to root: clip_id, annotator_id, label


Split = SplitConfig  # used when the manifest has no (or an empty) split column


class Data(Section):
    source: Literal["synthetic", "folder"]
    folder: FolderSource = FolderSource()
    raw_dir: str
    clean_dir: str
    split: Split

    @model_validator(mode="after")
    def _folder_named(self):
        if self.source == "folder" and not self.folder.root:
            raise ValueError("source 'folder' needs folder.root (a folder with a manifest and a label table)")
        return self


class Synthetic(Section):
    seed: int
    n_clips: int = Field(ge=3)          # at least one each for train, val and test
    height: int = Field(ge=32)
    width: int = Field(ge=32)
    fps: float = Field(gt=0)
    min_seconds: float = Field(gt=0)
    max_seconds: float = Field(gt=0)
    p_no_audio: float = Field(ge=0, le=1)
    p_no_subtitles: float = Field(ge=0, le=1)
    p_music_fits: float = Field(ge=0, le=1)
    labels_per_clip: int = Field(ge=1)

    @model_validator(mode="after")
    def _durations(self):
        if self.max_seconds < self.min_seconds:
            raise ValueError("max_seconds must be >= min_seconds")
        return self


class Clean(Section):
    # the clean tool takes any label set (2 or more); the model needs five, most negative first
    # (the coarse task groups the first two, the middle one, the last two): train refuses other sets
    labels: list[str] = Field(default_factory=lambda: list(LABELS), min_length=2)
    max_iter: int = Field(ge=1)
    tol: float = Field(gt=0, lt=1)

    @field_validator("labels")
    @classmethod
    def _distinct(cls, v: list[str]) -> list[str]:
        v = [str(x).strip() for x in v]
        if "" in v or len(set(v)) != len(v):
            raise ValueError(f"expected distinct, non-empty labels, got {v}")
        return v


class Features(Section):
    n_steps: int = Field(ge=2)
    face_size: int = Field(ge=4)
    body_height: int = Field(ge=4)
    body_width: int = Field(ge=4)
    n_mels: int = Field(ge=4)
    mel_steps: int = Field(ge=1)
    sample_rate: int = Field(ge=4000)
    max_tokens: int = Field(ge=1)
    max_gap: int = Field(ge=0)
    vocab_min_count: int = Field(ge=1)
    vocab_max_size: int | None = Field(None, ge=4)  # null: every training word


class Model(Section):
    fusion: Fusion = "sync"
    modalities: list[Modality] = Field(min_length=1)
    dim: int = Field(gt=0)
    heads: int = Field(gt=0)
    layers: int = Field(ge=1)
    channels: int = Field(gt=0)
    dropout: float = Field(ge=0, lt=1)
    modality_dropout: float = Field(ge=0, lt=1)

    @model_validator(mode="after")
    def _heads_divide_dim(self):
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be a multiple of heads ({self.heads})")
        return self


class Train(TrainConfig):
    warmup_steps: int = Field(ge=0)
    coarse_loss_weight: float = Field(ge=0)
    class_weighted: bool = True
    cache_dir: str = ".cache/relationship"  # extracted features, per clip (not hashed: a cache)


class Evaluate(Section):
    bootstrap: int = Field(ge=0)
    seed: int = 0
    # other fusions trained by the train stage (fewer epochs) to compare the model's fusion with
    ablation_fusions: list[Fusion] = Field(default_factory=list)
    ablation_epochs: int | None = Field(None, gt=0)  # null: train.max_epochs
    min_clips_for_verdict: int = Field(10, ge=1)
    n_examples: int = Field(6, ge=0)  # test clips shown in the report with their subtitles
    out_dir: str


class Report(Section):
    out_dir: str


class RelationshipParams(Section):
    data: Data
    synthetic: Synthetic
    clean: Clean
    features: Features
    model: Model
    train: Train
    evaluate: Evaluate
    report: Report
    register_: RegisterConfig = Field(alias="register")  # BaseModel (an ABC) has .register
    schedule: ScheduleConfig
