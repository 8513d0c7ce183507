"""Serve every study's deployments from one background process (Prefect's Runner, no worker needed).

    python -m flows.serve start   # start in the background, return once the deployments are registered
    python -m flows.serve stop    # stop what `start` started
    python -m flows.serve run     # serve in the foreground (what `start` runs)
    python -m flows.serve deploy --pool gpu   # the same deployments on a work pool (scale out)

Deployments, per study: ``<study>-pipeline/<study>`` (on demand) and ``<study>-pipeline/<study>-retrain``
(cron from params.yaml ``<study>.schedule``; re-reads the data source and re-runs clean ... register
only when the data changed). To scale out, ``deploy``
puts the same deployments on a Prefect work pool (created as a ``process`` pool if missing); then
``prefect worker start --pool NAME`` on each machine runs them (README, "Scale out").
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tasks.core import MokuflowError, load_params, root

RUN_DIR = ".run"  # pid + log of the background process, under the repo root


def flows_by_study() -> dict:
    from flows.pipeline import FLOWS

    return FLOWS


def deployment_names() -> list[str]:
    return [f"{study}-pipeline/{name}" for study in flows_by_study()
            for name in (study, f"{study}-retrain")]


def deployment_specs(params: dict):
    """(study, flow, deployment settings) for each study's two deployments: on demand, and the
    scheduled retrain that picks up new data at the source. One definition for `make serve` and for
    work pools."""
    from prefect.schedules import Cron

    for study, flow in flows_by_study().items():
        sched = params[study]["schedule"]
        base = {"params_path": params["_file"]}
        yield study, flow, dict(
            name=study, parameters=base, tags=[study, "mokuflow"],
            description=f"The {study} pipeline on demand, stage by stage through DVC (up-to-date stages are skipped; "
                        "force=true re-runs all; overrides become a DVC experiment).")
        yield study, flow, dict(
            name=f"{study}-retrain", parameters={**base, "refresh_source": True}, tags=[study, "mokuflow", "retrain"],
            schedules=[Cron(sched["retrain_cron"], timezone=sched.get("timezone") or "UTC")],
            description=f"Scheduled retraining of {study}: re-reads the data source; clean ... register re-run "
                        "only if the data changed (or force=true).")


def build_deployments(params: dict) -> list:
    from prefect.deployments.runner import EntrypointType

    # by module path, so the runner imports the installed package whatever its working directory
    return [flow.to_deployment(entrypoint_type=EntrypointType.MODULE_PATH, **spec)
            for _, flow, spec in deployment_specs(params)]


def deploy_to_pool(params: dict, pool: str, pool_type: str = "process") -> list[str]:
    """Every study's two deployments on work pool ``pool``, code pulled from this project folder."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=pool, type=pool_type))
        except ObjectAlreadyExists:
            pass
    source = str(Path(__file__).resolve().parents[1])
    names = []
    for study, _, spec in deployment_specs(params):
        remote = flow.from_source(source=source, entrypoint=f"flows/pipeline.py:{study}_pipeline")
        remote.deploy(work_pool_name=pool, build=False, push=False, print_next_steps=False, ignore_warnings=True,
                      **spec)
        names.append(f"{study}-pipeline/{spec['name']}")
    print(f"deployed to work pool {pool!r}: " + ", ".join(names))
    return names


def serve_forever(params: dict) -> None:
    from prefect import serve

    # Started from a non-interactive shell, SIGINT may be ignored; Prefect turns SIGTERM into SIGINT,
    # so restore the default handler or `stop` could not end us gracefully.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # limit=1: one pipeline run at a time, since runs share the data and artifact folders.
    serve(*build_deployments(params), limit=1, query_seconds=2, print_starting_message=True)


def registered(names: list[str]) -> bool:
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            for name in names:
                client.read_deployment_by_name(name)
        return True
    except Exception:  # not yet registered, or the server is still starting
        return False


def _pid_file(params: dict) -> Path:
    return root(params) / RUN_DIR / "serve.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def start(params: dict, timeout: float = 120.0) -> None:
    pid_file = _pid_file(params)
    if pid_file.exists() and _alive(int(pid_file.read_text())):
        print(f"deployments already served (pid {pid_file.read_text().strip()})")
        return
    pid_file.parent.mkdir(exist_ok=True)
    log_path = pid_file.with_name("serve.log")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "flows.serve", "run", "--params", params["_file"]],
                                cwd=root(params), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    pid_file.write_text(str(proc.pid))
    names = deployment_names()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise MokuflowError(f"the deployment server exited (code {proc.returncode}); see {log_path}")
        if registered(names):
            print("ready: " + ", ".join(names))
            return
        time.sleep(1.0)
    raise MokuflowError(f"deployments not registered after {timeout:.0f} s; see {log_path}")


def stop(params: dict, grace: float = 15.0) -> None:
    pid_file = _pid_file(params)
    if not pid_file.exists():
        print("no deployment server running")
        return
    pid = int(pid_file.read_text())
    if _alive(pid):
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    print(f"stopped deployment server (pid {pid})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flows.serve", description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=["start", "stop", "run", "deploy"])
    ap.add_argument("--params", default=None)
    ap.add_argument("--pool", default=None, help="deploy: the work pool (created as a process pool if missing)")
    args = ap.parse_args(argv)
    if args.action == "deploy" and not args.pool:
        ap.error("deploy needs --pool NAME")
    try:
        params = load_params(args.params)
        if args.action == "deploy":
            deploy_to_pool(params, args.pool)
        else:
            {"start": start, "stop": stop, "run": serve_forever}[args.action](params)
    except MokuflowError as e:
        print(f"flows.serve {args.action}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
