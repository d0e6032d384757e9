"""core.fileio, and the data layer's writers that go through it.

Shared files (scan caches, saved augmentation configs, workspace.json) are
written by several Streamlit sessions and worker processes at once. These
tests hammer each writer from many threads, damage each file, fill the disk
half-way through a line and hold a lock from another process.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
import time

import pytest
from conftest import make_separable_dataset

from core.fileio import FileLock, LockTimeout, append_line, atomic_write, read_json, write_json

THREADS = 8
CALLS_PER_THREAD = 50


def hammer(call) -> list[BaseException]:
    """Run ``call(thread, n)`` CALLS_PER_THREAD times in each of THREADS threads at once."""
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def worker(thread: int) -> None:
        start.wait()
        for n in range(CALLS_PER_THREAD):
            try:
                call(thread, n)
            except Exception as error:
                errors.append(error)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


# --- core.fileio itself -------------------------------------------------------


@pytest.mark.parametrize(
    "content, words",
    [
        (None, "missing"),
        ("", "empty"),
        ("  \n", "empty"),
        ('{"state": "runn', "not valid JSON"),
        ("null", "holds NoneType"),
        ("42", "holds int"),
        ("[1, 2]", "holds list"),
        (b"\xff\xfe\x00garbage", "cannot be read"),
    ],
)
def test_read_json_reports_damage_instead_of_raising(tmp_path, content, words):
    path = tmp_path / "status.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    result = read_json(path)
    assert not result.ok and result.value is None
    assert words in result.problem and "status.json" in result.problem


def test_read_json_accepts_the_expected_type(tmp_path):
    write_json(tmp_path / "a.json", {"x": [1, 2]})
    assert read_json(tmp_path / "a.json").value == {"x": [1, 2]}
    write_json(tmp_path / "b.json", [None, "why"])
    assert read_json(tmp_path / "b.json", expect=list).value == [None, "why"]


def test_readers_never_see_half_a_file(tmp_path):
    path = tmp_path / "big.json"
    write_json(path, {"n": -1, "pad": "x" * 200_000})
    stop = threading.Event()
    problems = []

    def reader():
        while not stop.is_set():
            result = read_json(path)
            if not result.ok:
                problems.append(result.problem)

    watcher = threading.Thread(target=reader)
    watcher.start()
    try:
        errors = hammer(lambda t, n: write_json(path, {"n": n, "pad": "x" * 200_000}))
    finally:
        stop.set()
        watcher.join()
    assert errors == [] and problems == []
    assert [p.name for p in tmp_path.iterdir()] == ["big.json"]  # no temp files left


def _fill_disk_half_way(monkeypatch, raise_error: bool):
    real_write = os.write

    def write(fd, data):
        written = real_write(fd, data[: len(data) // 2])
        if raise_error:
            raise OSError(errno.ENOSPC, "No space left on device")
        return written

    monkeypatch.setattr(os, "write", write)


@pytest.mark.parametrize("raise_error", [True, False], ids=["ENOSPC", "short write"])
def test_append_line_on_a_full_disk_leaves_no_partial_line(tmp_path, monkeypatch, raise_error):
    path = tmp_path / "metrics.jsonl"
    append_line(path, json.dumps({"epoch": 1}))
    with monkeypatch.context() as patch:
        _fill_disk_half_way(patch, raise_error)
        with pytest.raises(OSError) as failure:
            append_line(path, json.dumps({"epoch": 2, "loss": 0.123456789}))
    assert failure.value.errno == errno.ENOSPC
    assert path.read_text() == '{"epoch": 1}\n'
    append_line(path, json.dumps({"epoch": 3}))
    assert [json.loads(line)["epoch"] for line in path.read_text().splitlines()] == [1, 3]


def test_atomic_write_failure_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "config.json"
    write_json(path, {"old": True})
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    with pytest.raises(OSError):
        atomic_write(path, "{}")
    assert read_json(path).value == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


HOLD_LOCK = """
import sys, time
from core.fileio import FileLock
with FileLock(sys.argv[1], timeout=5):
    print("locked", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def lock_held_by_another_process(tmp_path):
    """A path whose lock a child process holds until the test ends."""
    path = tmp_path / "busy.lock"
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.path.dirname(os.path.dirname(__file__)),
    )
    try:
        assert child.stdout.readline().strip() == "locked"
        yield path
    finally:
        child.kill()
        child.wait()


def test_file_lock_times_out_when_another_process_holds_it(lock_held_by_another_process):
    started = time.monotonic()
    with (
        pytest.raises(LockTimeout, match="busy with the test file for over 0.3 s"),
        FileLock(lock_held_by_another_process, timeout=0.3, what="the test file"),
    ):
        pass
    assert 0.3 <= time.monotonic() - started < 5


def test_file_lock_is_free_again_when_the_holder_dies(tmp_path):
    path = tmp_path / "busy.lock"
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.path.dirname(os.path.dirname(__file__)),
    )
    assert child.stdout.readline().strip() == "locked"
    child.kill()
    child.wait()
    with FileLock(path, timeout=2):
        pass


# --- The data layer's writers, many at once --------------------------------------


def test_saving_augmentation_configs_from_many_threads(pawlab_home):
    from core.data.augment import AugmentConfig, list_configs, save_config

    errors = hammer(lambda t, n: save_config(AugmentConfig(f"mine{t % 2}", rotation=n / 100)))
    assert errors == []
    assert {"mine0", "mine1"} <= set(list_configs())


def test_remembering_datasets_from_many_threads(pawlab_home, tmp_path):
    from core.data.workspace import recent_uses, remember_use

    folders = [tmp_path / f"d{i}" for i in range(3)]
    for folder in folders:
        folder.mkdir()
    errors = hammer(lambda t, n: remember_use(folders[(t + n) % 3]))
    assert errors == []
    assert recent_uses()[0].path in [folder.resolve() for folder in folders]


def test_scanning_from_many_threads(pawlab_home, tmp_path):
    from core.data.dataset import scan_dataset

    root = make_separable_dataset(tmp_path / "d", per_class=1, size=16, splits=("",))
    errors = hammer(lambda t, n: scan_dataset(root, use_cache=False))
    assert errors == []


# --- Damaged files are "nothing saved", never a traceback ------------------------


@pytest.mark.parametrize(
    "damage", ["", "null", "42", '["cut', '{"reasons": 1}', "[null]", '{"version": 2, "files": [[null, 3]]}']
)
def test_damaged_scan_cache_means_scan_again(pawlab_home, tiny_dataset, damage):
    from core.data.dataset import scan_dataset

    first = scan_dataset(tiny_dataset)
    (cache_file,) = (pawlab_home / "cache" / "scans").glob("*.json")
    cache_file.write_text(damage)
    assert scan_dataset(tiny_dataset) == first
    assert read_json(cache_file, expect=dict).ok  # rewritten whole


@pytest.mark.parametrize("damage", ["", "null", "42", '{"name": "cut', '{"name": "x", "flip": "sideways"}'])
def test_damaged_augmentation_config_is_left_out(pawlab_home, damage):
    from core.data.augment import PRESETS, AugmentConfig, list_configs, save_config

    save_config(AugmentConfig("good", zoom=0.1))
    (pawlab_home / "augmentations" / "bad.json").write_text(damage)
    assert list(list_configs()) == [*PRESETS, "good"]


@pytest.mark.parametrize("damage", ["", "null", "42", '{"recent": [{"path": 3}]}', '{"dataset": "cut'])
def test_damaged_workspace_means_nothing_saved(pawlab_home, tmp_path, damage):
    from core.data.workspace import recent_uses, remember_use

    pawlab_home.mkdir(parents=True, exist_ok=True)
    (pawlab_home / "workspace.json").write_text(damage)
    assert recent_uses() == []
    remember_use(tmp_path)
    assert [use.path for use in recent_uses()] == [tmp_path.resolve()]


def test_second_session_importing_the_same_dataset_is_told_to_wait(
    pawlab_home, lock_held_by_another_process, monkeypatch, tmp_path
):
    from core.data import acquire

    monkeypatch.setattr(acquire, "DATASET_LOCK_TIMEOUT_SECONDS", 0.3)
    settings = acquire.get_settings()
    settings.datasets_dir.mkdir(parents=True)
    os.link(lock_held_by_another_process, settings.datasets_dir / ".pets.lock")
    with pytest.raises(acquire.ACQUIRE_ERRORS, match="busy with the dataset 'pets'"):
        acquire.import_zip(tmp_path / "never-read.zip", "pets", settings)
