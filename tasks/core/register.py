"""Register a study's trained model in MLflow; promote it to ``champion`` only if it beats the current one.

In the pipeline's MLflow run (``<train.out_dir>/run.json``): log the model file as the study's serving
pyfunc, register a new version of ``<study>.register.model_name`` and give it the alias ``challenger``.
Then the new version and the current ``champion`` are re-scored *through their registered pyfunc*
(``models:/<name>/<version>``) by the study's ``score(model_uri) -> float`` on today's held-out split,
so both are compared on the same data whatever each was evaluated on when trained. ``champion`` moves
to the new version only if it beats the champion's score, in the metric's declared direction, by more
than ``<study>.register.min_improvement`` (or if there is no champion). A champion that this code
cannot load or run (saved by an older network definition) is compared by the score recorded on its
version when it was registered, and the decision says so. Aliases only, never stages.

Writes ``<study>.register.out_dir/decision.json`` and logs it, the decision tags and scores to the run.
"""
from __future__ import annotations

import math
from collections.abc import Callable

from tasks.core import MokuflowError, log, resolve, tracking, write_json
from tasks.core.study import Study

CHAMPION = "champion"
CHALLENGER = "challenger"


def metric_of(params: dict, study: Study) -> str:
    """``<study>.register.metric``, checked against the study's declared metrics."""
    given = str(params[study.name]["register"].get("metric") or study.primary_metric)
    by_lower = {m.lower(): m for m in study.metrics}  # case-insensitive: "ap" and "AP" both name AP
    if given.lower() not in by_lower:
        raise MokuflowError(f"{params.get('_file', 'params.yaml')}: {study.name}.register.metric: "
                            f"{given!r} is not one of {list(study.metrics)}")
    return by_lower[given.lower()]


def register(params: dict, study: Study, *, model_file, score: Callable[[str], float], n_eval: int,
             eval_metrics: dict[str, float] | None = None) -> dict:
    """Log + register + alias; returns the decision (also written to decision.json)."""
    from mlflow import MlflowClient

    from tasks.core.serving import log_pyfunc
    from tasks.core.tracking import current_run_id, resume_run

    cfg = params[study.name]["register"]
    name = str(cfg.get("model_name") or study.name)
    metric = metric_of(params, study)
    min_improvement = float(cfg.get("min_improvement") or 0.0)
    if not model_file.is_file():
        raise MokuflowError(f"{model_file}: model file not found (run the train stage first)")
    run_id = current_run_id(params, study.name)

    with resume_run(params, run_id) as mlflow:
        client = MlflowClient()
        tags = client.get_run(run_id).data.tags
        previous = alias_version(client, name, CHAMPION)  # read before the new version exists
        mv = log_pyfunc(params, study, model_file, registered_model_name=name)
        client.set_registered_model_alias(name, CHALLENGER, mv.version)
        log(f"registered {name} version {mv.version} as {CHALLENGER}")

        new = float(score(f"models:/{name}/{mv.version}"))
        old, scored_how = (_champion_score(client, name, previous, metric, score) if previous else (None, None))
        promote, reason = decide(new, old, metric=metric, higher_is_better=study.higher_is_better(metric),
                                 min_improvement=min_improvement)
        if scored_how and scored_how != "re-scored":
            reason = f"{reason}; {scored_how}"
        if promote:
            client.set_registered_model_alias(name, CHAMPION, mv.version)
        champion = mv.version if promote else previous
        log(f"{'promoted' if promote else 'kept'}: {reason}")

        version_tags = {k: tags[k] for k in ("data_version", "git_commit", "git_dirty") if k in tags}
        version_tags |= {"mlflow_run_id": run_id, f"test_{metric}": f"{new:.6f}"}
        version_tags |= {f"eval_{k}": f"{v:.6f}" for k, v in (eval_metrics or {}).items()
                         if isinstance(v, (int, float)) and math.isfinite(v)}
        for k, v in version_tags.items():
            client.set_model_version_tag(name, str(mv.version), k, str(v))

        decision = {
            "model_name": name, "decision": "promoted" if promote else "kept", "reason": reason,
            "metric": metric, "higher_is_better": study.higher_is_better(metric),
            "min_improvement": min_improvement,
            "challenger_version": str(mv.version), "challenger_score": new,
            "previous_champion_version": previous, "previous_champion_score": old,
            "previous_champion_scored": scored_how,
            "champion_version": str(champion), "champion_uri": f"models:/{name}@{CHAMPION}",
            "n_test": int(n_eval), "mlflow_run_id": run_id,
            "data_version": tags.get("data_version"), "git_commit": tags.get("git_commit"),
        }
        mlflow.set_tags({"register_decision": decision["decision"], "register_model_name": name,
                         "registered_version": str(mv.version), "champion_version": str(champion),
                         "previous_champion_version": str(previous or "none")})
        mlflow.log_metrics(tracking.finite({f"challenger_{metric}": new, f"champion_{metric}": old}))
        out = resolve(params, cfg["out_dir"]) / "decision.json"
        write_json(out, decision)
        mlflow.log_artifact(str(out), artifact_path="register")
    tracking.log_provenance(params, study.name, run_id, tags=False)  # dvc.lock with every stage so far
    return decision


def _champion_score(client, name: str, version: str, metric: str, score: Callable[[str], float]) -> tuple[float, str]:
    """(score, how) of the current champion: re-scored through its pyfunc ("re-scored"), or, when this
    code cannot load or run it (a model saved by an older network definition), the ``test_<metric>``
    recorded on the version when it was registered; NaN when there is none (the challenger then wins)."""
    try:
        return float(score(f"models:/{name}/{version}")), "re-scored"
    except Exception as e:  # noqa: BLE001 - any failure of an old model must not block registering a new one
        why = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        recorded = client.get_model_version(name, version).tags.get(f"test_{metric}")
        how = (f"champion v{version} cannot be re-scored by this code ({why}): compared with the test_{metric} "
               f"recorded at its registration" + ("" if recorded else ", which is missing"))
        log(f"register: {how}")
        try:
            return (float(recorded) if recorded else float("nan")), how
        except ValueError:
            return float("nan"), how


def decide(new: float, old: float | None, *, metric: str, higher_is_better: bool,
           min_improvement: float) -> tuple[bool, str]:
    """(promote?, why). NaN (e.g. constant predictions) counts as worse than any finite score."""
    if old is None:
        return True, "no champion yet"
    if not math.isfinite(new):
        return False, f"challenger {metric} is not finite"
    if not math.isfinite(old):
        return True, f"champion {metric} is not finite"
    gain = (new - old) if higher_is_better else (old - new)
    verdict = "beats" if gain > min_improvement else "does not beat"
    return gain > min_improvement, (f"challenger {metric} {new:.4f} {verdict} champion {old:.4f} "
                                    f"by more than {min_improvement:g} (gain {gain:+.4f})")


def alias_version(client, name: str, alias: str) -> str | None:
    """The version an alias points to, or None (no such model or alias)."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None
