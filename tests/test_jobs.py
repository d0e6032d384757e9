"""The job manager with real worker processes: queue, progress, cancel, crash, chaining."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _runs import WORKER_TIMEOUT, config, log_of, state, wait_for
from conftest import REPO, make_separable_dataset

from core.fileio import FileLock, LockTimeout
from core.runs import control, jobs
from core.runs.store import (
    CANCEL_FILE,
    HEARTBEAT_SECONDS,
    LOG_FILE,
    Executor,
    RunState,
    create_run,
    pid_alive,
    read_metrics,
    read_status,
    run_dirs,
    update_status,
)


@pytest.fixture(autouse=True)
def quiet_workers(monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.setenv("PAWLAB_MAX_CONCURRENT_RUNS", "1")


@pytest.fixture
def data(tmp_path):
    return make_separable_dataset(tmp_path / "data", per_class=12, size=32)


def test_two_submits_at_once_start_one_worker_and_chain(data, pawlab_home):
    """Two processes submit at the same moment: one runs, one waits, then it starts by itself."""
    code = (
        "import sys\n"
        "from core.runs.jobs import submit\n"
        "from core.runs.recipes import make_config\n"
        "print(submit(make_config(sys.argv[1], 'cnn', 2, image_size=32, batch_size=8)))\n"
    )
    submitters = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(data)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=60) for process in submitters]
    assert all(p.returncode == 0 for p in submitters), [err for _, err in outputs]
    runs = run_dirs()
    assert {Path(out.strip()) for out, _ in outputs} == set(runs) and len(runs) == 2
    assert sorted(state(r) for r in runs) == [RunState.QUEUED, RunState.RUNNING]
    first = next(r for r in runs if state(r) == RunState.RUNNING)
    second = next(r for r in runs if r != first)
    assert pid_alive(read_status(first).pid) and read_status(second).pid is None

    # Then, without anyone calling dispatch again: the first trains (and shows
    # progress while it does), finishes, and its worker starts the second.
    progress_seen = {first: False, second: False}
    deadline = time.time() + 2 * WORKER_TIMEOUT
    while not all(state(r) == RunState.COMPLETED for r in runs):
        assert time.time() < deadline, [log_of(r) for r in runs]
        statuses = {r: read_status(r) for r in runs}
        assert [s.state for s in statuses.values()].count(RunState.RUNNING) <= 1
        assert not any(s.state in (RunState.FAILED, RunState.INTERRUPTED) for s in statuses.values()), [
            log_of(r) for r in runs
        ]
        for run_dir, status in statuses.items():
            if status.state == RunState.RUNNING and (status.batch > 0 or read_metrics(run_dir)):
                progress_seen[run_dir] = True
        time.sleep(0.05)
    assert progress_seen[first]
    assert read_status(second).started >= read_status(first).finished - 1
    assert [len(read_metrics(r)) for r in (first, second)] == [2, 2]


def test_cancel_stops_a_running_run_and_a_queued_one(data):
    running = jobs.submit(config(data, epochs=500, batch_size=2))
    waiting = jobs.submit(config(data))
    assert (state(running), state(waiting)) == (RunState.RUNNING, RunState.QUEUED)

    assert jobs.cancel(waiting) == RunState.CANCELLED  # queued: at once, no process involved

    wait_for(lambda: read_status(running).batch > 0, what="training to start")
    asked = time.time()
    assert jobs.cancel(running) == RunState.RUNNING  # the worker stops after its current batch
    assert (running / CANCEL_FILE).exists()
    wait_for(lambda: state(running) == RunState.CANCELLED, timeout=15, what="cancel")
    assert time.time() - asked < 10
    pid = read_status(running).pid
    wait_for(lambda: not pid_alive(pid), timeout=30, what="worker to exit")
    assert len(read_metrics(running)) < 500

    # The cancelled queued run never started, even though a slot became free.
    assert state(waiting) == RunState.CANCELLED and read_status(waiting).pid is None


def test_a_failing_run_records_why_and_the_caller_carries_on(tmp_path):
    run_dir = jobs.submit(config(tmp_path / "no-such-folder"))  # returns at once, never raises
    wait_for(lambda: not state(run_dir).active, what="the run to fail")
    status = read_status(run_dir)
    assert status.state == RunState.FAILED, log_of(run_dir)
    assert "no-such-folder" in status.error and "is not a folder" in status.error
    assert not pid_alive(status.pid) or wait_for(lambda: not pid_alive(status.pid), 30)
    # The worker's stderr is log.txt: the traceback is there, once; status.json has the sentence.
    log = (run_dir / LOG_FILE).read_text()
    assert log.count("Traceback (most recent call last)") == 1 and "is not a folder" in log
    assert "Traceback" not in status.error and "\n" not in status.error


def test_a_killed_worker_is_marked_interrupted(data):
    run_dir = jobs.submit(config(data, epochs=500, batch_size=2))
    wait_for(lambda: read_status(run_dir).batch > 0, what="training to start")
    # The heartbeat keeps coming while the worker lives.
    first = read_status(run_dir).heartbeat
    wait_for(lambda: read_status(run_dir).heartbeat > first, timeout=30, what="a newer heartbeat")
    pid = read_status(run_dir).pid

    os.kill(pid, signal.SIGKILL)  # no chance to write anything
    wait_for(lambda: not pid_alive(pid), timeout=30, what="the worker to die")
    assert state(run_dir) == RunState.RUNNING  # what the status file still claims

    assert jobs.recover() == [run_dir]
    status = read_status(run_dir)
    assert status.state == RunState.INTERRUPTED and "stopped unexpectedly" in status.error
    assert jobs.recover() == []  # marked once


# Decisions without workers: fake statuses, no TensorFlow.


def test_recover_marks_runs_whose_process_is_gone(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    run_dir = create_run(config(tmp_path), state=RunState.QUEUED)
    update_status(run_dir, state=RunState.RUNNING, pid=gone.pid, heartbeat=time.time())
    alive = create_run(config(tmp_path), state=RunState.RUNNING)  # this very process trains it

    assert jobs.recover() == [run_dir]
    assert state(run_dir) == RunState.INTERRUPTED and state(alive) == RunState.RUNNING


def test_recover_sees_a_reused_pid_behind_a_stale_heartbeat(tmp_path):
    """After a reboot the old pid may belong to another program; an old heartbeat gives it away."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run_dir = create_run(config(tmp_path), state=RunState.QUEUED)
        update_status(
            run_dir, state=RunState.RUNNING, pid=sleeper.pid, heartbeat=time.time() - 2 * jobs.STALE_HEARTBEAT_SECONDS
        )
        fresh = create_run(config(tmp_path), state=RunState.QUEUED)
        update_status(fresh, state=RunState.RUNNING, pid=sleeper.pid, heartbeat=time.time())
        assert jobs.recover() == [run_dir]
        assert state(fresh) == RunState.RUNNING  # a live pid with a fresh heartbeat is left alone
    finally:
        sleeper.kill()
        sleeper.wait()


def test_dispatch_respects_the_concurrency_limit(tmp_path, monkeypatch):
    started = []
    monkeypatch.setattr(jobs, "_start_worker", lambda run_dir: started.append(run_dir) or os.getpid())
    monkeypatch.setenv("PAWLAB_MAX_CONCURRENT_RUNS", "2")
    runs = []
    for n in range(3):
        queued = config(tmp_path)
        queued.created = 1000.0 + n
        runs.append(create_run(queued))

    assert jobs.dispatch() == runs[:2] == started  # oldest first
    assert [state(r) for r in runs] == [RunState.RUNNING, RunState.RUNNING, RunState.QUEUED]
    assert jobs.dispatch() == []  # still two running
    update_status(runs[0], state=RunState.COMPLETED)
    assert jobs.dispatch() == [runs[2]]


def test_cancel_of_a_run_whose_process_is_gone_is_immediate(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    run_dir = create_run(config(tmp_path))
    update_status(run_dir, state=RunState.RUNNING, pid=gone.pid, heartbeat=time.time())
    assert jobs.cancel(run_dir) == RunState.CANCELLED
    assert state(run_dir) == RunState.CANCELLED


def process_state(pid: int) -> str | None:
    """The one-letter state in /proc/PID/stat ("Z": a zombie), or None once the pid is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return None


def test_finished_workers_do_not_linger_as_zombies(tmp_path):
    """The app lives for days and starts many workers; each one's exit is collected.

    A real worker, started by the job manager itself: its run fails in its
    first second (no dataset), before TensorFlow is imported.
    """
    run_dir = jobs.submit(config(tmp_path / "no-such-folder"))
    pid = read_status(run_dir).pid
    assert process_state(pid) is not None  # our child, not collected yet
    wait_for(lambda: state(run_dir) == RunState.FAILED, what="the worker to finish its run")
    # Exited, and nobody has collected its exit yet: a zombie, for now.
    wait_for(lambda: process_state(pid) == "Z", timeout=30, what="the worker to exit")
    jobs.dispatch()  # what the app does on its next page load
    assert process_state(pid) is None


# The queue keeps moving after a worker is killed (SIGKILL, out of memory): its own
# ``finally: dispatch()`` never runs, so whoever polls must start what waits.


def fake_workers(monkeypatch) -> list[Path]:
    """Runs 'started' are recorded, no process is spawned; their pid is this process."""
    started = []
    monkeypatch.setattr(jobs, "_start_worker", lambda run_dir: started.append(run_dir) or os.getpid())
    return started


def running_run_whose_worker_is_gone(tmp_path) -> Path:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    run_dir = create_run(config(tmp_path), state=RunState.QUEUED)
    update_status(run_dir, state=RunState.RUNNING, pid=gone.pid, heartbeat=time.time())
    return run_dir


def test_recover_starts_the_run_queued_behind_a_dead_worker(tmp_path, monkeypatch):
    started = fake_workers(monkeypatch)
    dead = running_run_whose_worker_is_gone(tmp_path)
    waiting = create_run(config(tmp_path))

    assert jobs.recover() == [dead]
    assert started == [waiting] and state(waiting) == RunState.RUNNING


def test_tick_interrupts_a_dead_run_and_starts_the_next(tmp_path, monkeypatch):
    started = fake_workers(monkeypatch)
    dead = running_run_whose_worker_is_gone(tmp_path)
    waiting = create_run(config(tmp_path))

    changes = jobs.tick()
    assert (changes.interrupted, changes.started, changes.busy) == ([dead], [waiting], False)
    assert started == [waiting]  # a worker was started for it
    assert state(dead) == RunState.INTERRUPTED and state(waiting) == RunState.RUNNING
    assert jobs.tick() == jobs.QueueChanges()  # nothing more to do


def test_tick_takes_no_lock_when_nothing_changed(tmp_path, monkeypatch, pawlab_home):
    """The page polls tick() every second: with nothing to do it must not queue behind anyone."""
    monkeypatch.setattr(jobs, "TICK_LOCK_TIMEOUT_SECONDS", 5.0)
    fake_workers(monkeypatch)
    create_run(config(tmp_path), state=RunState.RUNNING)  # alive: this process trains it
    create_run(config(tmp_path))  # queued, but the one slot is taken
    with FileLock(pawlab_home / "runs" / ".lock"):  # as if another process were deciding
        asked = time.monotonic()
        assert jobs.tick() == jobs.QueueChanges()
        assert time.monotonic() - asked < 1.0


def test_tick_on_a_busy_queue_says_so_instead_of_freezing(tmp_path, monkeypatch, pawlab_home):
    monkeypatch.setattr(jobs, "TICK_LOCK_TIMEOUT_SECONDS", 0.3)
    fake_workers(monkeypatch)
    create_run(config(tmp_path))  # queued with a free slot: work to do
    with FileLock(pawlab_home / "runs" / ".lock"):
        asked = time.monotonic()
        assert jobs.tick().busy
        assert time.monotonic() - asked < 2.0
    assert jobs.tick().started  # the next poll does it


def test_a_stale_heartbeat_interrupts_a_run_whatever_its_pid_says(tmp_path):
    """A recycled pid may even look like a PawLab worker: the heartbeat decides."""
    run_dir = create_run(config(tmp_path), state=RunState.QUEUED)
    # A live process whose command line names the run, as a worker's would.
    look_alike = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "core", "worker", str(run_dir)])
    try:
        update_status(
            run_dir,
            state=RunState.RUNNING,
            pid=look_alike.pid,
            heartbeat=time.time() - jobs.STALE_HEARTBEAT_SECONDS - 1,
        )
        assert jobs.recover() == [run_dir]
        assert state(run_dir) == RunState.INTERRUPTED
    finally:
        look_alike.kill()
        look_alike.wait()


def test_the_stale_heartbeat_is_many_missed_beats_but_well_under_a_minute():
    beats = jobs.STALE_HEARTBEAT_SECONDS / HEARTBEAT_SECONDS
    assert beats == int(beats) and beats >= 10  # a loaded machine misses a few, not ten
    assert jobs.STALE_HEARTBEAT_SECONDS <= 30


def test_the_heartbeat_survives_a_write_that_fails(tmp_path, monkeypatch):
    """A lock held too long or a full disk must not stop the heartbeat of a live run."""
    monkeypatch.setattr(control, "HEARTBEAT_SECONDS", 0.05)
    beats = []

    def flaky_update(run_dir, **changes):
        beats.append(changes)
        if len(beats) <= 2:
            raise LockTimeout("busy") if len(beats) == 1 else OSError(errno.ENOSPC, "full")

    monkeypatch.setattr(control, "update_status", flaky_update)
    with control.RunControl(tmp_path):
        wait_for(lambda: len(beats) >= 4, timeout=10, what="heartbeats after the failed ones")


def test_a_ray_run_or_a_run_on_another_machine_lives_by_its_heartbeat_not_a_pid(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that means nothing on this machine
    on_ray = create_run(config(tmp_path), state=RunState.QUEUED)
    update_status(on_ray, state=RunState.RUNNING, executor=Executor.RAY, pid=gone.pid, heartbeat=time.time())
    elsewhere = create_run(config(tmp_path), state=RunState.QUEUED)
    update_status(elsewhere, state=RunState.RUNNING, host="another-node", pid=gone.pid, heartbeat=time.time())
    silent = create_run(config(tmp_path), state=RunState.QUEUED)
    update_status(
        silent, state=RunState.RUNNING, executor=Executor.RAY, heartbeat=time.time() - 2 * jobs.STALE_HEARTBEAT_SECONDS
    )

    assert jobs.recover() == [silent]
    assert state(on_ray) == state(elsewhere) == RunState.RUNNING


def test_with_ray_address_set_dispatch_hands_runs_to_a_launcher_and_records_no_pid(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    monkeypatch.setattr(jobs, "_start_worker", lambda run_dir: os.getpid())
    run_dir = jobs.submit(config(tmp_path))
    status = read_status(run_dir)
    assert (status.state, status.executor, status.pid) == (RunState.RUNNING, Executor.RAY, None)
    monkeypatch.delenv("RAY_ADDRESS")
    second = create_run(config(tmp_path), state=RunState.QUEUED)
    monkeypatch.setenv("PAWLAB_MAX_CONCURRENT_RUNS", "2")
    jobs.dispatch()
    assert (read_status(second).executor, read_status(second).pid) == (Executor.LOCAL, os.getpid())


@pytest.mark.parametrize(
    "change, message",
    [
        ({"epochs": 0}, "epochs must be a whole number"),
        ({"learning_rate": -1}, "learning rate must be positive"),
        ({"image_size": 8}, "image size"),
        ({"dropout": 1.5}, "dropout"),
        ({"cpus": 0}, "CPUs"),
        ({"arch": "resnet"}, "Unknown architecture"),
    ],
)
def test_submit_refuses_a_config_read_back_from_a_file_with_a_bad_value(tmp_path, change, message):
    """A sweep's best config comes back from sweep.json: it is checked again before it is queued."""
    from core.runs.recipes import TrainConfig

    edited = TrainConfig.from_dict(config(tmp_path).to_dict() | change)
    with pytest.raises(ValueError, match=message):
        jobs.submit(edited)
    assert run_dirs() == []
