"""One Prefect flow per declared study, ``<study>-pipeline``, built from the study's declaration: the
same stage functions `dvc repro` runs, wrapped as Prefect tasks, in the declared order.

Each flow is also a module attribute (``flows.pipeline.vqa_pipeline``...), so deployments can name it
by module path and a worker or runner can import it. No torch import here.
"""
from __future__ import annotations

from typing import Any

from prefect import flow

from flows.stages import stage_task
from tasks.core import load_params
from tasks.core.study import Study, studies


def build_flow(study: Study):
    """``<study>-pipeline(params_path=None, overrides=None, acquire=True) -> {stage: summary}``."""

    def pipeline(params_path: str | None = None, overrides: dict[str, Any] | None = None,
                 acquire: bool = True) -> dict:
        params = load_params(params_path, overrides)
        summaries: dict[str, Any] = {}
        for stage in study.pipeline:
            if not acquire and stage in study.retrain_skips:
                continue
            summaries[stage] = stage_task(study.name, stage)(params)
        return summaries

    pipeline.__name__ = pipeline.__qualname__ = f"{study.name}_pipeline"
    pipeline.__module__ = __name__
    pipeline.__doc__ = (
        f"{' -> '.join(study.pipeline)}.\n\n"
        "``params_path`` defaults to the nearest params.yaml from the cwd (or $MOKUFLOW_PARAMS);\n"
        f"``overrides`` are dotted params keys for this run only (e.g. ``{{\"{study.name}.train.max_epochs\": 2}}``);\n"
        f"``acquire=False`` retrains on the current data (skips {', '.join(study.retrain_skips)}).")
    return flow(pipeline, name=f"{study.name}-pipeline", log_prints=True)


FLOWS = {name: build_flow(s) for name, s in studies().items()}
globals().update({f"{name}_pipeline": f for name, f in FLOWS.items()})
