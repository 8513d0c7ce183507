"""HTML reports every study shares: jinja2 templates (``tasks/templates/<study>.html`` extending
``base.html`` there, outside the code folders so that editing a page re-runs only the report stages), matplotlib figures rendered in memory, files replaced atomically (images first, the
page last), and the files logged to the pipeline's MLflow run under ``report/``. Works offline: no
scripts or fonts from the network.
"""
from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

from tasks.core import atomic_path, log

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"


def render(study: str, **context) -> str:
    """Render ``tasks/templates/<study>.html`` (which may extend base.html)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(["html"]), undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = fmt
    # No wall-clock time on the page: DVC hashes it, and the same inputs must give the same page
    # (the MLflow run records when it ran).
    from tasks.core.tracking import git_commit

    sha, dirty = git_commit(TEMPLATES.parents[1])
    return env.get_template(f"{study}.html").render(
        generated=f"git commit {sha[:12]}{' (with uncommitted changes)' if dirty else ''}", **context)


def fmt(x, digits: int = 3) -> str:
    """A number for a table: 3 decimals, an en dash for None / NaN."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "–"
    return "–" if v != v else f"{v:.{digits}f}"


def figure(ncols: int = 1, width: float = 5.0, height: float = 4.2, nrows: int = 1):
    import matplotlib

    matplotlib.use("Agg")  # no display on servers / in CI
    import matplotlib.pyplot as plt

    return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)


def png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def write(out_dir: Path, page: str, images: dict[str, bytes], *, known_images: Iterable[str] = ()) -> Path:
    """Images, then ``index.html``, each replaced atomically; an image of ``known_images`` that this
    run did not produce (its input is gone) is removed. The folder is not swapped, so other files in it
    survive."""
    for name, data in images.items():
        with atomic_path(out_dir / name) as tmp:
            tmp.write_bytes(data)
    with atomic_path(out_dir / "index.html") as tmp:
        tmp.write_text(page, encoding="utf-8")
    for stale in set(known_images) - set(images):
        (out_dir / stale).unlink(missing_ok=True)
    log(f"report written to {out_dir / 'index.html'}")
    return out_dir / "index.html"


def log_to_run(params: dict, run_id: str | None, out_dir: Path, names: Iterable[str]) -> None:
    """Log the report files to the pipeline's MLflow run (when there is one) under ``report/``."""
    if run_id is None:
        log("no MLflow run recorded by the train stage: report not logged to MLflow")
        return
    from tasks.core.tracking import resume_run

    with resume_run(params, run_id) as mlflow:
        for name in names:
            mlflow.log_artifact(str(out_dir / name), artifact_path="report")
