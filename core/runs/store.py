"""Training runs on disk: one folder per run, readable while it trains.

A run is a folder ``PAWLAB_HOME/runs/<id>/``. The id sorts by creation time:
``20261128-153012-cnn-ab12`` (date, time, architecture, random suffix). The
process that trains writes the files; anyone (the Train page, the CLI, the
job manager) reads them. JSON files are replaced atomically (written to a
temp file in the same folder, then ``os.replace``), so a reader never sees
half a file. This module never imports TensorFlow.

Files in a run folder
---------------------
``config.json``
    A ``TrainConfig`` as a dict: ``data_root``, ``arch``, ``epochs``,
    ``batch_size``, ``image_size``, ``learning_rate``, ``fine_tune_epochs``,
    ``fine_tune_learning_rate``, ``fine_tune_layers``, ``patience``, ``seed``,
    ``test_fraction``, ``validation_fraction`` (the split rule), ``subset``
    (training images per class, 0 = all), ``augment`` (a full AugmentConfig
    dict), ``created`` (unix time) and ``versions`` ({"python": ...}).
    When training starts the worker adds what it found out: ``classes``,
    ``split_counts`` ({split: {class: n}}), ``mode``, ``strategy``,
    ``replicas`` and ``versions.tensorflow`` / ``versions.keras``.

``status.json``
    ``state``: queued | running | completed | failed | cancelled | interrupted;
    ``pid``: the training process; ``heartbeat``: unix time, refreshed every
    ``HEARTBEAT_SECONDS`` while the process lives; ``started``, ``finished``:
    unix times or null; ``phase``: features | train | fine_tune | evaluate
    (null before training starts); ``epoch`` (1-based, counting across
    phases), ``epochs_total`` (epochs + fine-tune epochs: an upper bound, early
    stopping may end sooner); ``batch``, ``batches_total``: training batches
    done in the current epoch (in phase "features": batches of images pushed
    through the frozen base); ``mode``: "cached_features" (a frozen base's
    features computed once, the head trained on them; a fine-tune phase after
    it always runs images end to end) or "end_to_end"; ``error``: a sentence
    for a person (failed or interrupted runs), and ``traceback``: the last
    lines of the Python traceback (failed runs). Batch progress lives only
    here, written at most four times a second; the heartbeat is written
    every ``HEARTBEAT_SECONDS`` whatever the phase.

    State changes: queued -> running (core.runs.jobs.dispatch) -> completed |
    failed | cancelled; queued -> cancelled; running -> interrupted when the
    process disappeared without a word (core.runs.jobs.recover).

``metrics.jsonl``
    One JSON object per finished epoch, appended when the epoch ends:
    ``epoch`` (1-based, across phases), ``phase`` (train | fine_tune),
    ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``, ``seconds`` (the
    whole epoch, validation included), ``images_per_second`` (training
    images per second of the training part), ``time`` (unix time). Nothing
    else is written there; a cancelled, half-finished epoch is not.

``model.keras``
    The best model so far by validation accuracy, replaced atomically after
    each epoch that improves it. It takes images (float32, [0, 255]) and
    returns logits; class names are ``config.json["classes"]``.

``evaluation.json``
    Written by ``core.runs.evaluation.evaluate_run`` on the test split (see there).

``tensorboard/``
    Keras TensorBoard logs: ``tensorboard --logdir PAWLAB_HOME/runs``.

``log.txt``
    The worker process's stdout and stderr (runs started by core.runs.jobs).

``cancel``
    Present when someone asked the run to stop (see core.runs.jobs.cancel).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import secrets
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from core.data.augment import AugmentConfig
from core.config import get_settings

STATES = ("queued", "running", "completed", "failed", "cancelled", "interrupted")
ACTIVE_STATES = ("queued", "running")
FINISHED_STATES = ("completed", "failed", "cancelled", "interrupted")
PHASES = ("features", "train", "fine_tune", "evaluate")
MODES = ("cached_features", "end_to_end")
# The training process refreshes status.json's heartbeat this often.
HEARTBEAT_SECONDS = 2.0

CONFIG_FILE = "config.json"
STATUS_FILE = "status.json"
METRICS_FILE = "metrics.jsonl"
MODEL_FILE = "model.keras"
EVALUATION_FILE = "evaluation.json"
TENSORBOARD_DIR = "tensorboard"
LOG_FILE = "log.txt"
CANCEL_FILE = "cancel"


@dataclass
class TrainConfig:
    """Everything needed to reproduce a run. Build one with ``make_config``,
    which fills in the architecture's defaults."""

    data_root: str
    arch: str
    epochs: int
    batch_size: int = 32
    image_size: int = 160
    learning_rate: float = 1e-3
    fine_tune_epochs: int = 0
    fine_tune_learning_rate: float | None = None
    fine_tune_layers: int = 0  # top layers of the ImageNet base unfrozen when fine-tuning
    patience: int = 0  # early stopping on val_accuracy; 0 = off
    seed: int = 1337  # split, shuffle and weight initialisation
    test_fraction: float = 0.2
    validation_fraction: float = 0.2
    subset: int = 0  # at most this many training images per class; 0 = all
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    created: float = 0.0
    versions: dict = field(default_factory=dict)
    # Filled in by the training process when it starts.
    classes: list[str] = field(default_factory=list)
    split_counts: dict = field(default_factory=dict)
    mode: str = ""
    strategy: str = ""
    replicas: int = 0

    def to_dict(self) -> dict:
        return asdict(self)  # augment becomes a plain dict too

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["augment"] = AugmentConfig.from_dict(values.get("augment") or {})
        return cls(**values)


DEFAULT_LEARNING_RATE = 1e-3  # Adam, as the tutorial; also for a transfer model's head
DEFAULT_FINE_TUNE_LEARNING_RATE = 1e-5  # TF's transfer-learning guide: tiny steps for the base
# TF's guide fine-tunes MobileNetV2 from layer 100 of 154: its top 54 layers
# (BatchNormalization layers among them stay frozen, see core.models.zoo.unfreeze_top).
DEFAULT_FINE_TUNE_LAYERS = 54


def make_config(
    data_root: str | os.PathLike,
    arch: str,
    epochs: int,
    *,
    batch_size: int = 32,
    image_size: int = 160,
    learning_rate: float | None = None,
    fine_tune_epochs: int | None = None,
    fine_tune_learning_rate: float | None = None,
    patience: int = 0,
    seed: int = 1337,
    augment: str | AugmentConfig | None = None,
    subset: int = 0,
    test_fraction: float = 0.2,
    validation_fraction: float = 0.2,
) -> TrainConfig:
    """A checked TrainConfig with the architecture's defaults filled in.

    ``augment``: a preset or saved config name, an AugmentConfig, or None for
    the architecture's default. ``fine_tune_epochs`` None means as many as
    ``epochs`` for architectures that fine-tune (as TF's guide), 0 otherwise.
    Raises ValueError with a sentence for a person on bad values.
    """
    from core.data.augment import load_config
    from core.models.zoo import ARCHITECTURES

    if arch not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture '{arch}'. Choose one of: {', '.join(ARCHITECTURES)}.")
    spec = ARCHITECTURES[arch]
    for name, value, low in (("epochs", epochs, 1), ("batch size", batch_size, 1),
                             ("image size", image_size, 32), ("patience", patience, 0),
                             ("subset", subset, 0)):
        if int(value) != value or value < low:
            raise ValueError(f"The {name} must be a whole number of at least {low}, not {value}.")
    if not (0 <= test_fraction < 1 and 0 <= validation_fraction < 1
            and test_fraction + validation_fraction < 1):
        raise ValueError("Test and validation fractions must be between 0 and 1 and leave images to train on.")
    if fine_tune_epochs is None:
        fine_tune_epochs = epochs if spec.fine_tune else 0
    if fine_tune_epochs and not spec.fine_tune:
        raise ValueError(f"'{arch}' has no fine-tuning phase; choose mobilenet_v2_finetune to fine-tune.")
    if fine_tune_epochs < 0:
        raise ValueError(f"Fine-tune epochs must be 0 or more, not {fine_tune_epochs}.")
    if augment is None:
        augment = spec.default_augment
    if isinstance(augment, str):
        try:
            augment = load_config(augment)
        except KeyError as error:
            raise ValueError(error.args[0]) from None
    learning_rate = DEFAULT_LEARNING_RATE if learning_rate is None else learning_rate
    if not learning_rate > 0:
        raise ValueError(f"The learning rate must be positive, not {learning_rate}.")
    if spec.fine_tune:
        fine_tune_learning_rate = fine_tune_learning_rate or DEFAULT_FINE_TUNE_LEARNING_RATE
    return TrainConfig(
        data_root=str(Path(data_root).expanduser().resolve()), arch=arch, epochs=int(epochs),
        batch_size=int(batch_size), image_size=int(image_size), learning_rate=float(learning_rate),
        fine_tune_epochs=int(fine_tune_epochs),
        fine_tune_learning_rate=fine_tune_learning_rate if spec.fine_tune else None,
        fine_tune_layers=DEFAULT_FINE_TUNE_LAYERS if spec.fine_tune else 0,
        patience=int(patience), seed=int(seed), test_fraction=float(test_fraction),
        validation_fraction=float(validation_fraction), subset=int(subset), augment=augment,
    )


@dataclass
class RunSummary:
    """One line of the runs table."""

    id: str
    path: str
    arch: str
    state: str
    created: float
    started: float | None
    duration: float | None  # seconds, up to now while running
    image_size: int
    epochs: int  # epochs finished (lines in metrics.jsonl)
    epochs_total: int
    classes: list[str]
    mode: str
    best_val_accuracy: float | None
    test_accuracy: float | None
    error: str | None

    def to_dict(self) -> dict:
        return asdict(self)


# --- atomic JSON files -------------------------------------------------------

def write_json(path: Path, data) -> None:
    """Replace ``path`` with ``data`` as JSON in one step: readers see the old or the new file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as file:
            json.dump(data, file, indent=2)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; other readers are welcome
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_json(path: Path):
    return json.loads(Path(path).read_text())


@contextlib.contextmanager
def file_lock(path: Path):
    """An exclusive fcntl.flock on ``path`` (created if needed), for this block."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- config and status ---------------------------------------------------------

def read_config(run_dir: str | os.PathLike) -> TrainConfig:
    return TrainConfig.from_dict(read_json(Path(run_dir) / CONFIG_FILE))


def write_config(run_dir: str | os.PathLike, config: TrainConfig) -> None:
    write_json(Path(run_dir) / CONFIG_FILE, config.to_dict())


def empty_status(state: str = "queued") -> dict:
    return {
        "state": state, "pid": None, "heartbeat": None, "started": None, "finished": None,
        "phase": None, "epoch": 0, "epochs_total": 0, "batch": 0, "batches_total": 0,
        "mode": None, "error": None, "traceback": None,
    }


def read_status(run_dir: str | os.PathLike) -> dict:
    """status.json as a dict (all keys of ``empty_status`` present)."""
    status = empty_status()
    status.update(read_json(Path(run_dir) / STATUS_FILE))
    return status


def write_status(run_dir: str | os.PathLike, status: dict) -> None:
    if status.get("state") not in STATES:
        raise ValueError(f"Unknown run state {status.get('state')!r}.")
    write_json(Path(run_dir) / STATUS_FILE, status)


def update_status(run_dir: str | os.PathLike, *, when=None, **changes) -> dict:
    """Read, change and write status.json under the run's lock; returns the status.

    The job manager and the training process both write the status (and the
    training process from two threads), so every change is read-modify-write
    under one lock and no update is lost. ``when``: a test on the current
    status; the change is only made if it passes.
    """
    run_dir = Path(run_dir)
    with file_lock(run_dir / ".status.lock"):
        status = read_status(run_dir)
        if when is None or when(status):
            status.update(changes)
            write_status(run_dir, status)
    return status


# --- metrics ---------------------------------------------------------------------

def append_metrics(run_dir: str | os.PathLike, record: dict) -> None:
    with open(Path(run_dir) / METRICS_FILE, "a") as file:
        file.write(json.dumps(record) + "\n")
        file.flush()


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """The finished epochs so far, oldest first. A line being written right now is skipped."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # the last line, half appended
    return records


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


def create_run(config: TrainConfig, runs_dir: str | os.PathLike | None = None, *,
               state: str = "queued") -> Path:
    """A new run folder holding config.json and status.json; returns its path.

    ``state="running"`` is for a run the calling process trains itself (the
    CLI), so the job manager never picks it up as queued.
    """
    root = runs_root(runs_dir)
    root.mkdir(parents=True, exist_ok=True)
    config.created = config.created or time.time()
    config.versions = {"python": platform.python_version(), **config.versions}
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(config.created))
    while True:
        run_dir = root / f"{stamp}-{config.arch}-{secrets.token_hex(2)}"
        try:
            run_dir.mkdir()
            break
        except FileExistsError:
            continue
    write_config(run_dir, config)
    status = empty_status(state)
    if state == "running":
        now = time.time()
        status.update(pid=os.getpid(), started=now, heartbeat=now)
    write_status(run_dir, status)
    return run_dir


def is_run(path: str | os.PathLike) -> bool:
    path = Path(path)
    return (path / CONFIG_FILE).is_file() and (path / STATUS_FILE).is_file()


def run_dirs(runs_dir: str | os.PathLike | None = None) -> list[Path]:
    """Run folders, oldest first (by creation time, then id)."""
    root = runs_root(runs_dir)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        if path.is_dir() and is_run(path):
            try:
                created = read_json(path / CONFIG_FILE).get("created", 0.0)
            except (OSError, ValueError):
                continue
            found.append((created, path.name, path))
    return [path for _, _, path in sorted(found)]


def summarize(run_dir: str | os.PathLike) -> RunSummary:
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    status = read_status(run_dir)
    metrics = read_metrics(run_dir)
    val_accuracies = [m["val_accuracy"] for m in metrics if m.get("val_accuracy") is not None]
    test_accuracy = None
    if (run_dir / EVALUATION_FILE).exists():
        with contextlib.suppress(OSError, ValueError):
            test_accuracy = read_json(run_dir / EVALUATION_FILE).get("accuracy")
    started, finished = status.get("started"), status.get("finished")
    duration = None
    if started:
        end = finished or (time.time() if status["state"] == "running" else status.get("heartbeat"))
        duration = max(0.0, (end or started) - started)
    return RunSummary(
        id=run_dir.name, path=str(run_dir), arch=config.arch, state=status["state"],
        created=config.created, started=started, duration=duration,
        image_size=config.image_size, epochs=len(metrics),
        epochs_total=status.get("epochs_total") or config.epochs + config.fine_tune_epochs,
        classes=config.classes, mode=status.get("mode") or config.mode or "",
        best_val_accuracy=max(val_accuracies) if val_accuracies else None,
        test_accuracy=test_accuracy, error=status.get("error"),
    )


def list_runs(runs_dir: str | os.PathLike | None = None) -> list[RunSummary]:
    """Summaries of all runs, newest first. Folders that are not runs are ignored."""
    summaries = []
    for run_dir in reversed(run_dirs(runs_dir)):
        try:
            summaries.append(summarize(run_dir))
        except (OSError, ValueError, TypeError, KeyError):
            continue  # a hand-damaged folder should not hide the other runs
    return summaries


def delete_run(run_dir: str | os.PathLike) -> None:
    """Remove a finished run's folder. A queued or running run must be cancelled first."""
    run_dir = Path(run_dir)
    if not is_run(run_dir):
        raise ValueError(f"{run_dir} is not a training run folder.")
    state = read_status(run_dir)["state"]
    if state in ACTIVE_STATES:
        raise ValueError(f"Run {run_dir.name} is {state}; cancel it before deleting it.")
    shutil.rmtree(run_dir)


def cli_runs(args) -> int:
    summaries = list_runs(getattr(args, "runs_dir", None))
    print(json.dumps([summary.to_dict() for summary in summaries], indent=2))
    return 0
