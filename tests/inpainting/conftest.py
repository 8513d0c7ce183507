"""Real inpainting fixtures (DAVIS sequences, ProPainter's bmx-trees), skipped with the reason when absent."""
from __future__ import annotations

import pytest

from tests.conftest import FIXTURES, write_tiny_params

INPAINTING = FIXTURES / "inpainting"
DAVIS = INPAINTING / "DAVIS"
BMX = INPAINTING / "object_removal" / "bmx-trees"
BMX_MASK = INPAINTING / "object_removal" / "bmx-trees_mask"
STAGES = ("acquire", "clean", "train", "evaluate", "report", "register")


def need(path):
    """``path`` if it exists, else skip the test naming what is missing."""
    if not path.exists():
        pytest.skip(f"real fixture {path} absent (../shared/fixtures not laid out here)")
    return path


@pytest.fixture
def davis():
    return need(DAVIS)


@pytest.fixture
def bmx():
    return need(BMX)


@pytest.fixture(scope="session")
def project(tmp_path_factory):
    """A tiny project run through every pipeline stage, once per test session (test_stages.py and the
    web page's tests share it: a registered ``inpainting`` champion); returns (params, {stage: summary})."""
    from tasks.core import load_params
    from tasks.core.study import get

    root = tmp_path_factory.mktemp("inpainting")
    params = load_params(write_tiny_params(root))
    study = get("inpainting")
    summaries = {stage: study.stage_module(stage).run(params) for stage in STAGES}
    return params, summaries
