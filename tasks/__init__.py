"""Pipeline stages: one plain function per stage (params and paths in, files out).

Each stage module ``tasks/<study>/<stage>.py`` exposes ``run(params, **kwargs) -> dict``; the
``mokuflow`` CLI (what dvc.yaml runs) and the Prefect flows (flows/) both call that same function.
Heavy imports (torch, lightning, mlflow) happen inside the functions that need them.
"""
STUDIES = {
    "vqa": ["acquire", "clean", "train", "baseline", "evaluate", "report", "register"],
}
