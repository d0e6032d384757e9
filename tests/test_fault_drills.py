"""Fault drills: what a user's machine does to a run, done on purpose.

Each drill breaks one thing the way it breaks in the field (a worker killed
by the out-of-memory killer, a full disk, a process that hangs holding a
lock, two app processes at once, a read-only home) and checks that the run
store and the queue end in a state a person can act on. Damaged run files
are drilled in tests/test_damaged_runs.py.

Tiny generated photos (32 px), a few epochs; the kill drill uses real worker
processes, the disk drills train in this process.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _runs import config, log_of, state, wait_for
from conftest import REPO, make_separable_dataset

import core.fileio
from core.fileio import LockTimeout
from core.runs import jobs, store
from core.runs.store import (
    METRICS_FILE,
    MODEL_FILE,
    STATUS_LOCK_FILE,
    RunsFolderError,
    RunState,
    create_run,
    pid_alive,
    read_metrics,
    read_status,
    run_dirs,
)


@pytest.fixture(autouse=True)
def one_slot(monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.setenv("PAWLAB_MAX_CONCURRENT_RUNS", "1")


@pytest.fixture
def data(tmp_path):
    return make_separable_dataset(tmp_path / "data", per_class=12, size=32)


@pytest.fixture
def our_workers():
    """Every worker this test started is killed at the end, whatever state it is in."""
    yield
    for child in list(jobs._children.values()):
        child.kill()
        child.wait()
    jobs._reap()


def load_model(path: Path):
    import keras

    return keras.models.load_model(path, safe_mode=True)


def leftover_temp_files(run_dir: Path) -> list[str]:
    return [path.name for path in run_dir.iterdir() if ".tmp" in path.name]


# --- kill -9 of a worker mid-epoch ---------------------------------------------------


def test_a_killed_worker_is_interrupted_and_the_queue_moves_on_by_polling(data, our_workers):
    doomed = jobs.submit(config(data, epochs=500, batch_size=2))
    waiting = jobs.submit(config(data, epochs=1))
    assert (state(doomed), state(waiting)) == (RunState.RUNNING, RunState.QUEUED)
    wait_for(
        lambda: read_metrics(doomed) and (doomed / MODEL_FILE).exists(),
        what=f"a finished epoch and a model: {log_of(doomed)}",
    )

    os.kill(read_status(doomed).pid, signal.SIGKILL)  # the out-of-memory killer: not a word written

    # Nobody presses Start: only the Train page's poll runs, once a second.
    wait_for(lambda: jobs.tick().started, timeout=10, what="the queued run to start", every=1.0)
    status = read_status(doomed)
    assert status.state == RunState.INTERRUPTED and "stopped unexpectedly" in status.error
    assert state(waiting) == RunState.RUNNING and pid_alive(read_status(waiting).pid)
    assert load_model(doomed / MODEL_FILE).output.shape[-1] == 2  # the last good model


# --- a full disk during a run ---------------------------------------------------------


class MetricsDiskFills:
    """``os`` as core.fileio sees it: after the first epoch's line, appends to
    metrics.jsonl write half their bytes and fail with ENOSPC, as on a full disk."""

    def __init__(self):
        self.metrics_fds: set[int] = set()
        self.lines = 0

    def open(self, path, *args, **kwargs):
        fd = os.open(path, *args, **kwargs)
        if Path(path).name == METRICS_FILE:
            self.metrics_fds.add(fd)
        return fd

    def write(self, fd, data):
        if fd in self.metrics_fds:
            self.lines += 1
            if self.lines > 1:
                os.write(fd, data[: len(data) // 2])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return os.write(fd, data)

    def close(self, fd):
        self.metrics_fds.discard(fd)
        os.close(fd)

    def __getattr__(self, name):
        return getattr(os, name)


def test_a_full_disk_while_writing_an_epoch_fails_the_run_cleanly(data, tmp_path, monkeypatch):
    from core.runs.worker import execute_run

    run_dir = create_run(config(data, epochs=3), tmp_path / "runs", state=RunState.RUNNING)
    monkeypatch.setattr(core.fileio, "os", MetricsDiskFills())

    assert execute_run(run_dir) == RunState.FAILED
    lines = (run_dir / METRICS_FILE).read_text().splitlines(keepends=True)
    assert len(lines) == 1 and lines[0].endswith("\n")  # epoch 1 whole, no torn epoch 2
    assert [m["epoch"] for m in read_metrics(run_dir)] == [1]
    assert load_model(run_dir / MODEL_FILE).output.shape[-1] == 2  # epoch 1's model
    assert leftover_temp_files(run_dir) == []
    error = read_status(run_dir).error
    assert "\n" not in error and "the disk is full" in error and str(run_dir) in error


def test_a_full_disk_while_saving_the_model_keeps_the_previous_one(data, tmp_path, monkeypatch):
    import keras

    from core.runs import training
    from core.runs.worker import execute_run

    run_dir = create_run(config(data, epochs=3), tmp_path / "runs", state=RunState.RUNNING)
    model_file = run_dir / MODEL_FILE
    real_save, saved_before = keras.Model.save, []

    def save_then_disk_full(model, filepath, *args, **kwargs):
        if model_file.exists():  # a second save: the disk is full now, half the file is written
            saved_before.append(hashlib.sha256(model_file.read_bytes()).hexdigest())
            real_save(model, filepath, *args, **kwargs)
            os.truncate(filepath, os.path.getsize(filepath) // 2)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_save(model, filepath, *args, **kwargs)

    def every_epoch_is_the_best(checkpoint, epoch, logs=None):
        checkpoint.best = -math.inf  # so that epoch 2 saves too
        real_on_epoch_end(checkpoint, epoch, logs)

    real_on_epoch_end = training.AtomicCheckpoint.on_epoch_end
    monkeypatch.setattr(training, "SAVE_INTERVAL", 0.0)  # every best epoch is written at once
    monkeypatch.setattr(keras.Model, "save", save_then_disk_full)
    monkeypatch.setattr(training.AtomicCheckpoint, "on_epoch_end", every_epoch_is_the_best)

    assert execute_run(run_dir) == RunState.FAILED
    assert len(saved_before) == 1, log_of(run_dir)
    assert hashlib.sha256(model_file.read_bytes()).hexdigest() == saved_before[0]
    assert load_model(model_file).output.shape[-1] == 2
    assert leftover_temp_files(run_dir) == []
    assert [m["epoch"] for m in read_metrics(run_dir)] == [1, 2]
    error = read_status(run_dir).error
    assert "\n" not in error and "the disk is full" in error


def test_the_failed_runs_sentence_names_the_full_disk():
    from core.runs.worker import human_message

    assert "the disk is full" in human_message(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))


# --- two app processes submit at the same moment ---------------------------------------

SUBMIT_AT = """
import subprocess, sys, time
from core.runs import jobs
from core.runs.recipes import make_config

# A stand-in worker: a process that lives long enough to be seen, and trains nothing.
jobs._start_worker = lambda run_dir: subprocess.Popen(
    [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True,
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid
config = make_config(sys.argv[1], "cnn", 1)
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
print(jobs.submit(config), flush=True)
"""


def test_app_processes_submitting_at_once_start_one_run_and_lose_none(data):
    moment = time.time() + 5  # every submitter has imported PawLab by then
    submitters = [
        subprocess.Popen(
            [sys.executable, "-c", SUBMIT_AT, str(data), str(moment)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [process.communicate(timeout=60) for process in submitters]
    try:
        assert all(p.returncode == 0 for p in submitters), [err[-2000:] for _, err in outputs]
        submitted = {Path(out.strip()) for out, _ in outputs}
        assert submitted == set(run_dirs()) and len(submitted) == 3
        states = sorted(state(run_dir) for run_dir in submitted)
        assert states == [RunState.QUEUED, RunState.QUEUED, RunState.RUNNING]
        running = next(run_dir for run_dir in submitted if state(run_dir) == RunState.RUNNING)
        assert pid_alive(read_status(running).pid)
    finally:
        for run_dir in run_dirs():
            with contextlib.suppress(ProcessLookupError, TypeError):
                os.kill(read_status(run_dir).pid, signal.SIGKILL)


# --- a process that hangs holding a lock ------------------------------------------------

HOLD_LOCK = """
import sys, time
from core.fileio import FileLock
with FileLock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(120)
"""


@contextlib.contextmanager
def lock_held_by_a_hung_process(path: Path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield
    finally:
        holder.kill()
        holder.wait()


def test_a_hung_queue_lock_makes_submit_and_cancel_give_up_with_a_message(data, pawlab_home, monkeypatch):
    assert jobs.QUEUE_LOCK_TIMEOUT_SECONDS <= 10  # what a page can wait
    monkeypatch.setattr(jobs, "QUEUE_LOCK_TIMEOUT_SECONDS", 1.0)
    monkeypatch.setattr(jobs, "dispatch", lambda runs_dir=None: [])  # the queued run stays queued
    queued = jobs.submit(config(data))

    with lock_held_by_a_hung_process(pawlab_home / "runs" / ".lock"):
        for attempt in (lambda: jobs.submit(config(data)), lambda: jobs.cancel(queued)):
            asked = time.monotonic()
            with pytest.raises(LockTimeout, match="busy with the training queue for over 1 s"):
                attempt()
            assert time.monotonic() - asked < 3
    assert run_dirs() == [queued] and state(queued) == RunState.QUEUED  # nothing half-done
    assert jobs.cancel(queued) == RunState.CANCELLED  # and all is well once it is gone


def test_a_hung_status_lock_makes_cancel_give_up_with_a_message(data, monkeypatch):
    assert store.STATUS_LOCK_TIMEOUT_SECONDS <= 10
    monkeypatch.setattr(store, "STATUS_LOCK_TIMEOUT_SECONDS", 1.0)
    queued = create_run(config(data))

    with lock_held_by_a_hung_process(queued / STATUS_LOCK_FILE):
        asked = time.monotonic()
        with pytest.raises(LockTimeout, match=f"busy with run {queued.name} for over 1 s"):
            jobs.cancel(queued)
        assert time.monotonic() - asked < 3
    assert state(queued) == RunState.QUEUED


# --- a read-only home ---------------------------------------------------------------------


def read_only(*_args, **_kwargs):
    raise OSError(errno.EROFS, os.strerror(errno.EROFS))


def fail_on_call(number: int, real):
    calls = []

    def write(*args, **kwargs):
        calls.append(args)
        if len(calls) == number:
            read_only()
        return real(*args, **kwargs)

    return write


@pytest.mark.parametrize("where", ["runs folder", "queue lock", "config.json", "status.json"])
def test_a_read_only_home_refuses_a_run_in_one_sentence(data, pawlab_home, monkeypatch, where):
    """CI runs as root, so chmod cannot make a folder read-only: the write fails by hand."""
    runs = pawlab_home / "runs"
    if where == "runs folder":
        monkeypatch.setattr(Path, "mkdir", read_only)
    elif where == "queue lock":
        monkeypatch.setattr(core.fileio, "open", read_only, raising=False)
    else:  # create_run writes config.json, then status.json
        call = 1 if where == "config.json" else 2
        monkeypatch.setattr(core.fileio, "atomic_write", fail_on_call(call, core.fileio.atomic_write))

    with pytest.raises(RunsFolderError) as refused:
        jobs.submit(config(data))
    assert str(refused.value) == f"PawLab cannot write to {runs} (read-only file system)."
    assert isinstance(refused.value, OSError) and refused.value.errno == errno.EROFS
    left = [path.name for path in runs.iterdir()] if runs.exists() else []
    assert set(left) <= {".lock"}  # no run folder, no temp file
