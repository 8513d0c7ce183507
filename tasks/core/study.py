"""Study declarations: each study says, once, in ``tasks/<study>/study.py``, what the shared machinery
needs to know about it. The CLI, the Prefect flows and deployments, ``make`` and the tests iterate over
:func:`studies`, so adding a study touches no shared list.

A declaration imports nothing heavy (it is read to build ``mokuflow --help``).
"""
from __future__ import annotations

import functools
import importlib
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path

from tasks.core.errors import MokuflowError

MAX, MIN = "max", "min"  # a metric's direction: higher or lower is better


@dataclass(frozen=True)
class Study:
    """What is specific to one study; everything else lives in tasks/core.

    - ``stages``: stage name -> one-line help, in pipeline order; ``tasks/<name>/<stage>.py`` has
      ``run(params, **kwargs) -> dict`` (and optionally ``add_arguments(parser)``).
    - ``pipeline``: the stages the flow and ``dvc repro`` run, in order (default: every stage except
      ``tools``, e.g. a standalone scorer).
    - ``metrics``: held-out metric -> ``"max"`` / ``"min"`` (which direction is better).
    - ``primary_metric``: the default metric that decides promotion to ``champion``.
    - ``monitor``: (validation metric, mode) the best checkpoint is chosen by.
    - ``data_dir``: dotted params key of the folder whose DVC hash is the run's data version.
    - ``serving``: ``"module:Class"`` of the pyfunc model served as ``models:/<name>@champion``.
    - ``schema``: ``"module:Class"`` of the pydantic model that validates ``params[<name>]``.
    - ``retrain_skips``: stages the scheduled retrain leaves out (it trains on the current data).
    """

    name: str
    stages: dict[str, str]
    metrics: dict[str, str]
    primary_metric: str
    monitor: tuple[str, str]
    data_dir: str
    serving: str
    schema: str
    tools: tuple[str, ...] = ()
    retrain_skips: tuple[str, ...] = ("acquire",)
    title: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        for m, d in self.metrics.items():
            if d not in (MAX, MIN):
                raise ValueError(f"study {self.name}: metric {m!r} direction must be 'max' or 'min', got {d!r}")
        if self.primary_metric not in self.metrics:
            raise ValueError(f"study {self.name}: primary_metric {self.primary_metric!r} not in metrics")
        if self.monitor[1] not in (MAX, MIN):
            raise ValueError(f"study {self.name}: monitor mode must be 'max' or 'min'")

    @property
    def pipeline(self) -> list[str]:
        return [s for s in self.stages if s not in self.tools]

    def higher_is_better(self, metric: str) -> bool:
        if metric not in self.metrics:
            raise MokuflowError(f"study {self.name}: unknown metric {metric!r} (one of {sorted(self.metrics)})")
        return self.metrics[metric] == MAX

    def stage_module(self, stage: str):
        if stage not in self.stages:
            raise MokuflowError(f"study {self.name}: unknown stage {stage!r} (one of {list(self.stages)})")
        return importlib.import_module(f"tasks.{self.name}.{stage}")

    def load(self, ref: str):
        """``"module:attr"`` -> the object (the serving class, the params schema)."""
        module, attr = ref.split(":")
        return getattr(importlib.import_module(module), attr)


@functools.cache
def studies() -> dict[str, Study]:
    """Every ``tasks/<name>/study.py`` that defines ``STUDY``, by name (sorted)."""
    pkg = Path(__file__).resolve().parents[1]
    found: dict[str, Study] = {}
    for info in sorted(pkgutil.iter_modules([str(pkg)]), key=lambda i: i.name):
        if not info.ispkg or not (pkg / info.name / "study.py").is_file():
            continue
        decl = getattr(importlib.import_module(f"tasks.{info.name}.study"), "STUDY", None)
        if isinstance(decl, Study):
            if decl.name != info.name:
                raise ValueError(f"tasks/{info.name}/study.py declares study {decl.name!r}: names must match")
            found[decl.name] = decl
    return found


def get(name: str) -> Study:
    try:
        return studies()[name]
    except KeyError:
        raise MokuflowError(f"unknown study {name!r} (one of {sorted(studies())})") from None
