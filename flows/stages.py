"""Each study stage as a Prefect task that asks DVC to run it.

A task runs ``dvc repro --single-item <study>-<stage>`` in the project folder, so a Prefect run updates
``dvc.lock`` and DVC's cache exactly as ``dvc repro`` does, and DVC decides what is up to date: a stage
whose code, params and inputs did not change ends in a ``Skipped`` (completed) state. The stage's own
output streams into the task's log. No torch import here: the stage runs in DVC's subprocess.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed

from tasks.core.provenance import dvc_exe
from tasks.core.tracking import FLOW_RUN_ENV


class StageFailed(RuntimeError):
    """A stage exited non-zero; the message is its last error line (mokuflow's one-line error)."""


def dvc(project: Path, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([dvc_exe(), *args], cwd=project, capture_output=True, text=True, timeout=timeout)


def changed(project: Path, stages: list[str]) -> dict[str, list]:
    """``dvc status`` of exactly these stages: ``{stage: what changed}`` for each one not up to date."""
    if not stages:
        return {}
    out = dvc(project, "status", "--json", *stages, timeout=600)
    if out.returncode != 0:
        raise StageFailed(f"dvc status {' '.join(stages)}: {_last_line(out.stderr + out.stdout)}")
    text = out.stdout.strip()
    return json.loads(text[text.index("{"):]) if "{" in text else {}


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    ours = [ln for ln in lines if ": error: " in ln]          # mokuflow's one line says what and where
    dvcs = [ln for ln in lines if ln.startswith("ERROR")]
    return (ours or dvcs or lines or ["(no output)"])[-1]


def repro(project: Path, stage: str, *, force: bool, logger, flow_run_id: str | None = None) -> float:
    """``dvc repro --single-item [--force] stage``, its output line by line into ``logger``; seconds."""
    cmd = [dvc_exe(), "repro", "--single-item", *(["--force"] if force else []), stage]
    # the stage commands (`mokuflow ...`) live beside this Python, whether or not its venv is activated
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, **({FLOW_RUN_ENV: flow_run_id} if flow_run_id else {})}
    t0 = time.perf_counter()
    tail: deque[str] = deque(maxlen=200)
    with subprocess.Popen(cmd, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL, text=True, bufsize=1) as proc:
        for line in proc.stdout:
            line = line.rstrip()
            if line:
                tail.append(line)
                logger.info(line)
    if proc.returncode != 0:
        raise StageFailed(f"{stage}: {_last_line(chr(10).join(tail))}")
    return time.perf_counter() - t0


def _run_stage(project: str, stage: str, force: bool = False, known_fresh: bool = False,
               flow_run_id: str | None = None):
    logger = get_run_logger()
    path = Path(project)
    if not force and (known_fresh or not changed(path, [stage])):
        logger.info(f"{stage}: skipped: up to date (code, params and inputs as dvc.lock records them)")
        return Completed(name="Skipped", message="skipped: up to date", data={"status": "skipped"})
    seconds = repro(path, stage, force=force, logger=logger, flow_run_id=flow_run_id)
    logger.info(f"{stage}: done in {seconds:.1f} s")
    return {"status": "ran", "seconds": round(seconds, 1)}


def stage_task(study: str, stage: str):
    """The task ``<study>-<stage>``: ``(project, stage, force, known_fresh, flow_run_id) -> summary``."""
    return task(_run_stage, name=f"{study}-{stage}", cache_policy=NO_CACHE, retries=0)
