"""A job manager made of files: queue, start, cancel and recover training runs.

There is no daemon. The queue is the runs folder itself: a run whose
status.json says "queued" waits for a free slot. ``dispatch()`` starts the
oldest queued runs while fewer than ``settings.max_concurrent_runs`` are
running, each in its own worker process::

    python -m core worker RUN_DIR     (new session, output in RUN_DIR/log.txt)

When a worker finishes, it calls ``dispatch()`` itself, so queued runs keep
starting one after another with no page open. Every decision is taken under
an exclusive ``fcntl.flock`` on ``runs_dir/.lock``: two submits at the same
moment, from threads or processes, start one worker, not two. A process that
hangs holding the lock makes the others give up after
``QUEUE_LOCK_TIMEOUT_SECONDS`` with a LockTimeout, never freeze.

A run marked running whose process is gone (killed, out of memory, machine
rebooted) is marked "interrupted" by ``recover()``, which then starts what
is queued behind it. A killed worker never reaches its own ``dispatch()``,
so the Train page polls ``tick()``: recover and dispatch, and nearly free
when nothing changed (no lock taken). A run is gone when its heartbeat is
older than ``STALE_HEARTBEAT_SECONDS``, whatever its pid says (pids are
reused); a pid that no longer exists says so sooner. Its model.keras, if
any, is the best model up to the moment it stopped.

This module never imports TensorFlow: the app imports it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from core.config import get_settings
from core.fileio import FileLock, LockTimeout
from core.netns import in_loopback_only_network
from core.processes import REPO_ROOT, child_environment
from core.runs.executors import configured_executor, run_on_ray
from core.runs.recipes import TrainConfig, check_config
from core.runs.search import check_knobs
from core.runs.store import (
    CANCEL_FILE,
    HEARTBEAT_SECONDS,
    LOG_FILE,
    Executor,
    RunFileError,
    RunState,
    RunStatus,
    create_run,
    pid_alive,
    read_config,
    read_status,
    run_dirs,
    runs_root,
    update_status,
    writing_to,
)
from core.runs.worker import execute_run

# A running run whose heartbeat is this old is interrupted, whatever its pid
# says: a worker beats every HEARTBEAT_SECONDS, and 15 missed beats is not a
# busy machine but a dead (or frozen) process whose pid may be reused.
STALE_HEARTBEAT_SECONDS = 15 * HEARTBEAT_SECONDS
# How long submit, cancel and dispatch wait for another process's queue
# decision before giving up with LockTimeout: what a page can afford.
QUEUE_LOCK_TIMEOUT_SECONDS = 10.0
# tick() is a poll: when the queue is busy it tries again next time.
TICK_LOCK_TIMEOUT_SECONDS = 1.0

# Worker processes this process started, by pid, so that finished ones are
# reaped (no zombies) and their exit is seen at once.
_children: dict[int, subprocess.Popen] = {}


def _reap() -> None:
    """Collect the exit of workers that have finished, so none lingers as a zombie."""
    for pid, child in list(_children.items()):
        if child.poll() is not None:
            del _children[pid]


def _alive(pid: int | None) -> bool:
    child = _children.get(pid) if pid is not None else None
    if pid is not None and child is not None and child.poll() is not None:
        del _children[pid]  # reaped
        return False
    # A killed multi-threaded process is a zombie for a moment before it can be
    # reaped; pid_alive counts zombies as dead.
    return pid_alive(pid)


def _worker_gone(status: RunStatus) -> bool:
    """Whether the process training a running run is gone (see the module docstring)."""
    if status.heartbeat_age > STALE_HEARTBEAT_SECONDS:
        return True  # whatever the pid says: it may belong to another program by now
    if status.executor == Executor.RAY or status.host not in (None, socket.gethostname()):
        return False  # a pid on another machine (or a Ray worker's) means nothing here
    return not _alive(status.pid)  # the faster sign, when the process is clearly gone


@contextlib.contextmanager
def _queue_lock(runs_dir: Path, timeout: float | None = None):
    """The queue's lock; a failed write inside (read-only or full home) is one RunsFolderError."""
    with writing_to(runs_dir):
        runs_dir.mkdir(parents=True, exist_ok=True)
        with FileLock(
            runs_dir / ".lock",
            what="the training queue",
            timeout=QUEUE_LOCK_TIMEOUT_SECONDS if timeout is None else timeout,
        ):
            yield


def _mark_interrupted(runs_dir: Path) -> list[Path]:
    _reap()
    marked = []
    for run_dir, status in _readable_runs(runs_dir):
        if status.state == RunState.RUNNING and _worker_gone(status):
            update_status(
                run_dir,
                state=RunState.INTERRUPTED,
                finished=time.time(),
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
    """Mark runs whose training process is gone as interrupted, then start what is
    queued behind them; returns the interrupted runs."""
    root = runs_root(runs_dir)
    with _queue_lock(root):
        interrupted = _mark_interrupted(root)
    dispatch(root)  # the only place that starts workers (tests switch it off)
    return interrupted


@dataclass(frozen=True)
class QueueChanges:
    """What one ``tick()`` did."""

    interrupted: list[Path] = field(default_factory=list)  # their process was gone
    started: list[Path] = field(default_factory=list)  # queued runs given a worker
    busy: bool = False  # another process held the queue; nothing done, try next tick


def tick(runs_dir: str | os.PathLike | None = None) -> QueueChanges:
    """Keep the queue moving; what the Train page polls while it is open.

    Reads the status files without a lock, and only when a running run's
    process is gone or a queued run has a free slot does it recover and
    dispatch, under the lock. A queue held by another process for longer than
    TICK_LOCK_TIMEOUT_SECONDS is ``busy``: the next tick tries again.
    """
    root = runs_root(runs_dir)
    if not _needs_attention(_readable_runs(root)):
        return QueueChanges()
    try:
        with _queue_lock(root, timeout=TICK_LOCK_TIMEOUT_SECONDS):
            interrupted = _mark_interrupted(root)
    except LockTimeout:
        return QueueChanges(busy=True)
    return QueueChanges(interrupted=interrupted, started=dispatch(root))


def _needs_attention(runs: list[tuple[Path, RunStatus]]) -> bool:
    _reap()
    running = [status for _, status in runs if status.state == RunState.RUNNING]
    if any(_worker_gone(status) for status in running):
        return True
    has_queued = any(status.state == RunState.QUEUED for _, status in runs)
    return has_queued and len(running) < get_settings().max_concurrent_runs


def _start_worker(run_dir: Path) -> int:
    env = child_environment()  # the worker imports ``core`` from this checkout whatever its cwd
    with open(run_dir / LOG_FILE, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "core", "worker", str(run_dir)],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
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
            now, executor = time.time(), configured_executor()
            update_status(
                run_dir,
                state=RunState.RUNNING,
                pid=None,
                started=now,
                heartbeat=now,
                executor=executor,
                host=socket.gethostname(),
                ray_node=None,
            )
            try:
                pid = _start_worker(run_dir)
            except OSError as error:
                update_status(
                    run_dir,
                    state=RunState.FAILED,
                    finished=time.time(),
                    error=f"The training process could not be started: {error}",
                )
                continue
            if executor == Executor.LOCAL:  # a Ray run's launcher is not what trains it
                update_status(run_dir, pid=pid, when=lambda status: status.pid is None)
            started.append(run_dir)
            free -= 1
    return started


def submit(config: TrainConfig, runs_dir: str | os.PathLike | None = None) -> Path:
    """Queue a new run and start it if a slot is free; returns its folder at once.

    The run is created under the queue lock, so a queue that another process
    holds (LockTimeout) or a home that cannot be written (RunsFolderError)
    refuses it before anything is written.
    """
    check_config(config)  # whatever built it: a form, a command, a file read back
    check_knobs(config)  # each knob inside its bounds, a search's augmentations saved
    root = runs_root(runs_dir)
    with _queue_lock(root):
        run_dir = create_run(config, root, state=RunState.QUEUED)
    dispatch(root)
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
            if _worker_gone(status):
                update_status(run_dir, state=RunState.CANCELLED, finished=time.time())
                return RunState.CANCELLED
        return status.state


def work(run_dir: str | os.PathLike) -> RunState:
    """A worker process's whole job: its run, then start the next queued one.

    A sweep is driven here (core.runs.sweep); a run trains here, or on the
    Ray cluster when RAY_ADDRESS is set (core.runs.executors). Its stdout and
    stderr are the run's log.txt (see ``_start_worker``).
    """
    run_dir = Path(run_dir).resolve()
    try:
        if read_config(run_dir).is_sweep:
            from core.runs.sweep_driver import drive_sweep

            return drive_sweep(run_dir)
        if configured_executor() == Executor.RAY:
            return run_on_ray(run_dir)
        return execute_run(run_dir, stderr_is_log=True)
    except RunFileError as error:
        print(error, file=sys.stderr, flush=True)  # a damaged run: nothing to train
        return RunState.FAILED
    finally:
        # A sweep's child in its private network leaves the next run to its parent, which
        # has the machine's network (a run may need to download, or reach a Ray cluster).
        if not in_loopback_only_network():
            dispatch(run_dir.parent)
