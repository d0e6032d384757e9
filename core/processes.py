"""Child processes of the engine: where they import ``core`` from.

Workers, the doctor, the export check and the parameter counter all run as
``python -m core...`` children (or as Ray workers), whatever the caller's
working directory; each gets this checkout on its PYTHONPATH and runs in it.
"""

from __future__ import annotations

import os
from pathlib import Path

import core

# The checkout a child imports ``core`` from.
REPO_ROOT = Path(core.__file__).resolve().parent.parent


def python_path() -> str:
    """PYTHONPATH for a child: this checkout first, then what was there already."""
    return os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))


def child_environment() -> dict[str, str]:
    """This process's environment, with PYTHONPATH pointing at this checkout."""
    return {**os.environ, "PYTHONPATH": python_path()}
