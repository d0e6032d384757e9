"""Helpers for tests that train tiny runs through the job manager."""

from __future__ import annotations

import time
from pathlib import Path

from core.runs.recipes import make_config
from core.runs.store import RunState, read_status

# Seconds; a worker on a loaded machine spends most of its first ones importing TensorFlow.
WORKER_TIMEOUT = 180


def config(data, epochs=2, **kwargs):
    """A tiny cnn run: 32 px, batches of 8."""
    return make_config(data, "cnn", epochs, **(dict(image_size=32, batch_size=8) | kwargs))


def wait_for(condition, timeout=WORKER_TIMEOUT, what="condition", every=0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def state(run_dir) -> RunState:
    return read_status(run_dir).state


def log_of(run_dir) -> str:
    path = Path(run_dir) / "log.txt"
    return path.read_text()[-3000:] if path.exists() else "(no log)"
