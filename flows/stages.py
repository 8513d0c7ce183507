"""Wrap the plain stage functions of tasks/ as Prefect tasks (one implementation, two entry points)."""
from __future__ import annotations

import functools
import importlib

from prefect import task
from prefect.cache_policies import NO_CACHE


@functools.cache
def stage_task(study: str, stage: str):
    """``tasks.<study>.<stage>.run`` as a Prefect task named ``<study>-<stage>``.

    No caching: stage outputs are files that DVC and MLflow version, and params are not worth hashing.
    """
    fn = importlib.import_module(f"tasks.{study}.{stage}").run
    return task(fn, name=f"{study}-{stage}", cache_policy=NO_CACHE, retries=0)
