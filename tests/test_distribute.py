"""The tf.distribute strategy: this machine's devices only; a cluster in TF_CONFIG is not read.

Keras 3's fit does not work under MultiWorkerMirroredStrategy (keras-team/keras#20585):
two workers on one machine both failed with "Attempt to convert a value (PerReplica:...)
with an unsupported type", so PawLab has no multi-machine path to take.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

from conftest import REPO

# What a second machine of a two-worker cluster would have in its environment.
NON_CHIEF_TF_CONFIG = json.dumps(
    {
        "cluster": {"worker": ["localhost:23456", "localhost:23457"]},
        "task": {"type": "worker", "index": 1},
    }
)

STRATEGIES = """
import os
from core.models.distribute import configure_devices, strategy_for_environment
configure_devices()
plain = strategy_for_environment()
os.environ["PAWLAB_STRATEGY"] = "mirrored"
mirrored = strategy_for_environment()
for strategy in (plain, mirrored):
    print(type(strategy).__name__, strategy.num_replicas_in_sync)
"""


def test_a_tf_config_does_not_change_the_strategy():
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "CUDA_VISIBLE_DEVICES": "",
        "PAWLAB_LOGICAL_CPUS": "2",
        "TF_CONFIG": NON_CHIEF_TF_CONFIG,
    }
    result = subprocess.run(
        [sys.executable, "-c", STRATEGIES], cwd=REPO, env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split("\n")[:2] == ["_DefaultDistributionStrategy 1", "MirroredStrategy 2"]


def test_no_code_reads_tf_config():
    reads = re.compile(r"""(environ|getenv)\W[^\n]*["']TF_CONFIG["']""")
    readers = [str(path.relative_to(REPO)) for path in (REPO / "core").rglob("*.py") if reads.search(path.read_text())]
    assert readers == []
