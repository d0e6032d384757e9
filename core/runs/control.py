"""How a training process and the world talk while it trains: cancel, heartbeat, progress.

``RunControl`` is shared by core.runs.worker (claiming the run, recording the
outcome) and core.runs.training (Keras callbacks reporting batches and
epochs). No TensorFlow here.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from core.runs.store import (
    CANCEL_FILE,
    HEARTBEAT_SECONDS,
    Executor,
    RunFileError,
    RunState,
    pid_alive,
    update_status,
)

# Batch progress goes to status.json at most this often (seconds).
PROGRESS_INTERVAL = 0.25
# Decoded images that outgrow memory are cached here during a run, removed after it.
DECODED_CACHE_DIR = ".cache"


class RunCancelled(Exception):
    """Someone asked the run to stop (cancel file or SIGTERM)."""


class RunControl:
    """Cancel requests, heartbeat and throttled status writes for one run."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.cancel_file = run_dir / CANCEL_FILE
        self.cancel_event = threading.Event()
        self._last_progress = 0.0
        self._stop_heartbeat = threading.Event()
        # Called with each finished epoch's metrics record (a sweep's trial reports to Ray Tune).
        self.epoch_listeners: list[Callable[[dict], None]] = []
        # What trains the run, recorded by claim() with this machine's name: the Train
        # page shows it, and core.runs.jobs only trusts a pid on the machine it belongs to.
        self.executor = Executor.LOCAL
        self.ray_node: str | None = None

    def epoch_finished(self, record: dict) -> None:
        for listener in self.epoch_listeners:
            listener(record)

    def cancel_requested(self) -> bool:
        if not self.cancel_event.is_set() and self.cancel_file.exists():
            self.cancel_event.set()
        return self.cancel_event.is_set()

    def check(self) -> None:
        if self.cancel_requested():
            raise RunCancelled()

    def status(self, *, force: bool = True, **changes) -> None:
        """Write ``changes`` to status.json; unforced writes are throttled."""
        now = time.monotonic()
        if not force and now - self._last_progress < PROGRESS_INTERVAL:
            return
        self._last_progress = now
        update_status(self.run_dir, heartbeat=time.time(), **changes)

    def claim(self) -> bool:
        """Mark the run as trained by this process; False if it must not run here."""
        me = os.getpid()

        def claimable(status):
            if not status.state.active:
                return False  # cancelled while queued, or already finished
            # Not when another live process trains it; the process that started this one
            # (a sweep's worker, core.runs.sweep_driver) hands its run over.
            return status.pid in (None, me, os.getppid()) or not pid_alive(status.pid)

        if self.cancel_requested():
            update_status(self.run_dir, when=claimable, state=RunState.CANCELLED, finished=time.time())
            return False
        now = time.time()
        status = update_status(
            self.run_dir,
            when=claimable,
            state=RunState.RUNNING,
            pid=me,
            started=now,
            heartbeat=now,
            finished=None,
            error=None,
            executor=self.executor,
            host=socket.gethostname(),
            ray_node=self.ray_node,
        )
        return status.state == RunState.RUNNING and status.pid == me

    def _beat(self) -> None:
        while not self._stop_heartbeat.wait(HEARTBEAT_SECONDS):
            try:
                update_status(self.run_dir, heartbeat=time.time())
            except (OSError, RunFileError):  # LockTimeout, a full disk, a damaged status.json
                # A missed beat is nothing; a heartbeat thread that died would get
                # this live run interrupted (core.runs.jobs.STALE_HEARTBEAT_SECONDS).
                continue

    def __enter__(self):
        self._heartbeat = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        self._heartbeat.start()
        self._previous_sigterm = None
        if threading.current_thread() is threading.main_thread():
            self._previous_sigterm = signal.signal(signal.SIGTERM, lambda *_: self.cancel_event.set())
        return self

    def __exit__(self, *exc):
        self._stop_heartbeat.set()
        if self._heartbeat.is_alive():
            self._heartbeat.join()
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
        return False
