"""Progress for long work: one logger (``mokuflow``) that reaches the terminal, DVC and Prefect logs."""
from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator

LOGGER = logging.getLogger("mokuflow")


def log(msg: str) -> None:
    """One line to the ``mokuflow`` logger: stderr in the terminal and in `dvc repro`; in Prefect's
    flow-run logs too (prefect.toml lists it under ``logging.extra_loggers``)."""
    if not LOGGER.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[mokuflow] %(message)s"))
        LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.INFO)
    LOGGER.info(msg)


def progress(items: Iterable, desc: str, total: int | None = None) -> Iterator:
    """tqdm when on a terminal, a log line every ~10% otherwise (CI, DVC, Prefect logs)."""
    items = list(items) if total is None and not hasattr(items, "__len__") else items
    n = total if total is not None else len(items)  # type: ignore[arg-type]
    if sys.stderr.isatty():
        from tqdm import tqdm

        yield from tqdm(items, desc=desc, total=n)
        return
    step = max(1, n // 10)
    t0 = time.perf_counter()
    for i, x in enumerate(items, 1):
        yield x
        if i % step == 0 or i == n:
            log(f"{desc}: {i}/{n} ({time.perf_counter() - t0:.1f} s)")


def ci_text(stat: dict) -> str:
    """``{value, ci_low, ci_high}`` as ``0.512 [0.430, 0.601]`` (n/a where undefined), for log lines."""
    f = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    return f"{f(stat['value'])} [{f(stat.get('ci_low'))}, {f(stat.get('ci_high'))}]"
