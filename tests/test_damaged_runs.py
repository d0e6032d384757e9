"""Damaged run files: listed with the reason, and the queue, the CLI and the store keep working.

A run folder can be damaged by a crash, a full disk or a person editing it.
One damaged run must never stop the queue, the CLI or the other runs.
No TensorFlow here.
"""

from __future__ import annotations

import errno
import json
import os

import pytest

from core import cli
from core.runs import jobs
from core.runs.recipes import make_config
from core.runs.store import (
    CONFIG_FILE,
    EVALUATION_FILE,
    METRICS_FILE,
    STATUS_FILE,
    RunFileError,
    RunState,
    append_metrics,
    create_run,
    delete_run,
    list_runs,
    read_evaluation,
    read_metrics,
    read_status,
)

DAMAGED_STATUS = {
    "empty": "",
    "truncated": '{"state": "runn',
    "null": "null",
    "a number": "42",
    "non-numeric pid": json.dumps({"state": "running", "pid": "abc"}),
    "unknown state": json.dumps({"state": "exploded"}),
}


@pytest.fixture
def runs_dir(tmp_path):
    return tmp_path / "runs"


def new_run(tmp_path, runs_dir, state=RunState.QUEUED):
    return create_run(make_config(tmp_path, "cnn", 1), runs_dir, state=state)


@pytest.mark.parametrize("damage", list(DAMAGED_STATUS))
def test_a_damaged_status_is_listed_with_its_reason(tmp_path, runs_dir, damage):
    good = new_run(tmp_path, runs_dir, RunState.COMPLETED)
    bad = new_run(tmp_path, runs_dir)
    (bad / STATUS_FILE).write_text(DAMAGED_STATUS[damage])

    with pytest.raises(RunFileError, match=bad.name):
        read_status(bad)
    listed = {summary.id: summary for summary in list_runs(runs_dir)}
    assert listed[good.name].state == RunState.COMPLETED and listed[good.name].problem is None
    assert listed[bad.name].problem and STATUS_FILE in listed[bad.name].problem


@pytest.mark.parametrize("damage", list(DAMAGED_STATUS))
def test_a_damaged_run_does_not_stop_the_queue_behind_it(tmp_path, runs_dir, damage, monkeypatch):
    started = []
    monkeypatch.setattr(jobs, "_start_worker", lambda run_dir: started.append(run_dir) or 4242)
    bad = new_run(tmp_path, runs_dir)
    (bad / STATUS_FILE).write_text(DAMAGED_STATUS[damage])
    waiting = new_run(tmp_path, runs_dir)

    assert jobs.dispatch(runs_dir) == [waiting]
    assert started == [waiting]
    assert read_status(waiting).state == RunState.RUNNING


@pytest.mark.parametrize("damage", list(DAMAGED_STATUS))
def test_the_page_poll_walks_past_a_damaged_run(tmp_path, runs_dir, damage, monkeypatch):
    started = []
    monkeypatch.setattr(jobs, "_start_worker", lambda run_dir: started.append(run_dir) or os.getpid())
    bad = new_run(tmp_path, runs_dir)
    (bad / STATUS_FILE).write_text(DAMAGED_STATUS[damage])
    waiting = new_run(tmp_path, runs_dir)

    assert jobs.recover(runs_dir) == [] and started == [waiting]  # recover starts what is queued
    assert jobs.tick(runs_dir) == jobs.QueueChanges()
    assert (bad / STATUS_FILE).read_text() == DAMAGED_STATUS[damage]  # left for a person to see


@pytest.mark.parametrize("damage", list(DAMAGED_STATUS))
def test_a_damaged_run_can_be_deleted(tmp_path, runs_dir, damage):
    bad = new_run(tmp_path, runs_dir)
    (bad / STATUS_FILE).write_text(DAMAGED_STATUS[damage])
    delete_run(bad, runs_dir)
    assert not bad.exists()


def test_the_cli_lists_a_damaged_run_instead_of_failing(tmp_path, runs_dir, capsys):
    good = new_run(tmp_path, runs_dir, RunState.COMPLETED)
    bad = new_run(tmp_path, runs_dir)
    (bad / STATUS_FILE).write_text("null")

    assert cli.main(["runs", "--runs-dir", str(runs_dir)]) == 0
    listed = {run["id"]: run for run in json.loads(capsys.readouterr().out)}
    assert listed[good.name]["state"] == "completed"
    assert "status.json" in listed[bad.name]["problem"]


def test_metrics_lines_that_are_not_epochs_are_skipped(tmp_path, runs_dir):
    run_dir = new_run(tmp_path, runs_dir)
    append_metrics(run_dir, {"epoch": 1, "val_accuracy": 0.5})
    with open(run_dir / METRICS_FILE, "a") as file:
        file.write("42\nnull\n[1, 2]\n")
    append_metrics(run_dir, {"epoch": 2, "val_accuracy": 0.6})
    assert [m["epoch"] for m in read_metrics(run_dir)] == [1, 2]
    assert list_runs(runs_dir)[0].best_val_accuracy == 0.6


def test_a_line_of_binary_garbage_in_metrics_loses_only_itself(tmp_path, runs_dir, capsys):
    """A crash mid-append on some file systems leaves zeros or junk bytes, not valid UTF-8."""
    run_dir = new_run(tmp_path, runs_dir)
    append_metrics(run_dir, {"epoch": 1, "val_accuracy": 0.5})
    with open(run_dir / METRICS_FILE, "ab") as file:
        file.write(b'\x00\x00\xff\xfe{"epoch": 2\n')
    append_metrics(run_dir, {"epoch": 3, "val_accuracy": 0.7})
    assert [m["epoch"] for m in read_metrics(run_dir)] == [1, 3]

    assert cli.main(["runs", "--runs-dir", str(runs_dir)]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert (listed[0]["epochs"], listed[0]["best_val_accuracy"]) == (2, 0.7)


def test_a_damaged_config_is_listed_and_the_cli_carries_on(tmp_path, runs_dir, capsys):
    good = new_run(tmp_path, runs_dir, RunState.COMPLETED)
    bad = new_run(tmp_path, runs_dir, RunState.COMPLETED)
    (bad / CONFIG_FILE).write_bytes(b"\xff\x00 not json")

    assert cli.main(["runs", "--runs-dir", str(runs_dir)]) == 0
    listed = {run["id"]: run for run in json.loads(capsys.readouterr().out)}
    assert listed[good.name]["state"] == "completed"
    assert CONFIG_FILE in listed[bad.name]["problem"]
    delete_run(bad, runs_dir)  # and it can be cleared away
    assert not bad.exists()


def test_a_disk_full_while_appending_an_epoch_leaves_no_half_line(tmp_path, runs_dir, monkeypatch):
    run_dir = new_run(tmp_path, runs_dir)
    append_metrics(run_dir, {"epoch": 1, "val_accuracy": 0.5})
    real_write = os.write

    def half_then_disk_full(fd, data):
        real_write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_disk_full)
    with pytest.raises(OSError):
        append_metrics(run_dir, {"epoch": 2, "val_accuracy": 0.6})
    monkeypatch.setattr(os, "write", real_write)

    # Space is back: the next epoch is a line of its own and every epoch is read.
    append_metrics(run_dir, {"epoch": 3, "val_accuracy": 0.7})
    assert [m["epoch"] for m in read_metrics(run_dir)] == [1, 3]
    assert (run_dir / METRICS_FILE).read_text().count("\n") == 2


DAMAGED_EVALUATION = {
    "truncated": '{"accuracy": 0.9',
    "a field missing": json.dumps({"accuracy": 0.9, "count": 4}),
    "a word for a number": json.dumps(
        {"accuracy": "high", "count": 4, "classes": ["a"], "per_class": {}, "confusion_matrix": [[4]]}
    ),
    "a class's scores missing": json.dumps(
        {"accuracy": 1.0, "count": 4, "classes": ["a"], "per_class": {"a": {"f1": 1}}, "confusion_matrix": [[4]]}
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGED_EVALUATION))
def test_a_damaged_evaluation_is_reported_and_the_run_stays_listed(tmp_path, runs_dir, damage, capsys):
    good = new_run(tmp_path, runs_dir, RunState.COMPLETED)
    bad = new_run(tmp_path, runs_dir, RunState.COMPLETED)
    (bad / EVALUATION_FILE).write_text(DAMAGED_EVALUATION[damage])

    with pytest.raises(RunFileError, match=f"{bad.name}: {EVALUATION_FILE}"):
        read_evaluation(bad)
    assert read_evaluation(good) is None  # no evaluation yet is not damage
    assert cli.main(["runs", "--runs-dir", str(runs_dir)]) == 0
    listed = {run["id"]: run for run in json.loads(capsys.readouterr().out)}
    assert listed[good.name]["problem"] is None
    assert EVALUATION_FILE in listed[bad.name]["problem"] and listed[bad.name]["state"] == "completed"


def test_an_evaluation_is_read_into_typed_records(tmp_path, runs_dir):
    import numpy as np

    from core.fileio import write_json
    from core.runs.evaluation import scores
    from core.runs.store import ClassScores, Evaluation

    run_dir = new_run(tmp_path, runs_dir, RunState.COMPLETED)
    record = scores(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2]), ["a", "b", "c"])
    record["misclassified"] = [
        {"file": "x.jpg", "true": "a", "predicted": "b", "probabilities": {"a": 0.2, "b": 0.7, "c": 0.1}}
    ]
    write_json(run_dir / EVALUATION_FILE, record)

    evaluation = read_evaluation(run_dir)
    assert isinstance(evaluation, Evaluation) and evaluation.count == 4 and evaluation.accuracy == 0.75
    assert evaluation.per_class["a"] == ClassScores(precision=1.0, recall=0.5, f1=2 / 3, support=2)
    assert evaluation.misclassified[0].predicted == "b" and evaluation.confusion_matrix[0] == [1, 1, 0]
    assert list_runs(runs_dir)[0].test_accuracy == 0.75
