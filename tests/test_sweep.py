"""Sweeps: what a search may ask for, and a real 8-trial sweep on embedded Ray.

The embedded sweep runs as a user starts it (``python -m core sweep``): one
entry in the queue whose worker moves into a loopback-only network before it
starts Ray (core.netns). While it runs, the test looks at Ray's own servers
from outside: they live in another network namespace and listen on loopback
only.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import REPO, make_separable_dataset

from core.netns import network_namespace
from core.runs.recipes import TrainConfig, make_config, with_knobs
from core.runs.search import MAX_TRIALS, Cost, KnobSpace, SweepSpec
from core.runs.store import RunState, list_runs, read_config, read_facts, read_status, run_dirs
from core.runs.sweep import read_sweep_result, trials_of

SWEEP_TIMEOUT = 420
RAY_SERVERS = ("gcs_server", "raylet")


# --- what a search may ask for ----------------------------------------------------


def test_a_grid_is_crossed_and_trials_are_spread_over_it():
    spec = SweepSpec.from_grid(8, {"learning_rate": ["1e-3", "3e-4"], "head_units": ["0", "64"]})
    assert spec.grid_size == 4 and spec.samples_per_grid_point == 2 and spec.total_trials == 8
    assert spec.knobs["learning_rate"].values == (1e-3, 3e-4) and spec.knobs["learning_rate"].grid
    assert spec.knobs["dropout"].low == 0.0  # the default search fills in the other head knobs
    assert SweepSpec.from_grid(5, {"dropout": ["0.1", "0.2"]}).total_trials == 6  # rounded up


@pytest.mark.parametrize(
    "grid, message",
    [
        ({"momentum": ["0.9"]}, "Unknown knob 'momentum'"),
        ({"learning_rate": ["fast"]}, "'fast' is not a valid learning_rate"),
        ({"dropout": ["1.5"]}, "'1.5' is not a valid dropout"),
        ({"epochs": ["2.5"]}, "'2.5' is not a valid epochs"),
        ({"head_units": ["-1"]}, "'-1' is not a valid head_units"),
        ({"learning_rate": [str(n) for n in range(1, 30)]}, "At most 20 values"),
    ],
)
def test_a_bad_search_is_one_sentence(grid, message):
    with pytest.raises(ValueError, match=message):
        SweepSpec.from_grid(4, grid)


def test_the_number_of_trials_is_bounded():
    with pytest.raises(ValueError, match=f"1 to {MAX_TRIALS} trials"):
        SweepSpec.from_grid(MAX_TRIALS + 1, {})
    with pytest.raises(ValueError):
        SweepSpec(trials=0, knobs={"dropout": KnobSpace(low=0, high=0.5)})


def test_the_cost_of_a_trial_follows_the_knobs(tmp_path):
    data = make_separable_dataset(tmp_path / "data")

    def cost(arch, grid, **kwargs):
        return make_config(data, arch, search=SweepSpec.from_grid(4, grid), **kwargs).sweep_cost()

    assert cost("mobilenet_v2", {"learning_rate": ["1e-3", "1e-4"]}) == Cost.HEAD
    assert cost("mobilenet_v2", {"image_size": ["96", "160"]}) == Cost.FEATURES
    assert cost("mobilenet_v2", {"augment": ["none", "recommended"]}) == Cost.END_TO_END
    assert cost("mobilenet_v2_finetune", {"dropout": ["0.1", "0.3"]}) == Cost.HEAD
    assert cost("mobilenet_v2_finetune", {"dropout": ["0.1", "0.3"]}, fine_tune_epochs=2) == Cost.END_TO_END
    assert cost("cnn", {"learning_rate": ["1e-3", "1e-4"]}) == Cost.END_TO_END


def test_a_sweep_config_survives_its_file_and_trials_are_plain_runs(tmp_path):
    data = make_separable_dataset(tmp_path / "data")
    sweep = make_config(data, "mobilenet_v2", search=SweepSpec.from_grid(4, {"dropout": ["0.1", "0.3"]}))
    assert TrainConfig.from_dict(json.loads(json.dumps(sweep.to_dict()))) == sweep
    assert sweep.cpus == os.cpu_count()  # a sweep may use the machine; a run asks for one CPU
    assert make_config(data, "mobilenet_v2").cpus == 1.0

    trial = with_knobs(sweep, {"dropout": 0.3, "head_units": 128, "learning_rate": 3e-4}, sweep="S")
    assert (trial.sweep, trial.search, trial.head.dropout, trial.head.hidden_units) == ("S", None, 0.3, 128)
    assert trial.corrections == sweep.corrections  # the sweep's snapshot, not today's file
    with pytest.raises(ValueError, match="does not fine-tune"):
        with_knobs(sweep, {"fine_tune_layers": 20}, sweep="S")


def test_head_knobs_only_for_transfer_models_and_resources_are_checked(tmp_path):
    data = make_separable_dataset(tmp_path / "data")
    with pytest.raises(ValueError, match="no transfer head"):
        make_config(data, "cnn", dropout=0.3)
    with pytest.raises(ValueError, match="CPUs"):
        make_config(data, "cnn", cpus=0)
    with pytest.raises(ValueError, match="Ray resource name"):
        make_config(data, "cnn", ray_resources={"bad name!": 1})
    with pytest.raises(ValueError, match="positive amount"):
        make_config(data, "cnn", ray_resources={"node_a": 0})


def test_the_cli_refuses_a_bad_grid_and_queues_nothing(tmp_path, pawlab_home):
    data = make_separable_dataset(tmp_path / "data")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "core",
            "sweep",
            "--data",
            str(data),
            "--arch",
            "mobilenet_v2",
            "--grid",
            "learning_rate=fast",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "'fast' is not a valid learning_rate" in result.stderr
    assert list_runs() == []


# --- a real sweep on embedded Ray ----------------------------------------------------


def _ray_servers_seen(stop: threading.Event, seen: dict) -> None:
    """Every gcs_server/raylet process that appears: its network namespace and listeners."""
    while not stop.wait(0.5):
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and (entry / "comm").read_text().strip() in RAY_SERVERS:
                    listening = [
                        line.split()[1]
                        for table in ("tcp", "tcp6")
                        for line in (entry / "net" / table).read_text().splitlines()[1:]
                        if line.split()[3] == "0A"
                    ]
                    seen[entry.name] = (network_namespace(entry.name), listening)
            except OSError:
                continue


LOOPBACK_HEX = ("0100007F:", "0000000000000000FFFF00000100007F:", "00000000000000000000000001000000:")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, keras_home):
    work = tmp_path_factory.mktemp("sweep")
    data = make_separable_dataset(work / "data", per_class=10)
    env = {**os.environ, "PAWLAB_HOME": str(work / "home"), "KERAS_HOME": str(keras_home), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("RAY_ADDRESS", None)
    stop, seen = threading.Event(), {}
    watcher = threading.Thread(target=_ray_servers_seen, args=(stop, seen), daemon=True)
    watcher.start()
    started = time.time()
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "core",
                "sweep",
                "--data",
                str(data),
                "--arch",
                "mobilenet_v2",
                "--trials",
                "8",
                "--epochs",
                "3",
                "--cpus",
                "2",
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=SWEEP_TIMEOUT,
        )
    finally:
        stop.set()
        watcher.join()
    runs = work / "home" / "runs"
    return {
        "result": result,
        "seconds": time.time() - started,
        "seen": seen,
        "runs": runs,
        "sweep_dir": next(run for run in run_dirs(runs) if read_config(run).is_sweep),
    }


def test_an_embedded_sweep_of_8_trials_prints_the_best_config_last(sweep):
    result = sweep["result"]
    assert result.returncode == 0, result.stderr[-3000:]
    best = json.loads(result.stdout.strip().splitlines()[-1])
    assert best["config"]["arch"] == "mobilenet_v2" and best["config"]["sweep"] == ""
    assert read_status(sweep["sweep_dir"]).state == RunState.COMPLETED


def test_every_trial_is_a_run_of_the_sweep_and_asha_stops_the_worst(sweep):
    trials = trials_of(sweep["sweep_dir"])
    assert len(trials) == 8
    states = [read_status(trial).state for trial in trials]
    assert set(states) <= {RunState.COMPLETED, RunState.STOPPED}, states
    assert RunState.STOPPED in states  # ASHA cut some short
    result = read_sweep_result(sweep["sweep_dir"])
    assert [t.run for t in result.trials] == [trial.name for trial in trials]
    completed = [t for t in result.trials if t.state == RunState.COMPLETED]
    assert all(t.test_accuracy is not None and t.epochs == 3 for t in completed)
    assert all(t.epochs < 3 for t in result.trials if t.state == RunState.STOPPED)
    best = max(completed, key=lambda t: t.best_val_accuracy)
    assert result.best_run == best.run and result.ray == "embedded (loopback only)"
    knobs = {tuple(sorted(t.knobs.items())) for t in result.trials}
    assert len(knobs) == 8  # each trial tried other knobs
    assert all(set(t.knobs) == {"learning_rate", "dropout", "head_units"} for t in result.trials)


def test_embedded_ray_lives_in_its_own_loopback_only_network(sweep):
    seen = sweep["seen"]
    assert seen, "no Ray server was seen while the sweep ran"
    mine = network_namespace()
    for pid, (namespace, listening) in seen.items():
        assert namespace != mine, f"Ray server {pid} shares this machine's network"
        assert listening and all(address.startswith(LOOPBACK_HEX) for address in listening), listening


def test_the_sweep_took_one_slot_of_the_queue(sweep):
    runs = list_runs(sweep["runs"])
    assert sum(run.is_sweep for run in runs) == 1
    assert all(run.sweep == sweep["sweep_dir"].name for run in runs if not run.is_sweep)
    assert all(run.where.startswith("Ray node 127.0.0.1") for run in runs if not run.is_sweep)
    assert math.isfinite(sweep["seconds"])


# --- what the runs table says about where a run trains ------------------------------


def test_the_runs_table_says_where_each_run_trains_and_which_are_sweeps(tmp_path):
    from core.runs.store import Executor, create_run, update_status
    from pages._train import views

    data = make_separable_dataset(tmp_path / "data")
    local = create_run(make_config(data, "cnn", 1))
    sweep_dir = create_run(make_config(data, "mobilenet_v2", search=SweepSpec.from_grid(2, {})))
    trial = create_run(with_knobs(read_config(sweep_dir), {"dropout": 0.1}, sweep=sweep_dir.name))
    update_status(trial, state=RunState.RUNNING, executor=Executor.RAY, ray_node="10.0.0.7 · 1a2b3c4d")
    waiting = create_run(make_config(data, "cnn", 1, ray_resources={"gpu_box": 1}))
    update_status(waiting, state=RunState.RUNNING, executor=Executor.RAY)

    rows = {row["Run"]: row for row in views.runs_frame(list_runs()).to_dict("records")}
    assert rows[local.name]["Where"] == "this machine"
    assert rows[trial.name]["Where"] == "Ray node 10.0.0.7 · 1a2b3c4d"
    assert rows[waiting.name]["Where"] == "Ray (waiting for a node)"
    assert rows[sweep_dir.name]["Model"].startswith("Sweep · ")
    assert rows[trial.name]["Model"].startswith("Trial · ")
    lines = views.config_lines(read_config(trial), read_facts(trial))
    assert "Head: dropout 0.1, 64 hidden units" in lines and f"Trial of sweep {sweep_dir.name}" in lines
    assert "Resources: 1 CPUs, 1 gpu_box" in views.config_lines(read_config(waiting), read_facts(waiting))


def test_where_linux_refuses_a_private_network_the_sweep_fails_with_a_sentence(tmp_path, monkeypatch):
    import core.__main__ as entry
    from core import netns
    from core.runs.store import create_run

    def refuse():
        raise netns.NetworkIsolationError(1, "PawLab could not give its embedded Ray a loopback-only network")

    monkeypatch.setattr(netns, "enter_loopback_only_network", refuse)
    sweep_dir = create_run(
        make_config(make_separable_dataset(tmp_path / "data"), "mobilenet_v2", search=SweepSpec.from_grid(2, {})),
        state=RunState.RUNNING,
    )
    with pytest.raises(SystemExit):
        entry.isolate_or_fail(str(sweep_dir))
    status = read_status(sweep_dir)
    assert status.state == RunState.FAILED and "loopback-only network" in status.error


def test_a_worker_in_a_sweeps_private_network_leaves_the_next_run_to_its_parent(tmp_path, monkeypatch):
    """Runs queued behind a sweep must start with the machine's network, not inside the sweep's."""
    from core.runs import jobs
    from core.runs.store import create_run

    run_dir = create_run(make_config(make_separable_dataset(tmp_path / "data"), "cnn", 1), state=RunState.RUNNING)
    dispatched = []
    monkeypatch.setattr(jobs, "execute_run", lambda run_dir, **kwargs: RunState.COMPLETED)
    monkeypatch.setattr(jobs, "dispatch", lambda runs_dir: dispatched.append(runs_dir))
    monkeypatch.setattr(jobs, "in_loopback_only_network", lambda: True)
    jobs.work(run_dir)
    assert dispatched == []
    monkeypatch.setattr(jobs, "in_loopback_only_network", lambda: False)
    jobs.work(run_dir)
    assert dispatched == [run_dir.parent]
