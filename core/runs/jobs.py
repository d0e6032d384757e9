"""A job manager made of files: queue, start, cancel and recover training runs.

There is no daemon. The queue is the runs folder itself: a run whose
status.json says "queued" waits for a free slot. ``dispatch()`` starts the
oldest queued runs while fewer than ``settings.max_concurrent_runs`` are
running, each in its own worker process::

    python -m core worker RUN_DIR     (new session, output in RUN_DIR/log.txt)

When a worker finishes, it calls ``dispatch()`` itself, so queued runs keep
starting one after another with no page open. Every decision is taken under
an exclusive ``fcntl.flock`` on ``runs_dir/.lock``: two submits at the same
moment, from threads or processes, start one worker, not two.

A run marked running whose process is gone (killed, crashed, machine
rebooted) is marked "interrupted" by ``recover()``, which every dispatch
does first and the app calls at start-up. Its model.keras, if any, is the
best model up to the moment it stopped.

This module never imports TensorFlow: the app imports it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import core
from core.config import get_settings
from core.fileio import FileLock
from core.runs.recipes import TrainConfig
from core.runs.store import (
    CANCEL_FILE, LOG_FILE, RunFileError, RunState, RunStatus, create_run, pid_alive,
    read_status, run_dirs, runs_root, update_status,
)
from core.runs.worker import execute_run

# A running run whose heartbeat is older than this, and whose pid now belongs
# to some other program (pids are reused after a reboot), is interrupted.
STALE_HEARTBEAT_SECONDS = 60.0
REPO_ROOT = Path(core.__file__).resolve().parent.parent

# Worker processes this process started, by pid, so that finished ones are
# reaped (no zombies) and their exit is seen at once.
_children: dict[int, subprocess.Popen] = {}


def _reap() -> None:
    """Collect the exit of workers that have finished, so none lingers as a zombie."""
    for pid, child in list(_children.items()):
        if child.poll() is not None:
            del _children[pid]


def _alive(pid: int | None) -> bool:
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        del _children[pid]  # reaped
        return False
    # A killed multi-threaded process is a zombie for a moment before it can be
    # reaped; pid_alive counts zombies as dead.
    return pid_alive(pid)


def _looks_like_ours(pid: int, run_dir: Path) -> bool:
    """Whether process ``pid`` is a PawLab worker or trainer (False if unknown)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return True  # no /proc: cannot tell, trust the pid
    return run_dir.name in command or "core train" in command


def _worker_gone(status: RunStatus, run_dir: Path) -> bool:
    if not _alive(status.pid):
        return True
    stale = status.heartbeat_age > STALE_HEARTBEAT_SECONDS
    return stale and not _looks_like_ours(status.pid, run_dir)


@contextlib.contextmanager
def _queue_lock(runs_dir: Path):
    runs_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(runs_dir / ".lock", what="the training queue"):
        yield


def _mark_interrupted(runs_dir: Path) -> list[Path]:
    _reap()
    marked = []
    for run_dir, status in _readable_runs(runs_dir):
        if status.state == RunState.RUNNING and _worker_gone(status, run_dir):
            update_status(
                run_dir, state=RunState.INTERRUPTED, finished=time.time(),
                error="The training process stopped unexpectedly (killed, crashed, or the "
                      f"machine restarted). Its output is in {LOG_FILE}.",
            )
            marked.append(run_dir)
    return marked


def _readable_runs(runs_dir: Path) -> list[tuple[Path, RunStatus]]:
    """(folder, status) of every run whose status can be read; damaged runs are skipped."""
    readable = []
    for run_dir in run_dirs(runs_dir):
        try:
            readable.append((run_dir, read_status(run_dir)))
        except (RunFileError, OSError):
            continue  # listed with its problem by list_runs; it must not stop the queue
    return readable


def recover(runs_dir: str | os.PathLike | None = None) -> list[Path]:
    """Mark runs whose training process is gone as interrupted; returns them."""
    root = runs_root(runs_dir)
    with _queue_lock(root):
        return _mark_interrupted(root)


def _start_worker(run_dir: Path) -> int:
    env = dict(os.environ)
    # The worker imports ``core`` from this checkout whatever its cwd.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    with open(run_dir / LOG_FILE, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "core", "worker", str(run_dir)],
            cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the app's Ctrl-C and restarts
        )
    _children[process.pid] = process
    return process.pid


def dispatch(runs_dir: str | os.PathLike | None = None) -> list[Path]:
    """Start queued runs, oldest first, while there are free slots; returns those started."""
    root = runs_root(runs_dir)
    started = []
    with _queue_lock(root):
        _mark_interrupted(root)
        runs = _readable_runs(root)
        free = get_settings().max_concurrent_runs - sum(s.state == RunState.RUNNING for _, s in runs)
        for run_dir, status in runs:
            if free <= 0:
                break
            if status.state != RunState.QUEUED:
                continue
            if (run_dir / CANCEL_FILE).exists():
                update_status(run_dir, state=RunState.CANCELLED, finished=time.time())
                continue
            # "running" before the worker exists, so that however fast it is, it
            # never finds its run still queued, and nothing it writes is overwritten.
            now = time.time()
            update_status(run_dir, state=RunState.RUNNING, pid=None, started=now, heartbeat=now)
            try:
                pid = _start_worker(run_dir)
            except OSError as error:
                update_status(run_dir, state=RunState.FAILED, finished=time.time(),
                              error=f"The training process could not be started: {error}")
                continue
            update_status(run_dir, pid=pid, when=lambda status: status.pid is None)
            started.append(run_dir)
            free -= 1
    return started


def submit(config: TrainConfig, runs_dir: str | os.PathLike | None = None) -> Path:
    """Queue a new run and start it if a slot is free; returns its folder at once."""
    run_dir = create_run(config, runs_dir, state=RunState.QUEUED)
    dispatch(run_dir.parent)
    return run_dir


def cancel(run_dir: str | os.PathLike) -> RunState:
    """Stop a run: a queued one at once, a running one after its current batch.

    Returns the state right after the request ("cancelled", or "running"
    until the worker notices the cancel file, or the finished state).
    """
    run_dir = Path(run_dir)
    with _queue_lock(run_dir.parent):
        status = read_status(run_dir)
        if status.state == RunState.QUEUED:
            update_status(run_dir, state=RunState.CANCELLED, finished=time.time())
            return RunState.CANCELLED
        if status.state == RunState.RUNNING:
            (run_dir / CANCEL_FILE).touch()
            if _worker_gone(status, run_dir):
                update_status(run_dir, state=RunState.CANCELLED, finished=time.time())
                return RunState.CANCELLED
        return status.state


def work(run_dir: str | os.PathLike) -> RunState:
    """A worker process's whole job: train the run, then start the next queued one.

    Its stdout and stderr are the run's log.txt (see ``_start_worker``).
    """
    run_dir = Path(run_dir).resolve()
    try:
        return execute_run(run_dir, stderr_is_log=True)
    finally:
        dispatch(run_dir.parent)
