"""Params schemas: pydantic models that check params.yaml (and ``--set``) before any stage runs.

A wrong key or type is reported as one line naming the file, the dotted key, what was expected and
what was found. Each study declares its own section model (``Study.schema``); the shared sections
(``mlflow``) are checked here. Validated values are written back, so stages see the coerced types
(e.g. ``lr: 2e-3``, which YAML reads as a string, becomes a float).
"""
from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic import Field as Field  # re-exported for the study schemas

from tasks.core.errors import MokuflowError

__all__ = ["Section", "Field", "Positive", "NonNegative", "Fraction", "TrainConfig", "ScheduleConfig",
           "RegisterConfig", "SplitConfig", "validate"]


def _numbers_only(annotation: Any) -> bool:
    """Whether a field takes numbers and nothing else (``int``, ``float``, ``float | None``...)."""
    if annotation in (int, float):
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return bool(args) and all(a in (int, float) for a in args)
    return False


class Section(BaseModel):
    """A params section: unknown keys are errors (they are usually typos); ``true`` / ``false`` are
    not numbers (pydantic would read them as 1 / 0)."""
    model_config = ConfigDict(extra="forbid", validate_default=True, populate_by_name=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_numbers(cls, v: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if isinstance(v, bool) and field is not None and _numbers_only(field.annotation):
            raise ValueError("expected a number, not true / false")
        return v


Positive = Field(gt=0)
NonNegative = Field(ge=0)
Fraction = Field(ge=0, le=1)


class MlflowConfig(Section):
    tracking_uri: str
    artifact_location: str | None = None


class TrainConfig(Section):
    """Lightning settings every study's train stage shares (tasks.core.training reads these)."""
    seed: int = 0
    max_epochs: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    lr: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    accelerator: str = "auto"
    devices: int | str | list[int] = "auto"
    num_nodes: int = Field(1, gt=0)
    strategy: str = "auto"
    precision: str = "auto"
    num_workers: int = Field(0, ge=0)
    checkpoint_every_n_steps: int = Field(0, ge=0)
    runs_dir: str
    out_dir: str


class RegisterConfig(Section):
    model_name: str
    metric: str
    min_improvement: float = Field(0.0, ge=0)
    out_dir: str


class SplitConfig(Section):
    """How a study's acquire stage splits its items into train / val / test (seeded fractions)."""
    seed: int = 0
    val_fraction: float = Field(ge=0, lt=1)
    test_fraction: float = Field(ge=0, lt=1)

    @model_validator(mode="after")
    def _leaves_training_data(self):
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must be below 1 (the rest trains)")
        return self


class ScheduleConfig(Section):
    retrain_cron: str
    timezone: str = "UTC"


def _where(loc: tuple) -> str:
    return ".".join(str(p) for p in loc)


def _problem(err: dict) -> str:
    kind, msg = err.get("type", ""), err.get("msg", "")
    if kind == "extra_forbidden":
        return "unknown key (a typo?)"
    if kind == "missing":
        return "missing key"
    got = err.get("input")
    shown = repr(got) if not isinstance(got, (dict, list)) else type(got).__name__
    if kind == "value_error":
        msg = msg.removeprefix("Value error, ")
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping of settings, got {shown[:80]}"
    return f"{msg[0].lower() + msg[1:] if msg else 'invalid'}, got {shown[:80]}"


def validate_section(model: type[BaseModel], data: Any, *, key: str, file: str) -> dict:
    """``data`` checked against ``model``; returns the coerced dict or raises one MokuflowError line."""
    if not isinstance(data, dict):
        raise MokuflowError(f"{file}: {key} must be a mapping of settings, got {type(data).__name__} {data!r:.60}")
    try:
        return model.model_validate(data).model_dump(by_alias=True)
    except ValidationError as e:
        errs = e.errors()
        first = errs[0]
        more = f" (and {len(errs) - 1} more problem(s))" if len(errs) > 1 else ""
        raise MokuflowError(f"{file}: {key}.{_where(first['loc'])}: {_problem(first)}{more}") from None


def declares(dotted: str, studies: dict) -> bool:
    """Whether a study's schema declares the dotted key (e.g. a key with a default that params.yaml
    does not spell out), so ``--set`` may give it a value."""
    top, *parts = dotted.split(".")
    if top not in studies or not parts:
        return False
    model: Any = studies[top].load(studies[top].schema)
    for i, part in enumerate(parts):
        fields = {(f.alias or name): f for name, f in model.model_fields.items()}
        field = fields.get(part)
        if field is None:
            return False
        if i == len(parts) - 1:
            return True
        model = field.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return False
    return False


def validate(params: dict, studies: dict, only: str | None = None) -> dict:
    """Check ``mlflow`` and every declared study's section present in ``params`` (in place), or
    only the section of study ``only``."""
    file = str(params.get("_file", "params.yaml"))
    if "mlflow" not in params:
        raise MokuflowError(f"{file}: missing section 'mlflow' (with tracking_uri)")
    params["mlflow"] = validate_section(MlflowConfig, params["mlflow"], key="mlflow", file=file)
    for name, study in studies.items():
        if name in params and only in (None, name):
            params[name] = validate_section(study.load(study.schema), params[name], key=name, file=file)
    unknown = [k for k in params if not k.startswith("_") and k != "mlflow" and k not in studies]
    if unknown:
        raise MokuflowError(f"{file}: unknown section(s) {unknown} (studies: {sorted(studies)})")
    return params


