"""The VQA pipeline as a Prefect flow: the same stage functions `dvc repro` runs, as Prefect tasks.

Deployments (flows/serve.py): ``vqa-pipeline/vqa`` runs everything; ``vqa-pipeline/vqa-retrain``
runs on the cron schedule in params.yaml (``vqa.schedule``) and retrains on the current data
(no new acquisition).
"""
from __future__ import annotations

from typing import Any

from prefect import flow

from flows.stages import stage_task
from tasks import STUDIES
from tasks.common import load_params

STUDY = "vqa"


@flow(name="vqa-pipeline", log_prints=True)
def vqa_pipeline(params_path: str | None = None, overrides: dict[str, Any] | None = None,
                 acquire: bool = True) -> dict:
    """acquire -> clean -> train -> baseline -> evaluate -> report -> register.

    ``params_path`` defaults to the nearest params.yaml from the cwd (or $MOKUFLOW_PARAMS);
    ``overrides`` are dotted params keys for this run only (e.g. ``{"vqa.train.max_epochs": 5}``);
    ``acquire=False`` retrains on the data already in ``vqa.data.raw_dir``.
    """
    params = load_params(params_path, overrides)
    summaries: dict[str, Any] = {}
    for stage in STUDIES[STUDY]:
        if stage == "acquire" and not acquire:
            continue
        summaries[stage] = stage_task(STUDY, stage)(params)
    return summaries


if __name__ == "__main__":
    vqa_pipeline()
