"""Register the trained model in MLflow; promote it to ``champion`` only if it beats the current one.

In the pipeline's MLflow run (``artifacts/vqa/train/run.json``): log ``model.pt`` as the serving pyfunc
(:mod:`tasks.vqa.serving`), register a new version of ``vqa.register.model_name`` and give it the alias
``challenger``. Then both the new version and the current ``champion`` are re-scored *through their
registered pyfunc* (``models:/<name>/<version>``) on today's held-out test split, so they are compared
on the same videos and labels, whatever data each was evaluated on when it was trained. The alias
``champion`` moves to the new version only if its ``vqa.register.metric`` beats the champion's by more
than ``vqa.register.min_improvement`` (or if there is no champion). Aliases only, never stages.

Writes ``<vqa.register.out_dir>/decision.json`` and logs it, the decision tags and the scores to the run.
Re-running (``dvc repro``) registers another version: versions are cheap, aliases carry the meaning.
"""
from __future__ import annotations

import math
from pathlib import Path

from tasks.common import MokuflowError, log, read_json, resolve, write_json
from tasks.vqa.data import test_items

CHAMPION = "champion"
CHALLENGER = "challenger"
LOWER_IS_BETTER = {"rmse"}


def run(params: dict, **kwargs) -> dict:
    from mlflow import MlflowClient

    from tasks.tracking import current_run_id, resume_run
    from tasks.vqa.serving import log_pyfunc

    cfg = params["vqa"]["register"]
    name = str(cfg.get("model_name") or "vqa")
    metric = _metric_name(cfg.get("metric", "srcc"))
    min_improvement = float(cfg.get("min_improvement") or 0.0)
    model_pt = resolve(params, params["vqa"]["train"]["out_dir"]) / "model.pt"
    if not model_pt.is_file():
        raise MokuflowError(f"{model_pt}: model file not found (run the train stage first)")
    run_id = current_run_id(params, "vqa")
    items = test_items(params)

    with resume_run(params, run_id) as mlflow:
        client = MlflowClient()
        run_tags = client.get_run(run_id).data.tags
        previous = _alias_version(client, name, CHAMPION)  # read before the new version exists
        mv = log_pyfunc(params, model_pt, registered_model_name=name)
        client.set_registered_model_alias(name, CHALLENGER, mv.version)
        log(f"registered {name} version {mv.version} as {CHALLENGER}")

        new_score = _score(f"models:/{name}/{mv.version}", items, metric)
        old_score = _score(f"models:/{name}/{previous}", items, metric) if previous else None
        promote, reason = decide(new_score, old_score, metric=metric, min_improvement=min_improvement)
        if promote:
            client.set_registered_model_alias(name, CHAMPION, mv.version)
        champion = mv.version if promote else previous
        log(f"{'promoted' if promote else 'kept'}: {reason}")

        _tag_version(client, params, name, mv.version, run_id=run_id, run_tags=run_tags,
                     metric=metric, score=new_score)
        decision = {
            "model_name": name,
            "decision": "promoted" if promote else "kept",
            "reason": reason,
            "metric": metric,
            "min_improvement": min_improvement,
            "challenger_version": str(mv.version),
            "challenger_score": new_score,
            "previous_champion_version": previous,
            "previous_champion_score": old_score,
            "champion_version": str(champion),
            "champion_uri": f"models:/{name}@{CHAMPION}",
            "n_test": int(len(items)),
            "mlflow_run_id": run_id,
            "data_version": run_tags.get("data_version"),
            "git_commit": run_tags.get("git_commit"),
        }
        mlflow.set_tags({
            "register_decision": decision["decision"],
            "register_model_name": name,
            "registered_version": str(mv.version),
            "champion_version": str(champion),
            "previous_champion_version": str(previous or "none"),
        })
        mlflow.log_metrics({k: v for k, v in {f"challenger_{metric}": new_score,
                                              f"champion_{metric}": old_score}.items()
                            if v is not None and math.isfinite(v)})
        out = resolve(params, cfg["out_dir"]) / "decision.json"
        write_json(out, decision)
        mlflow.log_artifact(str(out), artifact_path="register")
    return decision


# ------------------------------------------------------------------------------------- decision

def decide(new: float, old: float | None, *, metric: str, min_improvement: float) -> tuple[bool, str]:
    """(promote?, why). NaN (e.g. constant predictions) counts as worse than any finite score."""
    if old is None:
        return True, "no champion yet"
    if not math.isfinite(new):
        return False, f"challenger {metric} is not finite"
    if not math.isfinite(old):
        return True, f"champion {metric} is not finite"
    gain = (old - new) if metric in LOWER_IS_BETTER else (new - old)
    verdict = "beats" if gain > min_improvement else "does not beat"
    return gain > min_improvement, (f"challenger {metric} {new:.4f} {verdict} champion {old:.4f} "
                                    f"by more than {min_improvement:g} (gain {gain:+.4f})")


def _metric_name(metric) -> str:
    from models.vqa.metrics import METRICS

    m = str(metric).lower()
    if m not in METRICS:
        raise MokuflowError(f"params vqa.register.metric: {metric!r} is not one of {list(METRICS)}")
    return m


# ------------------------------------------------------------------------------------- scoring

def _predict(model_uri: str, paths: list[str]):
    """Scores of the registered pyfunc, loaded as a user would load it."""
    import mlflow
    import pandas as pd

    log(f"scoring {model_uri} on {len(paths)} test videos")
    served = mlflow.pyfunc.load_model(model_uri)
    return served.predict(pd.DataFrame({"video_path": paths}))["quality"].to_numpy(dtype=float)


def _score(model_uri: str, items, metric: str) -> float:
    from models.vqa import metrics

    pred = _predict(model_uri, list(items["path"]))
    return float(getattr(metrics, metric)(items["quality"].to_numpy(dtype=float), pred))


def _alias_version(client, name: str, alias: str) -> str | None:
    """The version an alias points to, or None (no such model or alias)."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def _tag_version(client, params: dict, name: str, version, *, run_id: str, run_tags: dict,
                 metric: str, score: float) -> None:
    """Make a version traceable: data version, commit, run and its held-out scores."""
    tags = {k: run_tags[k] for k in ("data_version", "git_commit", "git_dirty") if k in run_tags}
    tags["mlflow_run_id"] = run_id
    tags[f"test_{metric}"] = f"{score:.6f}"
    metrics_file = resolve(params, params["vqa"]["evaluate"]["out_dir"]) / "metrics.json"
    if metrics_file.is_file():  # evaluate's numbers with CIs, for the registry UI
        stdam = read_json(metrics_file).get("stdam", {})
        for m, v in stdam.items():
            if isinstance(v, dict) and isinstance(v.get("value"), (int, float)):
                tags[f"eval_{m}"] = f"{v['value']:.6f}"
    for k, v in tags.items():
        client.set_model_version_tag(name, str(version), k, str(v))
