"""The architecture rules, checked: models/ runs on a bare GPU box, flows/ and the CLI stay light."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted((REPO / "models").rglob("*.py")), ids=lambda p: p.name)
def test_models_import_no_orchestration_or_tracking(path):
    bad = _imports(path) & {"prefect", "mlflow", "dvc", "tasks", "flows", "yaml", "torchvision"}
    assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_flows_import_no_torch():
    mods = _modules_after("import flows.pipeline, flows.serve")
    assert "prefect" in mods and "torch" not in mods and "lightning" not in mods


def test_cli_builds_without_heavy_imports():
    """Every stage module is imported to build `mokuflow --help`: none may pull torch, mlflow or cv2."""
    mods = _modules_after("from tasks.cli import top_parser; top_parser()")
    assert not mods & {"torch", "lightning", "mlflow", "cv2", "prefect"}
