"""Parameter counts of every architecture, without TensorFlow in the caller.

Counting parameters means building the model, and building needs TensorFlow,
which takes seconds to import and holds Python's GIL while it does. The Train
page shows counts next to its model picker, so they are computed in a child
Python process (``python -m core.models.param_counts CLASSES SIZE``) and kept on
disk in ``cache_dir/param_counts.json`` (keyed by the models' source too):
once counted, a count is read back instantly, across server restarts.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from core.config import get_settings
from core.fileio import FileLock, read_json, write_json
from core.processes import REPO_ROOT, child_environment

ZOO_FILE = Path(__file__).resolve().with_name("zoo.py")
# Hex digits of zoo.py's hash that key the counts.
FINGERPRINT_CHARS = 12
# Building all six models in a child process takes under a minute on two busy cores.
COUNT_TIMEOUT_SECONDS = 300
# The end of the child's stderr that a failure message quotes.
ERROR_TAIL_CHARS = 500
# Counting is not urgent: the child gives way to training runs and the app.
CHILD_NICENESS = 10


def _cache_file() -> Path:
    return get_settings().cache_dir / "param_counts.json"


@functools.lru_cache(maxsize=1)
def _models_fingerprint() -> str:
    # Counts belong to one definition of the models: an edited core/models/zoo.py
    # (a layer added) must not be answered from the old counts.
    return hashlib.sha256(ZOO_FILE.read_bytes()).hexdigest()[:FINGERPRINT_CHARS]


def _key(arch: str, num_classes: int, image_size: int) -> str:
    return f"{_models_fingerprint()}/{arch}/{num_classes}/{image_size}"


def _read_cache(path: Path | None = None) -> dict[str, int]:
    cached = read_json(path or _cache_file())
    return cached.value if cached.ok else {}  # missing or damaged: count again


def cached_counts(archs, num_classes: int, image_size: int) -> dict[str, int]:
    """{arch: parameters} for those of ``archs`` counted already."""
    cache = _read_cache()
    keys = {arch: _key(arch, num_classes, image_size) for arch in archs}
    return {arch: cache[key] for arch, key in keys.items() if key in cache}


def count_in_subprocess(
    archs, num_classes: int, image_size: int, timeout: float = COUNT_TIMEOUT_SECONDS
) -> dict[str, int]:
    """Count ``archs``' parameters in a child process, remember them on disk, return them.

    Raises RuntimeError with the child's last output lines if it fails.
    """
    # The cache this call belongs to, fixed now: the settings may change while the
    # child counts (a page's background thread outlives the session that asked).
    cache_file = _cache_file()
    known = cached_counts(archs, num_classes, image_size)
    missing = [arch for arch in archs if arch not in known]
    if not missing:
        return known
    env = child_environment()
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["CUDA_VISIBLE_DEVICES"] = ""  # counting needs no accelerator; leave it to training
    result = subprocess.run(
        [sys.executable, "-m", "core.models.param_counts", str(num_classes), str(image_size), *missing],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(f"Counting parameters failed: {result.stderr.strip()[-ERROR_TAIL_CHARS:]}")
    counts = json.loads(result.stdout.strip().splitlines()[-1])
    _remember(cache_file, counts, num_classes, image_size)
    return {**known, **counts}


def _remember(path: Path, counts: dict[str, int], num_classes: int, image_size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path.with_suffix(".lock"), what="the parameter counts"):  # two pages at once
        cache = _read_cache(path)
        cache.update({_key(arch, num_classes, image_size): count for arch, count in counts.items()})
        write_json(path, cache)


def main(argv: list[str]) -> int:
    with contextlib.suppress(OSError):
        os.nice(CHILD_NICENESS)
    from core.models.zoo import ARCHITECTURES, count_params

    num_classes, image_size, *archs = argv
    counts = {arch: count_params(arch, int(num_classes), int(image_size)) for arch in archs or ARCHITECTURES}
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
