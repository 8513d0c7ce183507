"""Real inpainting fixtures (DAVIS sequences, ProPainter's bmx-trees), skipped with the reason when absent."""
from __future__ import annotations

import pytest

from tests.conftest import FIXTURES

INPAINTING = FIXTURES / "inpainting"
DAVIS = INPAINTING / "DAVIS"
BMX = INPAINTING / "object_removal" / "bmx-trees"
BMX_MASK = INPAINTING / "object_removal" / "bmx-trees_mask"


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
