"""One Prefect flow per declared study, ``<study>-pipeline``: the study's stages as Prefect tasks, each
run by DVC (:mod:`flows.stages`), so what Prefect runs is what DVC versions.

- DVC decides: a stage whose code, params and inputs did not change is skipped; ``force=True`` re-runs all.
- ``overrides`` (dotted params keys) make the run a DVC experiment: they are written into params.yaml
  for the run, the result is saved with ``dvc exp save`` (listed by ``dvc exp show``, brought back by
  ``dvc exp apply NAME``), and params.yaml is put back as it was.
- ``refresh_source=True`` (the scheduled retrain) re-reads the data source first (acquire forced):
  new data there re-runs clean ... register; identical data skips them all at once, saying so.

Each flow is also a module attribute (``flows.pipeline.vqa_pipeline``...), so deployments can name it
by module path and a worker or runner can import it. No torch import here.
"""
from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import State

from flows.stages import StageFailed, changed, dvc, stage_task
from tasks.core import MokuflowError, load_params, root, set_key
from tasks.core.provenance import data_paths, lock_file, locked_outs, read_lock
from tasks.core.study import Study, studies


def project_of(params: dict) -> Path:
    """The DVC project the flow runs in: the folder of params.yaml, which must hold dvc.yaml."""
    project = root(params)
    if Path(params["_file"]).name != "params.yaml" or not (project / "dvc.yaml").is_file():
        raise MokuflowError(f"{params['_file']}: the flow runs the stages with DVC, so it needs the project's "
                            f"params.yaml beside its dvc.yaml (none in {project})")
    return project


@contextlib.contextmanager
def overridden(params_file: Path, overrides: dict[str, Any]) -> Iterator[None]:
    """params.yaml with ``overrides`` applied (comments kept), restored byte for byte afterwards."""
    if not overrides:
        yield
        return
    from ruamel.yaml import YAML

    original = params_file.read_bytes()
    yaml = YAML()  # round-trip: the user's comments and layout survive
    doc = yaml.load(original)
    for key, value in overrides.items():
        set_key(doc, key, value)
    try:
        with open(params_file, "w", encoding="utf-8") as f:
            yaml.dump(doc, f)
        yield
    finally:
        params_file.write_bytes(original)


def experiment_name(study: str) -> str:
    """``<study>-<flow run name>`` as a valid git ref part (DVC experiments are git refs)."""
    run_name = flow_run.get_name() or time.strftime("%Y%m%d-%H%M%S")
    return re.sub(r"[^A-Za-z0-9_-]+", "-", f"{study}-{run_name}").strip("-")


def raw_summary(params: dict, study: str) -> str:
    lock = locked_outs(read_lock(lock_file(params)))
    raw = data_paths(params, study).get("raw_dir")
    return f"{raw} md5 {lock.get(raw, ('', 'unknown'))[1]}"


def build_flow(study: Study):
    """``<study>-pipeline(params_path=None, overrides=None, force=False, refresh_source=False)``."""

    def pipeline(params_path: str | None = None, overrides: dict[str, Any] | None = None,
                 force: bool = False, refresh_source: bool = False) -> dict:
        logger = get_run_logger()
        params = load_params(params_path, overrides)  # validates the overrides before anything runs
        project = project_of(params)
        stages = [f"{study.name}-{s}" for s in study.pipeline]
        run_id = flow_run.get_id()
        summaries: dict[str, Any] = {}
        with overridden(Path(params["_file"]), overrides or {}):
            todo = stages
            if refresh_source:  # the source may have new data whatever dvc.lock says: re-read it
                summaries[study.pipeline[0]] = stage_task(study.name, study.pipeline[0])(
                    str(project), stages[0], force=True, flow_run_id=run_id)  # forced: never a State
                todo = stages[1:]
            stale = changed(project, todo)  # one dvc status for the whole study
            if not force and not stale:
                why = (f"nothing changed at the source ({raw_summary(params, study.name)}, as before)"
                       if refresh_source else "code, params and data are as dvc.lock records them")
                logger.info(f"{study.name}: every stage up to date: {why}")
                summaries["reason"] = why
            ran = False
            for stage, name in zip(study.pipeline[len(stages) - len(todo):], todo):
                # DVC's first answer holds until an earlier stage of this run has run
                result = stage_task(study.name, stage)(str(project), name, force=force,
                                                       known_fresh=not ran and name not in stale,
                                                       flow_run_id=run_id)
                if isinstance(result, State):  # a skipped stage returns its Skipped state
                    result = result.result()
                ran = ran or result.get("status") == "ran"
                summaries[stage] = result
            if overrides:
                exp = experiment_name(study.name)
                saved = dvc(project, "exp", "save", "--force", "-n", exp, timeout=600)
                if saved.returncode != 0:
                    raise StageFailed(f"dvc exp save: {(saved.stderr or saved.stdout).strip()[-500:]}")
                logger.info(f"saved as DVC experiment {exp!r} (dvc exp show; dvc exp apply {exp}); "
                            "params.yaml is left as it was")
                summaries["experiment"] = exp
        return summaries

    pipeline.__name__ = pipeline.__qualname__ = f"{study.name}_pipeline"
    pipeline.__module__ = __name__
    pipeline.__doc__ = (
        f"{' -> '.join(study.pipeline)}, each stage run by DVC (skipped when up to date).\n\n"
        "``params_path``: the project's params.yaml (default: the nearest one from the cwd, or $MOKUFLOW_PARAMS);\n"
        f"``overrides``: dotted params keys for this run, saved as a DVC experiment "
        f"(e.g. ``{{\"{study.name}.train.max_epochs\": 2}}``);\n"
        "``force``: re-run every stage;\n"
        "``refresh_source``: re-read the data source first; the rest runs only if the data changed.")
    return flow(pipeline, name=f"{study.name}-pipeline", log_prints=True)


FLOWS = {name: build_flow(s) for name, s in studies().items()}
globals().update({f"{name}_pipeline": f for name, f in FLOWS.items()})
