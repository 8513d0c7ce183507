"""Study declarations: each study says, once, in ``tasks/<study>/study.py``, what the shared machinery
needs to know about it. The CLI, the Prefect flows and deployments, ``make`` and the tests iterate over
:func:`studies`, so adding a study touches no shared list.

A declaration imports nothing heavy (it is read to build ``mokuflow --help``).
"""
from __future__ import annotations

import functools
import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path

from tasks.core.errors import MokuflowError

MAX, MIN = "max", "min"  # a metric's direction: higher or lower is better

# Commands every study has, implemented once in the core: name -> (module, one-line help).
CORE_TOOLS = {
    "restore": ("tasks.core.restore", "restore an MLflow run's raw and clean data from DVC's cache (or a remote)"),
}


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
    - ``serving``: ``"module:Class"`` of the pyfunc model served as ``models:/<name>@champion``.
    - ``schema``: ``"module:Class"`` of the pydantic model that validates ``params[<name>]``.

    Every study also has the core's tools (:data:`CORE_TOOLS`, e.g. ``restore``) as stages outside
    the pipeline; its data folders are ``<name>.data.raw_dir`` and ``<name>.data.clean_dir``.
    """

    name: str
    stages: dict[str, str]
    metrics: dict[str, str]
    primary_metric: str
    monitor: tuple[str, str]
    serving: str
    schema: str
    tools: tuple[str, ...] = ()
    title: str = ""

    def __post_init__(self):
        for m, d in self.metrics.items():
            if d not in (MAX, MIN):
                raise ValueError(f"study {self.name}: metric {m!r} direction must be 'max' or 'min', got {d!r}")
        if self.primary_metric not in self.metrics:
            raise ValueError(f"study {self.name}: primary_metric {self.primary_metric!r} not in metrics")
        if self.monitor[1] not in (MAX, MIN):
            raise ValueError(f"study {self.name}: monitor mode must be 'max' or 'min'")
        if clash := set(self.stages) & set(CORE_TOOLS):
            raise ValueError(f"study {self.name}: stage names {sorted(clash)} are the core's tools")

    @property
    def pipeline(self) -> list[str]:
        """The stages `dvc repro` and the Prefect flow run, in order (``<name>-<stage>`` in dvc.yaml)."""
        return [s for s in self.stages if s not in self.tools]

    @property
    def commands(self) -> dict[str, str]:
        """Every ``mokuflow <name> <command>``: the study's stages, then the core's tools."""
        return {**self.stages, **{k: v for k, (_, v) in CORE_TOOLS.items()}}

    def higher_is_better(self, metric: str) -> bool:
        if metric not in self.metrics:
            raise MokuflowError(f"study {self.name}: unknown metric {metric!r} (one of {sorted(self.metrics)})")
        return self.metrics[metric] == MAX

    def stage_module(self, stage: str):
        if stage in CORE_TOOLS:
            return importlib.import_module(CORE_TOOLS[stage][0])
        if stage not in self.stages:
            raise MokuflowError(f"study {self.name}: unknown stage {stage!r} (one of {list(self.commands)})")
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
