"""``mokuflow <study> <stage> [options]``: the command line dvc.yaml runs; one sub-command per stage.

Every stage takes ``--params`` (default: the nearest params.yaml) and ``--set key=value`` overrides;
a stage may add its own options through ``add_arguments(parser)`` in its module. Studies and stages
come from the declarations (tasks/<study>/study.py); only the stage that runs is imported.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from tasks.core import MokuflowError, load_params, log, parse_override
from tasks.core.study import CORE_TOOLS, Study, studies

PROG = "mokuflow"


def _first_line(text: str | None) -> str:
    # argparse %-formats help strings: a literal '%' in a docstring must not reach it unescaped.
    return ((text or "").strip().splitlines() or [""])[0].replace("%", "%%")


def top_parser() -> argparse.ArgumentParser:
    """``mokuflow <study> <stage>``: the choices, from the declarations alone (no stage imported)."""
    parser = argparse.ArgumentParser(prog=PROG, description=_first_line(__doc__))
    subs = parser.add_subparsers(dest="study", required=True, metavar="study")
    for name, study in studies().items():
        sp = subs.add_parser(name, help=study.title or f"the {name} study", description=study.title)
        st = sp.add_subparsers(dest="stage", required=True, metavar="stage")
        for stage, help_text in study.commands.items():
            st.add_parser(stage, help=help_text.replace("%", "%%"), add_help=False)
    return parser


def stage_parser(study: Study, stage: str):
    """The stage's own parser (its module imported here, and only here). Returns (parser, module)."""
    mod = study.stage_module(stage)
    p = argparse.ArgumentParser(prog=f"{PROG} {study.name} {stage}",
                                description=study.commands[stage].replace("%", "%%"))
    p.add_argument("--params", default=None, help="params.yaml (default: nearest one from the cwd)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override a params key for this run, e.g. {study.name}.train.max_epochs=2")
    if hasattr(mod, "add_arguments"):
        mod.add_arguments(p)
    return p, mod


TRACE_ENV = "MOKUFLOW_TRACE_IMPORTS"


def _trace_imports(study: str, stage: str) -> None:
    """With $MOKUFLOW_TRACE_IMPORTS=DIR, write DIR/<study>-<stage>.json: the project's source files
    this stage imported (the test that checks dvc.yaml lists each stage's real code reads them)."""
    folder = os.environ.get(TRACE_ENV)
    if not folder:
        return
    from pathlib import Path

    project = Path(__file__).resolve().parents[1]
    files = sorted({Path(m.__file__).resolve().relative_to(project).as_posix()
                    for m in list(sys.modules.values())
                    if getattr(m, "__file__", None) and Path(m.__file__).resolve().is_relative_to(project)})
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / f"{study}-{stage}.json").write_text(json.dumps(files, indent=1))


def _error(study: str, stage: str, e: BaseException) -> int:
    """The one stderr line of a failed stage (a message with line breaks is joined into one)."""
    print(f"{PROG} {study} {stage}: error: {' '.join(str(e).split())}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `<study> <stage>` first, so `--help` of one stage imports that stage only.
    head = [a for a in argv[:2] if not a.startswith("-")]
    if len(head) < 2:
        top_parser().parse_args(argv)  # prints help / usage errors and exits
        return 2
    study_name, stage = head
    top_parser().parse_args([study_name, stage])  # unknown study / stage: argparse's usage error
    study = studies()[study_name]
    try:
        parser, mod = stage_parser(study, stage)
    except MokuflowError as e:
        return _error(study_name, stage, e)
    args = parser.parse_args(argv[2:])
    try:
        overrides = dict(parse_override(s) for s in args.set)
        params = load_params(args.params, overrides, study=study_name)
        if not isinstance(params.get(study_name), dict):
            raise MokuflowError(f"{params.get('_file', 'params.yaml')}: no '{study_name}' section "
                                f"(the {study_name} stages read their settings from it)")
        extra = {k: v for k, v in vars(args).items() if k not in ("params", "set") and v is not None}
        if stage in CORE_TOOLS:  # implemented once for every study: told which one
            extra["study"] = study_name
        t0 = time.perf_counter()
        summary = mod.run(params, **extra)
        log(f"{study_name} {stage}: done in {time.perf_counter() - t0:.1f} s")
    except MokuflowError as e:
        return _error(study_name, stage, e)
    if summary is not None:
        print(json.dumps(summary, indent=2, default=str))
    _trace_imports(study_name, stage)
    return 0


if __name__ == "__main__":
    sys.exit(main())
