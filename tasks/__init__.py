"""Pipeline stages: one plain function per stage (params and paths in, files out).

Each study is a package ``tasks/<study>/`` with a declaration (``study.py``, see
:mod:`tasks.core.study`) and one module per stage exposing ``run(params, **kwargs) -> dict``. The
``mokuflow`` CLI (what dvc.yaml runs) and the Prefect flows (flows/) both call that same function.
Shared machinery lives once, in :mod:`tasks.core`. Heavy imports (torch, lightning, mlflow) happen
inside the functions that need them.
"""
