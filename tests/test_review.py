"""Reviewing a dataset: the doctor from the CLI and out of process, and runs that keep
the corrections they were submitted with."""

from __future__ import annotations

import json
import time

import pytest
from conftest import make_separable_dataset

from core import cli
from core.data.corrections import add_correction
from core.review.runner import ReviewStatus, review_state, start_review
from core.runs.recipes import make_config
from core.runs.run_split import prepare_data

PHOTO = "train/circles/circles.train.4.jpg"


def class_of(splits, relative):
    return next(s.class_name for samples in splits.as_dict().values() for s in samples if s.path.endswith(relative))


def test_a_run_trains_on_the_corrections_it_was_submitted_with(tiny_dataset):
    add_correction(tiny_dataset, PHOTO, "squares")
    config = make_config(tiny_dataset, "cnn", 1)
    assert config.corrections == {PHOTO: "squares"}
    # Undone while the run waits in the queue: the run still trains on its snapshot.
    add_correction(tiny_dataset, PHOTO, "circles")
    assert class_of(prepare_data(config), PHOTO) == "squares"
    assert class_of(prepare_data(make_config(tiny_dataset, "cnn", 1)), PHOTO) == "circles"


@pytest.fixture
def with_weights(keras_home, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(keras_home))


def test_cli_doctor_prints_one_json_report(tmp_path, with_weights, capsys):
    data = make_separable_dataset(tmp_path / "shapes", per_class=20)
    assert cli.main(["doctor", "--data", str(data)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) >= {"label_issues", "duplicates", "leaks", "outliers", "class_balance"}
    assert report["photos"] == 60 and report["classes"] == ["circles", "squares"]
    assert all({"file", "score", "given", "suggested"} <= set(issue) for issue in report["label_issues"])


def test_cli_doctor_refuses_a_folder_without_two_classes(tmp_path, capsys):
    data = make_separable_dataset(tmp_path / "one", classes=("circles",))
    assert cli.main(["doctor", "--data", str(data)]) == 2
    assert "two classes" in json.loads(capsys.readouterr().out)["error"]


def test_a_review_runs_out_of_process_and_is_found_again(tmp_path, with_weights):
    data = make_separable_dataset(tmp_path / "shapes", per_class=20)
    assert review_state(data).status == ReviewStatus.NEVER
    assert start_review(data)
    deadline = time.monotonic() + 240
    seen_running = False
    while (state := review_state(data)).status == ReviewStatus.RUNNING and time.monotonic() < deadline:
        seen_running = True
        assert not start_review(data)  # one review of a dataset at a time
        time.sleep(0.5)
    assert seen_running
    assert state.status == ReviewStatus.DONE, state.error
    assert state.report.photos == 60 and state.finished


def test_a_review_whose_process_dies_is_reported_failed(tmp_path, with_weights):
    import os
    import signal

    from core.fileio import read_json
    from core.review.runner import PROGRESS_FILE, review_dir

    data = make_separable_dataset(tmp_path / "shapes", per_class=20)
    assert start_review(data)
    pid = read_json(review_dir(data) / PROGRESS_FILE).value["pid"]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while (state := review_state(data)).status == ReviewStatus.RUNNING and time.monotonic() < deadline:
        time.sleep(0.2)
    assert state.status == ReviewStatus.FAILED and "log.txt" in state.error
    assert start_review(data)  # and it can be started again
    os.kill(read_json(review_dir(data) / PROGRESS_FILE).value["pid"], signal.SIGKILL)


def test_the_doctor_works_for_more_than_two_classes_and_a_single_pool(tmp_path, with_weights, capsys):
    data = make_separable_dataset(
        tmp_path / "three", classes=("circles", "squares", "rings"), per_class=15, splits=("",)
    )  # class folders only: one pool
    assert cli.main(["doctor", "--data", str(data)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["classes"] == ["circles", "rings", "squares"] and report["photos"] == 45
    assert all(set(counts) == set(report["classes"]) for counts in report["class_balance"].values())
    assert set(report["class_balance"]) == {"train", "validation", "test"}
