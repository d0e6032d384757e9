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
import tempfile
from pathlib import Path

from core.config import get_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
ZOO_FILE = Path(__file__).resolve().with_name("zoo.py")


def _cache_file() -> Path:
    return get_settings().cache_dir / "param_counts.json"


@functools.lru_cache(maxsize=1)
def _models_fingerprint() -> str:
    # Counts belong to one definition of the models: an edited core/models/zoo.py
    # (a layer added) must not be answered from the old counts.
    return hashlib.sha256(ZOO_FILE.read_bytes()).hexdigest()[:12]


def _key(arch: str, num_classes: int, image_size: int) -> str:
    return f"{_models_fingerprint()}/{arch}/{num_classes}/{image_size}"


def _read_cache() -> dict[str, int]:
    try:
        return json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        return {}


def cached_counts(archs, num_classes: int, image_size: int) -> dict[str, int]:
    """{arch: parameters} for those of ``archs`` counted already."""
    cache = _read_cache()
    keys = {arch: _key(arch, num_classes, image_size) for arch in archs}
    return {arch: cache[key] for arch, key in keys.items() if key in cache}


def count_in_subprocess(archs, num_classes: int, image_size: int, timeout: float = 300) -> dict[str, int]:
    """Count ``archs``' parameters in a child process, remember them on disk, return them.

    Raises RuntimeError with the child's last output lines if it fails.
    """
    known = cached_counts(archs, num_classes, image_size)
    missing = [arch for arch in archs if arch not in known]
    if not missing:
        return known
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["CUDA_VISIBLE_DEVICES"] = ""  # counting needs no accelerator; leave it to training
    result = subprocess.run(
        [sys.executable, "-m", "core.models.param_counts", str(num_classes), str(image_size), *missing],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(f"Counting parameters failed: {result.stderr.strip()[-500:]}")
    counts = json.loads(result.stdout.strip().splitlines()[-1])
    _remember(counts, num_classes, image_size)
    return {**known, **counts}


def _remember(counts: dict[str, int], num_classes: int, image_size: int) -> None:
    path = _cache_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    cache = _read_cache()
    cache.update({_key(arch, num_classes, image_size): count for arch, count in counts.items()})
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".param_counts.", suffix=".tmp")
    with os.fdopen(fd, "w") as file:
        json.dump(cache, file, indent=1, sort_keys=True)
    os.replace(tmp, path)  # two pages counting at once: the last complete file wins


def main(argv: list[str]) -> int:
    # Counting is not urgent: give way to training runs and the app on a busy CPU.
    with contextlib.suppress(OSError):
        os.nice(10)
    from core.models.zoo import ARCHITECTURES, count_params

    num_classes, image_size, *archs = argv
    counts = {arch: count_params(arch, int(num_classes), int(image_size)) for arch in archs or ARCHITECTURES}
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
