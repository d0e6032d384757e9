"""The layers of core/ only import downward, and core/ never imports Streamlit.

    pages and CLI -> serving -> runs, review -> models -> data -> config, defaults, fileio

Every import counts, also the ones inside functions (they run sooner or
later); a module may import its own layer and the layers below it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LAYERS = {
    "core.config": 0,
    "core.csv_cells": 0,
    "core.defaults": 0,
    "core.fileio": 0,
    "core.netns": 0,
    "core.processes": 0,
    "core.data": 1,
    "core.models": 2,
    "core.runs": 3,
    "core.review": 3,
    "core.labeling": 3,
    "core.serving": 4,
    "core.cli": 5,
    "core.__main__": 5,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int | None:
    for prefix, layer in sorted(LAYERS.items(), key=lambda item: -len(item[0])):
        if module == prefix or module.startswith(prefix + "."):
            return layer
    return None


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


CORE_FILES = [path for path in sorted((REPO / "core").rglob("*.py")) if path != REPO / "core" / "__init__.py"]


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: module_name(p))
def test_core_imports_only_downward_and_never_streamlit(path):
    module = module_name(path)
    own = layer_of(module)
    assert own is not None, f"{module} belongs to no layer: add it to LAYERS"
    for imported in imports_of(path):
        assert not imported.startswith("streamlit"), f"{module} imports {imported}"
        target = layer_of(imported)
        if imported.startswith("core.") and target is not None:
            assert target <= own, f"{module} (layer {own}) imports {imported} (layer {target})"


def test_pages_hold_no_ml_logic():
    """Pages draw; TensorFlow and Keras are the engine's business, in the page scripts and their pieces alike."""
    paths = sorted((REPO / "pages").rglob("*.py")) + [REPO / "app.py"]
    assert len(paths) > 20, "the pages' pieces were not found"
    for path in paths:
        for imported in imports_of(path):
            assert not imported.startswith(("tensorflow", "keras", "sklearn", "cleanlab", "onnxruntime", "ray")), (
                f"{path.relative_to(REPO)} imports {imported}"
            )


def test_the_top_of_pages_holds_only_the_page_scripts_the_app_navigates():
    """Streamlit's hello app: pages/ shows the pages; their pieces live in sub-packages beside them."""
    navigated = set(re.findall(r'st\.Page\("(pages/[^"]+)"', (REPO / "app.py").read_text()))
    on_top = {f"pages/{path.name}" for path in (REPO / "pages").glob("*.py")}
    assert on_top == navigated
    for package in (REPO / "pages").iterdir():
        if package.is_dir() and package.name != "__pycache__":
            assert package.name.startswith("_"), f"{package.name} would shadow the page pages.{package.name}"
            assert (package / "__init__.py").is_file()
