"""HTML reports every study shares: jinja2 templates (``tasks/<study>/templates/`` extending the core's
``base.html``), matplotlib figures rendered in memory, files replaced atomically (images first, the
page last), and the files logged to the pipeline's MLflow run under ``report/``. Works offline: no
scripts or fonts from the network.
"""
from __future__ import annotations

import datetime as _dt
import io
from collections.abc import Iterable
from pathlib import Path

from tasks.core import atomic_path, log

CORE_TEMPLATES = Path(__file__).resolve().parent / "templates"


def render(study: str, template: str, **context) -> str:
    """Render ``tasks/<study>/templates/<template>`` (which may extend the core's base.html)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(CORE_TEMPLATES.parents[1] / study / "templates"), str(CORE_TEMPLATES)]),
        autoescape=jinja2.select_autoescape(["html"]), undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = fmt
    return env.get_template(template).render(
        generated=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), **context)


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
