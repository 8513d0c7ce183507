"""The study-generic core: everything a study's stages share, in one place.

Light plumbing (no torch, mlflow or prefect import) is re-exported here, so a stage writes
``from tasks.core import MokuflowError, atomic_dir, log, resolve``. The heavier jobs are submodules
imported where needed: :mod:`tasks.core.study` (declarations), :mod:`tasks.core.tracking` (MLflow),
:mod:`tasks.core.provenance` (DVC hashes, data version), :mod:`tasks.core.restore` (a run's data back),
:mod:`tasks.core.training` (Lightning runs), :mod:`tasks.core.register`, :mod:`tasks.core.serving`,
:mod:`tasks.core.report`, :mod:`tasks.core.download`, :mod:`tasks.core.schema`.
"""
from tasks.core.errors import MokuflowError
from tasks.core.io import (
    atomic_dir,
    atomic_path,
    dvc_dir_hash,
    file_hash,
    file_md5,
    link_or_copy,
    read_json,
    write_csv,
    write_json,
)
from tasks.core.logs import ci_text, log, progress
from tasks.core.params import (
    find_params,
    flatten,
    load_params,
    parse_override,
    portable,
    public,
    relative,
    resolve,
    root,
    set_key,
)

__all__ = ["MokuflowError", "atomic_dir", "atomic_path", "dvc_dir_hash", "file_hash", "file_md5", "link_or_copy",
           "read_json", "write_csv", "write_json", "ci_text", "log", "progress", "find_params", "flatten",
           "load_params", "parse_override", "portable", "public", "relative", "resolve", "root", "set_key"]
