"""The worker's steps: one scan per run, the recorded split, and failures told in one line.

Runs are tiny (32 px, one epoch) and trained in this process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, make_separable_dataset

from core.data import dataset, splits
from core.data.dataset import DatasetError, scan_dataset
from core.data.splits import make_splits
from core.runs import evaluation, training
from core.runs.recipes import make_config
from core.runs.store import (
    ERROR_MESSAGE_CHARS,
    EVALUATION_FILE,
    LOG_FILE,
    SPLIT_FILE,
    RunState,
    create_run,
    read_config,
    read_split,
    read_status,
)
from core.runs.worker import execute_run


def tiny_run(tmp_path, data=None, **kwargs):
    data = data or make_separable_dataset(tmp_path / "data", per_class=12, size=32)
    config = make_config(data, "cnn", 1, **(dict(image_size=32, batch_size=8) | kwargs))
    return create_run(config, tmp_path / "runs")


def test_a_run_scans_its_dataset_once(tmp_path, monkeypatch):
    scans = []

    def counting(scan):
        def scan_and_count(*args, **kwargs):
            scans.append(args)
            return scan(*args, **kwargs)

        return scan_and_count

    # Wherever a scan may be called from: the data layer's own name and the splitter's.
    monkeypatch.setattr(dataset, "scan_dataset", counting(dataset.scan_dataset))
    monkeypatch.setattr(splits, "scan_dataset", counting(splits.scan_dataset))
    run_dir = tiny_run(tmp_path)
    assert execute_run(run_dir) == RunState.COMPLETED, read_status(run_dir).error
    assert len(scans) == 1
    assert (run_dir / EVALUATION_FILE).exists()  # evaluated without a second scan


def test_the_best_model_is_calibrated_before_it_is_evaluated(tmp_path, monkeypatch):
    from core.runs.trust import NOVELTY_FILE, read_trust

    steps, loads = [], []
    for step in ("fit", "fine_tune", "calibrate", "evaluate"):
        real = getattr(training.Training, step)
        monkeypatch.setattr(
            training.Training, step, lambda self, real=real, step=step: steps.append(step) or real(self)
        )
    real_load = training.keras.models.load_model
    monkeypatch.setattr(
        training.keras.models, "load_model", lambda *args, **kwargs: loads.append(args) or real_load(*args, **kwargs)
    )
    run_dir = tiny_run(tmp_path)
    assert execute_run(run_dir) == RunState.COMPLETED, read_status(run_dir).error

    assert steps == ["fit", "fine_tune", "calibrate", "evaluate"]
    assert len(loads) == 1  # model.keras loaded once for both steps
    trust = read_trust(run_dir)
    evaluated = json.loads((run_dir / EVALUATION_FILE).read_text())
    assert evaluated["temperature"] == trust.temperature != 1.0
    assert trust.novelty_threshold is None and not (run_dir / NOVELTY_FILE).exists()  # a cnn


def test_evaluation_uses_the_recorded_photos_after_the_folder_changes(tmp_path, monkeypatch, capsys):
    from core.cli import main

    data = make_separable_dataset(tmp_path / "data", per_class=12, size=32)
    run_dir = tiny_run(tmp_path, data)
    assert execute_run(run_dir) == RunState.COMPLETED, read_status(run_dir).error
    recorded = read_split(run_dir)
    test_files = {str(data / path) for path, _ in recorded["test"]}

    # The folder changes: new photos in validation/, a training photo gone.
    extra = make_separable_dataset(tmp_path / "extra", per_class=12, size=32, seed=1)
    for photo in (extra / "validation").rglob("*.jpg"):
        shutil.copy(photo, data / "validation" / photo.parent.name / f"new-{photo.name}")
    (data / recorded["train"][0][0]).unlink()
    config = read_config(run_dir)
    resplit = make_splits(scan_dataset(data), config.seed, config.test_fraction, config.validation_fraction)
    assert {s.path for s in resplit.test} != test_files  # a re-split would test other photos

    scored = []
    real_evaluate_model = evaluation.evaluate_model

    def spy(model, samples, *args, **kwargs):
        scored.append({s.path for s in samples})
        return real_evaluate_model(model, samples, *args, **kwargs)

    monkeypatch.setattr(evaluation, "evaluate_model", spy)
    capsys.readouterr()
    assert main(["evaluate", str(run_dir)]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == len(test_files)
    assert scored == [test_files]
    assert read_split(run_dir) == recorded  # never rewritten


def test_a_subset_run_records_the_photos_it_trained_on(tmp_path):
    run_dir = tiny_run(tmp_path, subset=3)
    assert execute_run(run_dir) == RunState.COMPLETED, read_status(run_dir).error
    train = read_split(run_dir)["train"]
    assert sorted(name for _, name in train) == ["circles"] * 3 + ["squares"] * 3


def test_a_failure_is_one_short_line_and_the_traceback_is_in_the_log(tmp_path, monkeypatch):
    """A distributed error can print every replica's tensors: megabytes on many lines."""
    per_replica = (
        "PerReplica:{\n"
        + "".join(
            f"  {replica}: <tf.Tensor: shape=(8, 32, 32, 3), dtype=float32, numpy=array([{'0.5, ' * 5000}])>\n"
            for replica in range(2)
        )
        + "}"
    )

    def fit(self):
        raise RuntimeError("Could not fit " + "x" * 5000 + " because of " + per_replica)

    monkeypatch.setattr(training.Training, "fit", fit)
    run_dir = tiny_run(tmp_path)
    assert execute_run(run_dir) == RunState.FAILED

    error = read_status(run_dir).error
    assert error.startswith("Training failed: RuntimeError: Could not fit xxx")
    assert "\n" not in error and len(error) <= ERROR_MESSAGE_CHARS
    assert len((run_dir / "status.json").read_text()) < 2 * ERROR_MESSAGE_CHARS + 1000
    log = (run_dir / LOG_FILE).read_text()
    assert log.count("Traceback (most recent call last)") == 1
    assert per_replica in log and "in fit" in log  # the whole message, and where it came from


def test_a_dataset_that_cannot_train_fails_in_the_data_step(tmp_path):
    """A one-class folder: a sentence, the traceback in the log, no split recorded."""
    data = make_separable_dataset(tmp_path / "data", classes=("only",), per_class=6, size=32)
    run_dir = tiny_run(tmp_path, data)
    assert execute_run(run_dir) == RunState.FAILED
    assert "two classes" in read_status(run_dir).error
    assert not (run_dir / SPLIT_FILE).exists()
    assert "DatasetError" in (run_dir / LOG_FILE).read_text()


# Run in a fresh interpreter: the child-process scan is only for a process without TensorFlow.
SCAN_WHILE_IMPORTING = """
import json, sys
from concurrent.futures import ProcessPoolExecutor
from core.runs import worker
from core.runs.recipes import make_config
from core.runs.run_split import prepare_data

submitted = []

class Recording(ProcessPoolExecutor):
    def submit(self, fn, *args, **kwargs):
        submitted.append(fn.__name__)
        return super().submit(fn, *args, **kwargs)

class Unavailable:
    def __init__(self, *args, **kwargs):
        raise OSError("no semaphores here")

worker.ProcessPoolExecutor = Unavailable if sys.argv[2] == "no-child" else Recording
config = make_config(sys.argv[1], "cnn", 1, image_size=32, batch_size=8)
try:
    splits = worker.prepare_data_while_tensorflow_imports(config)
except ValueError as error:
    print(json.dumps({"error": str(error), "submitted": submitted}))
    raise SystemExit
imported = "tensorflow" in sys.modules
print(json.dumps({
    "same": splits.to_record() == prepare_data(config).to_record(),
    "submitted": submitted,
    "tensorflow_imported": imported,
}))
"""


def _scan_while_importing(data, mode: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", SCAN_WHILE_IMPORTING, str(data), mode],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_run_without_tensorflow_scans_in_a_child_while_tensorflow_imports(tmp_path, pawlab_home):
    data = make_separable_dataset(tmp_path / "data", per_class=12, size=32)
    assert _scan_while_importing(data, "child") == {
        "same": True,  # the split a scan in this process gives
        "submitted": ["prepare_data"],
        "tensorflow_imported": True,
    }


def test_a_wrong_folder_fails_with_its_sentence_from_the_child(tmp_path, pawlab_home):
    empty = tmp_path / "nothing here"
    empty.mkdir()
    with pytest.raises(DatasetError) as in_process:
        from core.runs.run_split import prepare_data

        prepare_data(make_config(empty, "cnn", 1, image_size=32, batch_size=8))
    assert _scan_while_importing(empty, "child") == {"error": str(in_process.value), "submitted": ["prepare_data"]}


def test_without_a_child_process_the_scan_runs_in_this_one(tmp_path, pawlab_home):
    data = make_separable_dataset(tmp_path / "data", per_class=12, size=32)
    result = _scan_while_importing(data, "no-child")
    assert result["same"] and result["submitted"] == []


KILLED_WHILE_SCANNING = """
import os, signal, time
from core.runs import worker

pool = worker.scan_pool()
print(pool.submit(os.getpid).result(), flush=True)  # the child's pid
pool.submit(time.sleep, 120)  # a scan still going when the run is killed
time.sleep(0.5)
os.kill(os.getpid(), signal.SIGKILL)  # what the Train page's stop-now or the OOM killer does
"""


def test_a_run_killed_while_its_child_scans_leaves_no_process_behind(tmp_path):
    # Output to a file: an orphan holding a pipe would keep subprocess.run waiting.
    output = tmp_path / "child.txt"
    with output.open("w") as stdout:
        process = subprocess.run([sys.executable, "-c", KILLED_WHILE_SCANNING], cwd=REPO, stdout=stdout, timeout=60)
    assert process.returncode == -signal.SIGKILL
    child = int(output.read_text().split()[0])
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = _alive(child)
    if alive:
        os.kill(child, signal.SIGKILL)  # do not leave it to the next test
    assert not alive


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for init to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] != "Z"
    except FileNotFoundError:
        return False
