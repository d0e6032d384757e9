"""What the person was working on: the dataset they chose last.

Kept in ``PAWLAB_HOME/workspace.json`` so a page reload, another page or a
server restart opens the same dataset again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from core.config import get_settings


def _file() -> Path:
    return get_settings().home / "workspace.json"


def _read() -> dict:
    try:
        return json.loads(_file().read_text())
    except (OSError, ValueError):
        return {}


def remember_dataset(root: str | os.PathLike) -> None:
    state = _read()
    state["dataset"] = str(Path(root).resolve())
    path = _file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, path)


def last_dataset() -> Path | None:
    """The dataset chosen last, if it still exists."""
    root = _read().get("dataset")
    if root and Path(root).is_dir():
        return Path(root)
    return None
