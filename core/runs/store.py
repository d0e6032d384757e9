"""The run store: one folder per training run, readable while it trains.

A run is a folder ``PAWLAB_HOME/runs/<id>/``. The id sorts by creation time:
``20261128-153012-cnn-ab12`` (date, time, architecture, random suffix). The
process that trains writes the files; anyone (the Train page, the CLI, the
job manager) reads them. Files are replaced atomically (core.fileio), so a
reader never sees half a file, and a damaged file is reported, not raised
past the caller. This module never imports TensorFlow.

Files in a run folder
---------------------
``config.json``
    The ``TrainConfig`` (core.runs.recipes): everything needed to reproduce
    the run. Written once when the run is created, never rewritten.

``facts.json``
    ``RunFacts``: what the training process found out when it started
    (classes, photos per split, mode, strategy, replicas, library versions).

``split.json``
    The files of each split, relative to the dataset root
    (core.data.splits.Splits.to_record), so evaluation and later checks use
    exactly the photos the run was trained and tested on.

``status.json``
    ``RunStatus``: state, pid, heartbeat (refreshed every
    ``HEARTBEAT_SECONDS``), started/finished, phase, epoch and batch progress,
    mode, and a one-line error. State changes: queued -> running
    (core.runs.jobs.dispatch) -> completed | failed | cancelled; queued ->
    cancelled; running -> interrupted when the process disappeared without a
    word: its heartbeat stopped, or its pid is gone (core.runs.jobs.tick).

``metrics.jsonl``
    One JSON object per finished epoch, appended whole when the epoch ends:
    ``epoch`` (1-based, across phases), ``phase``, ``loss``, ``accuracy``,
    ``val_loss``, ``val_accuracy``, ``seconds``, ``images_per_second``,
    ``time``. A cancelled, half-finished epoch is not written.

``model.keras``
    The best model so far by validation accuracy, replaced atomically. It
    takes images (float32, [0, 255]) and returns logits; class names are the
    facts' ``classes``.

``evaluation.json``
    Written by ``core.runs.evaluation.evaluate_run`` on the test split.

``tensorboard/``, ``log.txt``, ``cancel``
    Keras TensorBoard logs; the worker's output, tracebacks included; present
    when someone asked the run to stop (core.runs.jobs.cancel).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path

from core.config import get_settings
from core.fileio import CANNOT_WRITE, FileLock, append_line, cannot_write_reason, read_json, write_json
from core.runs.recipes import TrainConfig


class RunState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    STOPPED = "stopped"  # a sweep's trial its scheduler stopped early (core.runs.sweep)

    @property
    def active(self) -> bool:
        return self in ACTIVE_STATES


ACTIVE_STATES = frozenset({RunState.QUEUED, RunState.RUNNING})


class Phase(StrEnum):
    FEATURES = "features"  # images pushed once through a frozen base
    TRAIN = "train"
    FINE_TUNE = "fine_tune"
    EVALUATE = "evaluate"


class Executor(StrEnum):
    """What trains a run (core.runs.executors)."""

    LOCAL = "local"  # a worker process on the machine that serves PawLab
    RAY = "ray"  # a Ray task on a node of the cluster RAY_ADDRESS names


class Mode(StrEnum):
    CACHED_FEATURES = "cached_features"  # the head trains on a frozen base's cached features
    END_TO_END = "end_to_end"  # images through the whole model every epoch


# The training process refreshes status.json's heartbeat this often.
HEARTBEAT_SECONDS = 2.0
# The longest error message kept in status.json; the whole traceback is in log.txt.
ERROR_MESSAGE_CHARS = 500
# How long a status change waits for another process's change before giving up (seconds):
# a page calls update_status too, and must not freeze behind a process that hangs.
STATUS_LOCK_TIMEOUT_SECONDS = 10.0

CONFIG_FILE = "config.json"
FACTS_FILE = "facts.json"
SPLIT_FILE = "split.json"
STATUS_FILE = "status.json"
METRICS_FILE = "metrics.jsonl"
MODEL_FILE = "model.keras"
EVALUATION_FILE = "evaluation.json"
TENSORBOARD_DIR = "tensorboard"
LOG_FILE = "log.txt"
CANCEL_FILE = "cancel"
STATUS_LOCK_FILE = ".status.lock"


class RunFileError(ValueError):
    """A run file that is missing or damaged; the message names the run and the file."""


class RunsFolderError(OSError):
    """The runs folder cannot be written (read-only, full, not allowed).

    An OSError with the original errno and the folder as its filename, whose
    text is one sentence: "PawLab cannot write to /path (the disk is full)."
    """

    def __init__(self, folder: str | os.PathLike, error: OSError):
        super().__init__(error.errno, cannot_write_reason(error), str(folder))

    def __str__(self) -> str:
        return f"PawLab cannot write to {self.filename} ({self.strerror})."


@contextlib.contextmanager
def writing_to(folder: str | os.PathLike):
    """A failed write inside (read-only, full...) becomes a RunsFolderError naming ``folder``."""
    try:
        yield
    except RunsFolderError:
        raise
    except OSError as error:
        if error.errno not in CANNOT_WRITE:
            raise
        raise RunsFolderError(folder, error) from error


def _read(run_dir: Path, name: str, expect: type = dict):
    record = read_json(run_dir / name, expect)
    if not record.ok:
        raise RunFileError(f"Run {run_dir.name}: {record.problem}.")
    return record.value


def _from_dict(cls, data: dict):
    """A dataclass from a dict, ignoring keys it does not know (older or newer files)."""
    known = {f.name for f in fields(cls)}
    return cls(**{key: value for key, value in data.items() if key in known})


@dataclass(frozen=True)
class RunStatus:
    """status.json: where a run is, written by the job manager and the training process."""

    state: RunState = RunState.QUEUED
    pid: int | None = None
    heartbeat: float | None = None  # unix time
    started: float | None = None
    finished: float | None = None
    phase: Phase | None = None  # None before training starts
    epoch: int = 0  # 1-based, counting across phases
    epochs_total: int = 0  # epochs + fine-tune epochs; early stopping may end sooner
    batch: int = 0  # batches done in this epoch (phase FEATURES: batches of images)
    batches_total: int = 0
    mode: Mode | None = None
    error: str | None = None  # one sentence for a person (failed or interrupted runs)
    executor: Executor = Executor.LOCAL
    host: str | None = None  # the machine whose process trains the run (its pid is only meaningful there)
    ray_node: str | None = None  # a Ray run's node, by address, once a worker there took it

    def __post_init__(self):
        # Enums from the strings JSON gives back; a value we do not know is damage.
        try:
            object.__setattr__(self, "state", RunState(self.state))
            object.__setattr__(self, "executor", Executor(self.executor))
            if self.phase is not None:
                object.__setattr__(self, "phase", Phase(self.phase))
            if self.mode is not None:
                object.__setattr__(self, "mode", Mode(self.mode))
        except ValueError as error:
            raise RunFileError(f"{STATUS_FILE}: {error}") from None
        for name in ("pid", "epoch", "epochs_total", "batch", "batches_total"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise RunFileError(f"{STATUS_FILE}: {name} is {value!r}, not a whole number")
        for name in ("heartbeat", "started", "finished"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise RunFileError(f"{STATUS_FILE}: {name} is {value!r}, not a time")

    @property
    def heartbeat_age(self) -> float:
        """Seconds since the last sign of life (the start if there was no heartbeat yet)."""
        return time.time() - (self.heartbeat or self.started or 0.0)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RunFacts:
    """facts.json: what the training process found out when it started."""

    classes: list[str] = field(default_factory=list)
    split_counts: dict[str, dict[str, int]] = field(default_factory=dict)  # {split: {class: n}}
    mode: Mode | None = None
    strategy: str = ""
    replicas: int = 0
    versions: dict[str, str] = field(default_factory=dict)  # python, tensorflow, keras

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RunSummary:
    """One line of the runs table. A damaged run has ``problem`` set and little else."""

    id: str
    path: str
    arch: str = ""
    state: RunState | None = None
    created: float = 0.0
    started: float | None = None
    duration: float | None = None  # seconds, up to now while running
    image_size: int = 0
    epochs: int = 0  # epochs finished (lines in metrics.jsonl)
    epochs_total: int = 0
    classes: list[str] = field(default_factory=list)
    mode: str = ""
    best_val_accuracy: float | None = None
    test_accuracy: float | None = None
    error: str | None = None
    problem: str | None = None  # why the run's files cannot be read
    executor: Executor | None = None
    where: str = ""  # "this machine", or the Ray node that trains it
    sweep: str = ""  # the sweep this run is a trial of
    is_sweep: bool = False  # the run is a sweep's own entry, not a model

    @property
    def active(self) -> bool:
        """Queued or training (a damaged run, whose state is unknown, is not)."""
        return self.state is not None and self.state.active

    def to_dict(self) -> dict:
        return asdict(self)


# --- config, facts, split, status ---------------------------------------------------


def read_config(run_dir: str | os.PathLike) -> TrainConfig:
    run_dir = Path(run_dir)
    try:
        return TrainConfig.from_dict(_read(run_dir, CONFIG_FILE))
    except TypeError as error:
        raise RunFileError(f"Run {run_dir.name}: {CONFIG_FILE} is damaged ({error}).") from None


def write_facts(run_dir: str | os.PathLike, facts: RunFacts) -> None:
    write_json(Path(run_dir) / FACTS_FILE, facts.to_dict())


def read_facts(run_dir: str | os.PathLike) -> RunFacts:
    """The run's facts; empty facts for a run that has not started training yet."""
    run_dir = Path(run_dir)
    if not (run_dir / FACTS_FILE).exists():
        return RunFacts()
    return _from_dict(RunFacts, _read(run_dir, FACTS_FILE))


def write_split(run_dir: str | os.PathLike, record: dict) -> None:
    write_json(Path(run_dir) / SPLIT_FILE, record)


def read_split(run_dir: str | os.PathLike) -> dict | None:
    """The run's recorded split (core.data.splits.Splits.to_record), or None if not recorded."""
    run_dir = Path(run_dir)
    if not (run_dir / SPLIT_FILE).exists():
        return None
    return _read(run_dir, SPLIT_FILE)


def read_status(run_dir: str | os.PathLike) -> RunStatus:
    run_dir = Path(run_dir)
    data = _read(run_dir, STATUS_FILE)
    try:
        return _from_dict(RunStatus, data)
    except RunFileError as error:
        raise RunFileError(f"Run {run_dir.name}: {error}.") from None


def write_status(run_dir: str | os.PathLike, status: RunStatus) -> None:
    write_json(Path(run_dir) / STATUS_FILE, status.to_dict())


def update_status(
    run_dir: str | os.PathLike, *, when: Callable[[RunStatus], bool] | None = None, **changes
) -> RunStatus:
    """Read, change and write status.json under the run's lock; returns the status.

    The job manager and the training process both write the status (and the
    training process from two threads), so every change is read-modify-write
    under one lock and no update is lost. ``when``: a test on the current
    status; the change is only made if it passes. A too long ``error`` is cut.
    """
    run_dir = Path(run_dir)
    if changes.get("error"):
        changes["error"] = short_message(changes["error"])
    with FileLock(run_dir / STATUS_LOCK_FILE, timeout=STATUS_LOCK_TIMEOUT_SECONDS, what=f"run {run_dir.name}"):
        status = read_status(run_dir)
        if when is None or when(status):
            status = replace(status, **changes)
            write_status(run_dir, status)
    return status


def short_message(text: str) -> str:
    """The first line of ``text``, at most ERROR_MESSAGE_CHARS long."""
    line = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return line if len(line) <= ERROR_MESSAGE_CHARS else line[: ERROR_MESSAGE_CHARS - 1] + "…"


# --- metrics ---------------------------------------------------------------------------


def append_metrics(run_dir: str | os.PathLike, record: dict) -> None:
    """One epoch's line, whole or not at all; a full disk is a RunsFolderError."""
    with writing_to(run_dir):
        append_line(Path(run_dir) / METRICS_FILE, json.dumps(record))


def best_val_accuracy(metrics: list[dict]) -> float | None:
    """The best epoch's validation accuracy: the runs table's, the tutorial comparison's and the sweep's."""
    accuracies = [m["val_accuracy"] for m in metrics if isinstance(m.get("val_accuracy"), (int, float))]
    return max(accuracies) if accuracies else None


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """The finished epochs so far, oldest first; a line that is not an epoch record is skipped."""
    path = Path(run_dir) / METRICS_FILE
    try:
        lines = path.read_bytes().splitlines()
    except OSError:
        return []
    records = []
    for line in lines:
        try:
            record = json.loads(line)  # bytes: a line of garbage fails alone, not the whole file
        except ValueError:  # UnicodeDecodeError included
            continue  # damaged, or a line being appended right now
        if isinstance(record, dict) and isinstance(record.get("epoch"), int):
            records.append(record)
    return records


@dataclass(frozen=True)
class ClassScores:
    """One class's line of the test evaluation."""

    precision: float
    recall: float
    f1: float
    support: int  # test photos of this class


@dataclass(frozen=True)
class Mistake:
    """A test photo the model got wrong, with its calibrated probabilities."""

    file: str
    true: str
    predicted: str
    probabilities: dict[str, float]


@dataclass(frozen=True)
class Evaluation:
    """evaluation.json: the saved model scored on the run's test split (core.runs.evaluation)."""

    accuracy: float
    count: int  # test photos
    classes: list[str]
    per_class: dict[str, ClassScores]
    confusion_matrix: list[list[int]]  # [true][predicted]
    misclassified: list[Mistake] = field(default_factory=list)
    temperature: float | None = None
    ece_before: float | None = None
    ece_after: float | None = None
    # The mean of the per-class recalls; None in evaluations made before it was recorded.
    balanced_accuracy: float | None = None

    @classmethod
    def from_record(cls, record: dict) -> Evaluation:
        """Parse once; a missing or mistyped field is damage (ValueError with a sentence)."""
        try:
            classes = [str(name) for name in record["classes"]]
            per_class = {str(name): ClassScores(**scores) for name, scores in record["per_class"].items()}
            matrix = [[int(n) for n in row] for row in record["confusion_matrix"]]
            mistakes = [Mistake(**item) for item in record.get("misclassified", [])]
            return cls(
                accuracy=float(record["accuracy"]),
                count=int(record["count"]),
                classes=classes,
                per_class=per_class,
                confusion_matrix=matrix,
                misclassified=mistakes,
                **{
                    name: _optional_float(record, name)
                    for name in ("temperature", "ece_before", "ece_after", "balanced_accuracy")
                },
            )
        except KeyError as error:
            raise ValueError(f"it has no {error.args[0]}") from None
        except (TypeError, ValueError, AttributeError) as error:
            raise ValueError(f"a field is not what it should be ({error})") from None

    def to_dict(self) -> dict:
        return asdict(self)


def _optional_float(record: dict, name: str) -> float | None:
    value = record.get(name)
    return None if value is None else float(value)


def read_evaluation(run_dir: str | os.PathLike) -> Evaluation | None:
    """evaluation.json, or None when the run has none yet; a damaged one is a RunFileError."""
    path = Path(run_dir) / EVALUATION_FILE
    if not path.exists():
        return None
    record = _read(Path(run_dir), EVALUATION_FILE)
    try:
        return Evaluation.from_record(record)
    except ValueError as error:
        raise RunFileError(f"Run {Path(run_dir).name}: {EVALUATION_FILE} is damaged: {error}.") from None


def pid_alive(pid: int | None) -> bool:
    """True when process ``pid`` exists and is not a zombie (a dead child not yet reaped)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): trust kill()
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
        return False
    return True


# --- creating, listing and deleting runs --------------------------------------------


def runs_root(runs_dir: str | os.PathLike | None = None) -> Path:
    return Path(runs_dir) if runs_dir else get_settings().runs_dir


def create_run(
    config: TrainConfig, runs_dir: str | os.PathLike | None = None, *, state: RunState = RunState.QUEUED
) -> Path:
    """A new run folder holding config.json and status.json; returns its path.

    ``state=RUNNING`` is for a run the calling process trains itself (the
    CLI), so the job manager never picks it up as queued. All or nothing: a
    folder that cannot be written raises RunsFolderError and leaves no run.
    """
    root = runs_root(runs_dir)
    config.created = config.created or time.time()
    with writing_to(root):
        root.mkdir(parents=True, exist_ok=True)
        run_dir = _new_run_folder(root, config)
        try:
            write_json(run_dir / CONFIG_FILE, config.to_dict())
            write_status(run_dir, _first_status(state))
        except BaseException:
            shutil.rmtree(run_dir, ignore_errors=True)  # no half-created run for the queue to find
            raise
    return run_dir


def _new_run_folder(root: Path, config: TrainConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(config.created))
    while True:
        run_dir = root / f"{stamp}-{config.arch}-{secrets.token_hex(2)}"
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue


def _first_status(state: RunState) -> RunStatus:
    if state != RunState.RUNNING:
        return RunStatus(state=state)
    now = time.time()
    return RunStatus(state=state, pid=os.getpid(), host=socket.gethostname(), started=now, heartbeat=now)


def is_run(path: str | os.PathLike) -> bool:
    path = Path(path)
    return (path / CONFIG_FILE).is_file() and (path / STATUS_FILE).is_file()


def _created(path: Path) -> float:
    record = read_json(path / CONFIG_FILE)
    created = record.value.get("created") if record.ok else None
    return created if isinstance(created, (int, float)) else path.stat().st_mtime


def run_dirs(runs_dir: str | os.PathLike | None = None) -> list[Path]:
    """Run folders, oldest first (by creation time, then id); damaged ones included."""
    root = runs_root(runs_dir)
    if not root.is_dir():
        return []
    found = [(_created(path), path.name, path) for path in root.iterdir() if path.is_dir() and is_run(path)]
    return [path for _, _, path in sorted(found)]


def _duration(status: RunStatus) -> float | None:
    if not status.started:
        return None
    end = status.finished or (time.time() if status.state == RunState.RUNNING else status.heartbeat)
    return max(0.0, (end or status.started) - status.started)


def summarize(run_dir: str | os.PathLike) -> RunSummary:
    """The run's line in the runs table; raises RunFileError for a damaged run."""
    run_dir = Path(run_dir)
    config, status, facts = read_config(run_dir), read_status(run_dir), read_facts(run_dir)
    metrics = read_metrics(run_dir)
    try:
        evaluation, problem = read_evaluation(run_dir), None
    except RunFileError as error:  # the run stays listed, with its model and curves, and says what is wrong
        evaluation, problem = None, str(error)
    return RunSummary(
        id=run_dir.name,
        path=str(run_dir),
        arch=config.arch,
        state=status.state,
        created=config.created,
        started=status.started,
        duration=_duration(status),
        image_size=config.image_size,
        epochs=len(metrics),
        epochs_total=status.epochs_total or config.total_epochs,
        classes=facts.classes,
        mode=status.mode or facts.mode or "",
        best_val_accuracy=best_val_accuracy(metrics),
        test_accuracy=evaluation.accuracy if evaluation else None,
        error=status.error,
        problem=problem,
        executor=status.executor,
        where=describe_where(status),
        sweep=config.sweep,
        is_sweep=config.is_sweep,
    )


def describe_where(status: RunStatus) -> str:
    """Where a run trains (or trained), in words for the runs table."""
    if status.executor == Executor.RAY:
        if status.ray_node:
            return f"Ray node {status.ray_node}"
        return "Ray (waiting for a node)" if status.state.active else "Ray"
    if status.host and status.host != socket.gethostname():
        return f"machine {status.host}"
    return "this machine"


def list_runs(runs_dir: str | os.PathLike | None = None) -> list[RunSummary]:
    """Summaries of all runs, newest first. A damaged run is listed with its problem."""
    summaries = []
    for run_dir in reversed(run_dirs(runs_dir)):
        try:
            summaries.append(summarize(run_dir))
        except (RunFileError, OSError) as error:
            summaries.append(RunSummary(id=run_dir.name, path=str(run_dir), problem=str(error)))
    return summaries


def delete_run(run_dir: str | os.PathLike, runs_dir: str | os.PathLike | None = None) -> None:
    """Remove a finished run's folder. A queued or running run must be cancelled first.

    Only a run folder directly inside the runs folder (``runs_dir``, default
    PAWLAB_HOME/runs) is removed, symlinks resolved: a path from a page or a
    command can never reach another folder. A damaged run (its status cannot
    be read) can be deleted: the queue skips it, so nothing is waiting on it.
    """
    root = runs_root(runs_dir).resolve()
    target = Path(run_dir).resolve()
    if target.parent != root or not is_run(target):
        raise ValueError(f"{run_dir} is not a training run folder in {root}.")
    try:
        state = read_status(target).state
    except RunFileError:
        state = None  # damaged
    if state in ACTIVE_STATES:
        raise ValueError(f"Run {target.name} is {state}; cancel it before deleting it.")
    shutil.rmtree(target)
