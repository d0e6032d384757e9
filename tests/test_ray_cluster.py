"""PawLab on a Ray cluster: two nodes on loopback, runs pinned to each, a killed Ray worker.

The cluster runs inside a network namespace that has only loopback (see
tests/_ray_cluster.py), so no test traffic reaches any address but 127.0.0.1.
That needs root or unprivileged user namespaces; CI runs as root.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.netns import NetworkIsolationError

REPO = Path(__file__).resolve().parent.parent
SCENARIO_TIMEOUT = 480


@pytest.fixture(scope="module")
def outcome(tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("ray_cluster")
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("RAY_ADDRESS", None)
    finished = subprocess.run(
        [sys.executable, str(REPO / "tests" / "_ray_cluster.py"), str(work)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=SCENARIO_TIMEOUT,
    )
    result = work / "outcome.json"
    if not result.exists() and NetworkIsolationError.__name__ in finished.stderr and os.geteuid() != 0:
        pytest.skip("this machine allows no private network namespace (not root, user namespaces off)")
    assert result.exists(), finished.stderr[-4000:]
    return json.loads(result.read_text())


def test_the_cluster_sees_only_loopback(outcome):
    assert outcome["interfaces"] == ["lo"]
    assert set(outcome["listening"]) <= {"127.0.0.1", "::ffff:127.0.0.1", "::1"}


def test_a_run_pinned_to_each_node_completes_there_with_all_its_files(outcome):
    assert set(outcome["nodes"]) == {"node_a", "node_b"}
    for node, run in outcome["pinned"].items():
        assert run["state"] == "completed" and run["executor"] == "ray"
        assert run["ray_node"].endswith(outcome["nodes"][node]), (node, run["ray_node"])
        assert {
            "config.json",
            "facts.json",
            "split.json",
            "metrics.jsonl",
            "model.keras",
            "trust.json",
            "evaluation.json",
        } <= set(run["files"])
        assert run["metrics_lines"] == 2  # both epochs
    assert outcome["pinned"]["node_a"]["ray_node"] != outcome["pinned"]["node_b"]["ray_node"]


def test_the_runs_table_shows_the_node_and_the_cli_can_queue_onto_the_cluster(outcome):
    assert outcome["cli"]["exit"] == 0, outcome["cli"]["stderr"]
    assert "ray executor" in outcome["cli"]["stderr"]
    for run in outcome["pinned"].values():
        assert outcome["where"][run["id"]] == f"Ray node {run['ray_node']}"


def test_killing_the_ray_worker_interrupts_the_run_and_does_not_retry_it(outcome):
    killed = outcome["killed"]
    assert killed["state"] == "interrupted" and "Ray worker" in killed["error"]
    assert killed["seconds_to_notice"] < 30  # the launcher sees the task fail; no heartbeat wait


def test_ray_stop_leaves_no_process_behind(outcome):
    assert outcome["left_behind"] == []
