"""Shared set-up for benchmark scripts: where the real photos and weights are."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def shared_dir() -> Path:
    path = Path(os.environ.get("PAWLAB_SHARED", REPO.parent / "shared")).resolve()
    if not (path / "data" / "cats_and_dogs").is_dir():
        sys.exit(f"shared data not found at {path}; set PAWLAB_SHARED")
    return path


def cats_and_dogs() -> Path:
    return shared_dir() / "data" / "cats_and_dogs"


def use_temp_homes() -> Path:
    """A fresh PAWLAB_HOME and a KERAS_HOME holding the shared ImageNet weights (every size there is)."""
    home = Path(tempfile.mkdtemp(prefix="pawlab-bench-"))
    os.environ.setdefault("PAWLAB_HOME", str(home / "pawlab"))
    keras_home = home / "keras"
    (keras_home / "models").mkdir(parents=True)
    for weights in sorted((shared_dir() / "weights").glob("*.h5")):
        (keras_home / "models" / weights.name).symlink_to(weights)
    os.environ["KERAS_HOME"] = str(keras_home)
    return home


def table(rows: list[dict], columns: list[str]) -> str:
    """A Markdown table, so results paste straight into the README."""

    def cell(value):
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)
