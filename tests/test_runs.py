"""Run folders on disk: configs, status files, metrics, listing. No TensorFlow here."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from core.data.augment import PRESETS
from core.fileio import write_json
from core.runs.evaluation import scores
from core.runs.recipes import RECIPES, TrainConfig, make_config
from core.runs.store import (
    EVALUATION_FILE,
    METRICS_FILE,
    RunState,
    append_metrics,
    create_run,
    delete_run,
    list_runs,
    read_config,
    read_metrics,
    read_status,
    update_status,
)

REPO = Path(__file__).resolve().parent.parent


def test_make_config_fills_in_the_architectures_defaults(tmp_path):
    config = make_config(tmp_path, "cnn_aug", 3)
    assert config.augment == PRESETS["tutorial"]  # the tutorial's flip + rotation, as a full config
    assert config.learning_rate == 1e-3
    assert config.fine_tune_epochs == 0 and config.fine_tune_learning_rate is None

    fine = make_config(tmp_path, "mobilenet_v2_finetune", 4)
    assert fine.epochs == 4
    assert fine.fine_tune_epochs == RECIPES["mobilenet_v2_finetune"].fine_tune_epochs == 0  # on request
    assert fine.image_size == RECIPES["mobilenet_v2_finetune"].image_size == 224  # the recipe's own
    assert make_config(tmp_path, "mobilenet_v2_finetune", 4, image_size=160).image_size == 160
    assert fine.fine_tune_learning_rate == 1e-5
    assert fine.fine_tune_layers > 0
    assert fine.augment.is_identity


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(arch="resnet"), "Unknown architecture"),
        (dict(epochs=0), "epochs"),
        (dict(image_size=8), "image size"),
        (dict(augment="no-such-config"), "no-such-config"),
        (dict(fine_tune_epochs=2), "no fine-tuning"),
        (dict(learning_rate=-1.0), "learning rate"),
    ],
)
def test_make_config_refuses_bad_values_with_a_sentence(tmp_path, kwargs, words):
    args = dict(arch="cnn", epochs=2) | kwargs
    with pytest.raises(ValueError, match=words):
        make_config(tmp_path, args.pop("arch"), args.pop("epochs"), **args)


def test_config_round_trips_through_json(tmp_path):
    config = make_config(tmp_path, "cnn_plus", 5, image_size=64, subset=10, seed=7)
    run_dir = create_run(config, tmp_path / "runs")
    again = read_config(run_dir)
    assert again == config
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["augment"] == PRESETS["recommended"].to_dict()
    assert saved["created"] > 0
    # What training finds out (classes, versions...) goes to facts.json, never here.
    assert not {"versions", "classes", "split_counts", "mode"} & set(saved)


def test_create_run_makes_a_queued_run_with_a_time_sortable_id(tmp_path):
    config = make_config(tmp_path, "cnn", 1)
    run_dir = create_run(config, tmp_path / "runs")
    assert run_dir.parent == tmp_path / "runs"
    stamp, arch = run_dir.name[:15], run_dir.name[16:19]
    assert time.strftime("%Y%m%d-%H%M%S", time.localtime(config.created)) == stamp
    assert arch == "cnn"
    status = read_status(run_dir)
    assert status.state == RunState.QUEUED and status.pid is None


def test_runs_go_under_pawlab_home_by_default(tmp_path, pawlab_home):
    run_dir = create_run(make_config(tmp_path, "cnn", 1))
    assert run_dir.parent == pawlab_home / "runs"
    assert [s.id for s in list_runs()] == [run_dir.name]


def test_list_runs_is_newest_first_with_results(tmp_path):
    runs = tmp_path / "runs"
    older = create_run(TrainConfig(str(tmp_path), "cnn", 2, created=1000.0), runs)
    newer = create_run(TrainConfig(str(tmp_path), "cnn_plus", 3, created=2000.0), runs)
    (runs / "not-a-run").mkdir()
    update_status(older, state=RunState.COMPLETED, started=1000.0, finished=1100.0)
    append_metrics(older, {"epoch": 1, "val_accuracy": 0.7})
    append_metrics(older, {"epoch": 2, "val_accuracy": 0.8})
    # Three of four test photos right: evaluation.json as core.runs.evaluation writes it.
    write_json(older / EVALUATION_FILE, scores(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), ["a", "b"]))

    summaries = list_runs(runs)
    assert [s.id for s in summaries] == [newer.name, older.name]
    done = summaries[1]
    assert (done.arch, done.state, done.epochs) == ("cnn", RunState.COMPLETED, 2)
    assert done.best_val_accuracy == 0.8 and done.test_accuracy == 0.75
    assert done.duration == 100.0
    assert summaries[0].state == RunState.QUEUED and summaries[0].best_val_accuracy is None


def test_read_metrics_skips_a_line_being_written(tmp_path):
    run_dir = create_run(make_config(tmp_path, "cnn", 2), tmp_path / "runs")
    append_metrics(run_dir, {"epoch": 1, "loss": 0.5})
    with open(run_dir / METRICS_FILE, "a") as file:
        file.write('{"epoch": 2, "lo')  # another process is half way through a line
    assert read_metrics(run_dir) == [{"epoch": 1, "loss": 0.5}]


def test_status_updates_from_many_writers_are_never_lost(tmp_path):
    """The worker's heartbeat thread, its callbacks and the job manager all write status.json."""
    run_dir = create_run(make_config(tmp_path, "cnn", 1), tmp_path / "runs")

    def write(key):
        for n in range(30):
            update_status(run_dir, **{key: n + 1})

    threads = [threading.Thread(target=write, args=(key,)) for key in ("epoch", "batch", "heartbeat")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    status = read_status(run_dir)
    assert (status.epoch, status.batch, status.heartbeat) == (30, 30, 30)
    assert status.state == RunState.QUEUED


def test_json_files_are_replaced_whole(tmp_path):
    """A reader polling status.json while it is rewritten always parses it."""
    run_dir = create_run(make_config(tmp_path, "cnn", 1), tmp_path / "runs")
    reader = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import json, sys, time\n"
                "path, end, reads = sys.argv[1], time.time() + 1.5, 0\n"
                "while time.time() < end:\n"
                "    json.load(open(path)); reads += 1\n"
                "print(reads)\n"
            ),
            str(run_dir / "status.json"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    end = time.time() + 1.5
    while time.time() < end:
        update_status(run_dir, error="x" * 20000, batch=int(time.time() * 1000) % 1000)
    out, err = reader.communicate(timeout=30)
    assert reader.returncode == 0, err
    assert int(out) > 10
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]


def test_update_status_refuses_unknown_states(tmp_path):
    run_dir = create_run(make_config(tmp_path, "cnn", 1), tmp_path / "runs")
    with pytest.raises(ValueError):
        update_status(run_dir, state="exploded")
    assert read_status(run_dir).state == RunState.QUEUED


def test_delete_run_removes_finished_runs_only(tmp_path):
    runs = tmp_path / "runs"
    run_dir = create_run(make_config(tmp_path, "cnn", 1), runs)
    with pytest.raises(ValueError, match="cancel it"):
        delete_run(run_dir, runs)
    assert run_dir.exists()
    update_status(run_dir, state=RunState.CANCELLED)
    delete_run(run_dir, runs)
    assert not run_dir.exists()
    with pytest.raises(ValueError, match="not a training run"):
        delete_run(tmp_path, runs)  # never removes a folder that is not a run
    with pytest.raises(ValueError, match="not a training run"):
        delete_run(runs, runs)


def test_delete_run_never_leaves_the_runs_folder(tmp_path, pawlab_home):
    """A folder with a config and a status elsewhere on the disk is not a run to delete."""
    elsewhere = create_run(make_config(tmp_path, "cnn", 1), tmp_path / "elsewhere")
    update_status(elsewhere, state=RunState.COMPLETED)
    runs = pawlab_home / "runs"
    runs.mkdir(parents=True)
    (runs / "link").symlink_to(elsewhere)  # symlinks are resolved
    for path in (elsewhere, runs / "link", runs / ".." / ".." / elsewhere.relative_to(tmp_path)):
        with pytest.raises(ValueError, match="not a training run folder in"):
            delete_run(path)  # default: PAWLAB_HOME/runs
    with pytest.raises(ValueError, match="not a training run folder in"):
        delete_run(elsewhere, runs)
    assert (elsewhere / "config.json").exists() and (runs / "link").is_symlink()

    inside = create_run(make_config(tmp_path, "cnn", 1))
    update_status(inside, state=RunState.FAILED)
    delete_run(inside)
    assert not inside.exists()


def test_cli_runs_prints_the_runs_as_json(tmp_path):
    runs = tmp_path / "runs"
    run_dir = create_run(make_config(tmp_path, "cnn", 1), runs)
    result = subprocess.run(
        [sys.executable, "-m", "core", "runs", "--runs-dir", str(runs)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assert [(r["id"], r["arch"], r["state"]) for r in listed] == [(run_dir.name, "cnn", "queued")]


def test_runs_and_jobs_modules_do_not_import_tensorflow():
    """The app's pages import these; TensorFlow would add seconds to every page load."""
    code = (
        "import sys, core.runs.store, core.runs.jobs, core.runs.evaluation\n"
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
