"""The ``detection`` section of params.yaml, checked before any stage runs (see tasks/core/schema.py)."""
from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from tasks.core.schema import Field, RegisterConfig, ScheduleConfig, Section, TrainConfig

VARIANTS = ("none", "direct", "decoupled", "dir", "iou_nms")  # iou_nms: IoU-guided NMS (direct head)


class SplitFiles(Section):
    train: str | None = None
    val: str | None = None
    test: str | None = None


class CocoSource(Section):
    images: str | None = None
    annotations: SplitFiles = SplitFiles()


class UrlSource(Section):
    href: str | None = None
    sha256: str | None = None
    images: str = "images"
    annotations: SplitFiles = SplitFiles()
    cache_dir: str = ".cache/downloads"


class Data(Section):
    source: Literal["synthetic", "coco", "url"]
    coco: CocoSource = CocoSource()
    url: UrlSource = UrlSource()
    raw_dir: str
    clean_dir: str


class Synthetic(Section):
    seed: int = Field(ge=0)
    n_train: int = Field(gt=0)
    n_val: int = Field(gt=0)
    n_test: int = Field(gt=0)
    image_size: int = Field(ge=32)
    min_object: int = Field(gt=0)
    max_objects: int = Field(gt=0)
    fault_rate: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _objects_fit(self):
        if not self.min_object < self.image_size // 2:
            raise ValueError(f"min_object must be below image_size / 2, got {self.min_object} "
                             f"for image_size {self.image_size}")
        return self


class Clean(Section):
    duplicate_iou: float = Field(gt=0, le=1)


class Model(Section):
    image_size: int = Field(ge=32)
    channels: list[int] = Field(min_length=3)
    norm: Literal["bn", "gn"] = "gn"  # the backbone's normalisation: BatchNorm or GroupNorm
    fpn_channels: int = Field(gt=0)
    anchor_sizes: list[int] = Field(min_length=1)
    fpn_min_level: int = Field(3, ge=2)  # the finest FPN level (stride 2**level); one anchor size per level
    roi_size: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    roi_batch_per_image: int = Field(64, gt=0)  # RoIs the box head learns from per image (25 % foreground)
    box_loss_beta: float = Field(1.0, ge=0)     # smooth-L1 beta of the box head's deltas; 0 = L1
    iou_heads: list[Literal["direct", "decoupled", "dir"]]
    iou_min_target: float = Field(0.4, ge=0, lt=1)   # IoU heads learn from refined boxes at least this good
    iou_low_fraction: float = Field(0.0, ge=0, le=1)  # share of IoU samples from proposals below IoU 0.5


class Train(TrainConfig):
    warmup_steps: int = Field(ge=0)
    val_variant: Literal["none", "direct", "decoupled", "dir"] = "dir"


class Evaluate(Section):
    variants: list[Literal["none", "direct", "decoupled", "dir", "iou_nms"]] = Field(min_length=1)
    score_threshold: float = Field(ge=0, lt=1)
    nms_threshold: float = Field(gt=0, le=1)
    max_detections: int = Field(gt=0)
    bootstrap: int = Field(ge=0)
    seed: int = 0
    out_dir: str


class Report(Section):
    n_examples: int = Field(ge=0)
    out_dir: str


class DetectionParams(Section):
    data: Data
    synthetic: Synthetic
    clean: Clean
    model: Model
    train: Train
    evaluate: Evaluate
    report: Report
    register_: RegisterConfig = Field(alias="register")  # BaseModel (an ABC) has .register
    schedule: ScheduleConfig
