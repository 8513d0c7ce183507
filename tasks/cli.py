"""``mokuflow <study> <stage> [options]``: the command line dvc.yaml runs; one sub-command per stage.

Every stage takes ``--params`` (default: the nearest params.yaml) and ``--set key=value`` overrides;
a stage may add its own options through ``add_arguments(parser)`` in its module.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import time

from tasks import STUDIES
from tasks.common import MokuflowError, load_params, log, parse_override


def stage_module(study: str, stage: str):
    return importlib.import_module(f"tasks.{study}.{stage}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mokuflow", description=__doc__.splitlines()[0])
    studies = parser.add_subparsers(dest="study", required=True, metavar="study")
    for study, stages in STUDIES.items():
        sp = studies.add_parser(study, help=f"the {study} study")
        st = sp.add_subparsers(dest="stage", required=True, metavar="stage")
        for stage in stages:
            mod = stage_module(study, stage)
            p = st.add_parser(stage, help=(mod.__doc__ or "").strip().splitlines()[0] if mod.__doc__ else None)
            p.add_argument("--params", default=None, help="params.yaml (default: nearest one from the cwd)")
            p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                           help="override a params key for this run, e.g. vqa.train.max_epochs=2")
            if hasattr(mod, "add_arguments"):
                mod.add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        overrides = dict(parse_override(s) for s in args.set)
        params = load_params(args.params, overrides)
        mod = stage_module(args.study, args.stage)
        extra = {k: v for k, v in vars(args).items()
                 if k not in ("study", "stage", "params", "set") and v is not None}
        t0 = time.perf_counter()
        summary = mod.run(params, **extra)
        log(f"{args.study} {args.stage}: done in {time.perf_counter() - t0:.1f} s")
    except MokuflowError as e:
        print(f"mokuflow {args.study} {args.stage}: error: {e}", file=sys.stderr)
        return 2
    if summary is not None:
        print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
