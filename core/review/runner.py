"""Running the data doctor out of process, with progress a page can poll.

The doctor needs TensorFlow and about a minute of CPU on a cold cache, so the
Review page never runs it in its own process. ``start_review(root)`` starts
``python -m core doctor --data ROOT --save`` in a new session; the child
writes its progress and, at the end, its report into the dataset's review
folder, ``PAWLAB_HOME/reviews/<dataset>-<key>/``:

    progress.json   {"stage": "features", "done": 1200, "total": 3045, "pid": ..., "time": ...}
    report.json     the DoctorReport (core.review.doctor), written whole at the end
    error.txt       one sentence when the doctor failed; log.txt has the traceback

One review per dataset runs at a time (a lock the child holds), and a page
reload or a server restart finds the same review at the same point.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

# The review folder and its report.json live in core.data.splits: the split keeps the
# report's near-duplicate groups together, and reads them there.
from core.data.splits import REPORT_FILE, review_dir
from core.fileio import FileLock, LockTimeout, atomic_write, read_json, write_json
from core.processes import REPO_ROOT, child_environment
from core.review.doctor import DoctorReport, diagnose, report_from_dict
from core.runs.store import pid_alive

PROGRESS_FILE, ERROR_FILE, LOG_FILE, LOCK_FILE = (
    "progress.json",
    "error.txt",
    "log.txt",
    ".lock",
)
PROGRESS_INTERVAL = 0.5  # seconds between progress writes
STARTING = "starting"  # the stage between start_review and the child taking the lock


class ReviewStatus(StrEnum):
    NEVER = "never"  # no review of this dataset yet
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class ReviewState:
    status: ReviewStatus
    stage: str = ""
    done: int = 0
    total: int = 0
    report: DoctorReport | None = None  # the last finished report (also while a new one runs)
    error: str | None = None
    finished: float | None = None  # when report.json was written


def _running(folder: Path) -> bool:
    """Whether a doctor holds the folder's lock, or was started and has not taken it yet."""
    try:
        with FileLock(folder / LOCK_FILE, timeout=0):
            pass
    except LockTimeout:
        return True
    progress = read_json(folder / PROGRESS_FILE).value or {}
    return progress.get("stage") == STARTING and pid_alive(progress.get("pid"))


def review_state(root: str | os.PathLike) -> ReviewState:
    folder = review_dir(root)
    report_record = read_json(folder / REPORT_FILE)
    report = report_from_dict(report_record.value) if report_record.ok else None
    finished = (folder / REPORT_FILE).stat().st_mtime if report is not None else None
    if folder.is_dir() and _running(folder):
        progress = read_json(folder / PROGRESS_FILE).value or {}
        return ReviewState(
            ReviewStatus.RUNNING,
            str(progress.get("stage", STARTING)),
            int(progress.get("done", 0)),
            int(progress.get("total", 0)),
            report,
            finished=finished,
        )
    if (folder / ERROR_FILE).is_file():
        return ReviewState(
            ReviewStatus.FAILED, report=report, finished=finished, error=(folder / ERROR_FILE).read_text().strip()
        )
    if _died_unfinished(folder, finished):
        return ReviewState(
            ReviewStatus.FAILED,
            report=report,
            finished=finished,
            error=f"The review stopped before it finished; its output is in {folder / LOG_FILE}.",
        )
    return ReviewState(ReviewStatus.DONE if report else ReviewStatus.NEVER, report=report, finished=finished)


def _died_unfinished(folder: Path, finished: float | None) -> bool:
    """A review was started after the last report, and its process is gone (killed, crashed)."""
    progress = read_json(folder / PROGRESS_FILE).value or {}
    started = progress.get("time")
    return isinstance(started, (int, float)) and (finished is None or started > finished)


def start_review(root: str | os.PathLike) -> bool:
    """Start the doctor on ``root`` in a child process; False when one is already running."""
    folder = review_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    if _running(folder):
        return False
    (folder / ERROR_FILE).unlink(missing_ok=True)
    env = child_environment()
    with open(folder / LOG_FILE, "ab") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "core", "doctor", "--data", str(Path(root).resolve()), "--save"],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # survives the page's rerun and a server restart
    write_json(
        folder / PROGRESS_FILE, {"stage": STARTING, "done": 0, "total": 0, "pid": child.pid, "time": time.time()}
    )
    return True


def run_and_save(root: str | os.PathLike) -> DoctorReport:
    """The child's work: diagnose under the lock, progress on the way, the report at the end."""
    folder = review_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(folder / LOCK_FILE, timeout=0, what="a review of this dataset"):
        last = 0.0

        def progress(stage: str, done: int, total: int) -> None:
            nonlocal last
            if time.monotonic() - last >= PROGRESS_INTERVAL or done == total:
                last = time.monotonic()
                write_json(
                    folder / PROGRESS_FILE,
                    {"stage": stage, "done": done, "total": total, "pid": os.getpid(), "time": time.time()},
                )

        try:
            report = diagnose(Path(root), progress=progress)
        except Exception as error:
            atomic_write(folder / ERROR_FILE, f"The review failed: {error}".splitlines()[0] + "\n")
            raise
        write_json(folder / REPORT_FILE, report.to_dict())
        return report
