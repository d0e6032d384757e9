"""Proving an export agrees with the model: made and re-scored out of process, polled by the page.

    start_export(run_dir, "onnx")          # starts: python -m core.serving.export_check RUN_DIR onnx
    export_status(run_dir, "onnx")         # ExportStatus(state, done, total, agreement, reason)
    offered_export(run_dir, "onnx")        # the zip, only when it was checked and agrees

The child makes the export (core.serving.export), unzips the model it will
hand out, and runs it on every photo of the run's recorded test split
(core.runs.run_split.run_splits), decoded as the Classify page decodes them
(core.data.images.load_resized). Each photo's probabilities are compared with
the Keras model's calibrated probabilities, softmax(model.keras(x) / T),
computed here in float64 from the plain model (not from the exported graph).
The agreement is the number of photos with the same label and the largest
probability difference. A float32 export (SavedModel, TFLite, ONNX) is offered
only when every label is the same and no probability differs by more than
``TOLERANCE``. The int8 TFLite model's probabilities move by a few hundredths,
so it is judged on its answers instead: its accuracy on the test photos next
to the Keras model's, offered when it is at most ``MAX_ACCURACY_DROP`` lower
(the share of same labels is reported beside them).

Files in ``<run>/exports/`` besides the zips:

    <format>.status.json   ExportStatus: state, done/total, agreement, reason, what it was made from
    <format>.log           the child's output, tracebacks included
    .<format>.lock         held by the child while it works

Conversion and scoring take TensorFlow and seconds to minutes of CPU, so the
page never does them in its own process; a reload or a server restart finds
the same check at the same point.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from pathlib import Path

import numpy as np

from core.data.dataset import Sample
from core.data.images import load_resized
from core.fileio import FileLock, file_sha256, read_json, write_json
from core.processes import REPO_ROOT, child_environment
from core.runs.run_split import missing_files, run_splits
from core.runs.store import pid_alive, read_config, read_facts, short_message
from core.runs.trust import TRUST_FILE, read_trust
from core.serving.export import (
    EXPORTS_DIR,
    ExportFormat,
    extract_model,
    make_export,
    model_bytes,
    require_model,
)
from core.serving.inference import load_run_model, model_path
from core.serving.model_card import CARD_JSON

# Largest probability difference an offered export may have (float32 formats).
TOLERANCE = 1e-3
# Largest drop in test accuracy an offered quantized export may have: 1 point.
MAX_ACCURACY_DROP = 0.01
# Photos per model call while checking.
CHECK_BATCH = 32
# Seconds between progress writes.
PROGRESS_INTERVAL = 0.5


class ExportState(StrEnum):
    NONE = "none"  # never made, or made from an older model.keras / trust.json
    STARTING = "starting"  # the child was started and has not said anything yet
    EXPORTING = "exporting"
    CHECKING = "checking"
    AGREES = "agrees"  # checked: offered for download
    DISAGREES = "disagrees"  # checked: refused, ``reason`` says why
    FAILED = "failed"  # the export or the check could not be done, ``reason`` says why

    @property
    def running(self) -> bool:
        return self in (ExportState.STARTING, ExportState.EXPORTING, ExportState.CHECKING)


@dataclass(frozen=True)
class Agreement:
    """How an export's answers compare with the Keras model's on the run's test photos."""

    photos: int
    same_label: int
    max_difference: float  # largest |p_export - p_keras| over photos and classes
    tolerance: float = TOLERANCE
    correct: int = 0  # test photos the export labels right
    keras_correct: int = 0  # ... and the Keras model
    # Set for a quantized export: judged on its accuracy against the Keras model's, not on probabilities.
    max_accuracy_drop: float | None = None

    @property
    def accuracy(self) -> float:
        return self.correct / self.photos if self.photos else 0.0

    @property
    def keras_accuracy(self) -> float:
        return self.keras_correct / self.photos if self.photos else 0.0

    @property
    def accuracy_drop(self) -> float:
        return self.keras_accuracy - self.accuracy

    @property
    def agrees(self) -> bool:
        if self.photos == 0:
            return False
        if self.max_accuracy_drop is not None:
            return self.accuracy_drop <= self.max_accuracy_drop + 1e-9  # 1e-9: 0.01 itself is allowed
        return self.same_label == self.photos and self.max_difference <= self.tolerance

    def describe(self) -> str:
        if self.max_accuracy_drop is not None:
            return (
                f"accuracy {self.accuracy:.1%} on {self.photos} test photos against the float model's "
                f"{self.keras_accuracy:.1%} (at most {self.max_accuracy_drop * 100:g} point lower allowed), same label "
                f"on {self.same_label} of {self.photos} ({self.same_label / self.photos:.1%})"
            )
        return (
            f"same label on {self.same_label} of {self.photos} test photos, largest "
            f"probability difference {self.max_difference:.1e} (at most {self.tolerance:.0e} allowed)"
        )

    def to_summary(self) -> dict:
        """What ``python -m core export`` prints of it."""
        return asdict(self) | {
            "agrees": self.agrees,
            "agreement": self.same_label / self.photos if self.photos else 0.0,  # share of same labels
            "accuracy": self.accuracy,
            "keras_accuracy": self.keras_accuracy,
        }


@dataclass(frozen=True)
class ExportStatus:
    format: ExportFormat
    state: ExportState = ExportState.NONE
    done: int = 0  # test photos checked so far
    total: int = 0
    agreement: Agreement | None = None
    reason: str | None = None  # why it is refused or failed, one sentence
    source: str = ""  # the model.keras and trust.json it was made from (source_of)
    archive_sha256: str = ""  # the zip that was checked
    model_bytes: int = 0  # the unzipped model's size
    pid: int | None = None
    updated: float = 0.0

    @property
    def offered(self) -> bool:
        return self.state == ExportState.AGREES

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ExportStatus:
        known = {key: value for key, value in data.items() if key in cls.__dataclass_fields__}
        agreement = known.get("agreement")
        known["agreement"] = Agreement(**agreement) if agreement else None
        return cls(**{**known, "format": ExportFormat(known["format"]), "state": ExportState(known["state"])})


# --- what the page calls ---------------------------------------------------------------


def export_status(run_dir: str | os.PathLike, export_format: ExportFormat | str) -> ExportStatus:
    """Where the export of ``export_format`` stands for the run's current model."""
    run_dir, export_format = Path(run_dir), ExportFormat(export_format)
    record = read_json(_status_path(run_dir, export_format))
    try:
        status = ExportStatus.from_dict(record.value) if record.ok else None
    except (KeyError, TypeError, ValueError):
        status = None  # a damaged status file: as if never made
    if status is None:
        return ExportStatus(export_format)
    if status.state.running:
        if pid_alive(status.pid):
            return status
        return replace(
            status,
            state=ExportState.FAILED,
            reason=(f"The check stopped before it finished (see {EXPORTS_DIR}/{export_format}.log)."),
        )
    if status.source != source_of(run_dir):
        return ExportStatus(export_format)  # made from an older model: make it again
    return status


def offered_export(run_dir: str | os.PathLike, export_format: ExportFormat | str) -> Path | None:
    """The export's zip when it was checked, agrees, and is still the very file checked."""
    run_dir, export_format = Path(run_dir), ExportFormat(export_format)
    status = export_status(run_dir, export_format)
    archive = run_dir / EXPORTS_DIR / export_format.archive
    if status.offered and archive.is_file() and file_sha256(archive) == status.archive_sha256:
        return archive
    return None


def start_export(run_dir: str | os.PathLike, export_format: ExportFormat | str) -> ExportStatus:
    """Start making and checking the export in a child process (unless it is running or done)."""
    run_dir, export_format = Path(run_dir), ExportFormat(export_format)
    status = export_status(run_dir, export_format)
    if status.state.running or (status.offered and offered_export(run_dir, export_format)):
        return status
    require_model(run_dir)
    folder = run_dir / EXPORTS_DIR
    folder.mkdir(exist_ok=True)
    env = child_environment()
    with open(folder / f"{export_format}.log", "ab") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "core.serving.export_check", str(run_dir.resolve()), str(export_format)],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # survives the page's rerun and a server restart
    status = ExportStatus(export_format, ExportState.STARTING, pid=child.pid, updated=time.time())
    _write_status(run_dir, status)
    return status


# --- what the child does -------------------------------------------------------------


def check_export(run_dir: str | os.PathLike, export_format: ExportFormat | str) -> ExportStatus:
    """Make the export and score it against the Keras model; writes and returns its status."""
    run_dir, export_format = Path(run_dir), ExportFormat(export_format)
    (run_dir / EXPORTS_DIR).mkdir(exist_ok=True)
    lock = run_dir / EXPORTS_DIR / f".{export_format}.lock"
    with FileLock(lock, timeout=0, what=f"the {export_format.display_name} export of run {run_dir.name}"):
        status = ExportStatus(
            export_format, ExportState.EXPORTING, source=source_of(run_dir), pid=os.getpid(), updated=time.time()
        )
        _write_status(run_dir, status)
        try:
            archive = make_export(run_dir, export_format)
            status = replace(
                status,
                state=ExportState.CHECKING,
                archive_sha256=file_sha256(archive),
                model_bytes=model_bytes(archive, export_format),
            )
            agreement = score_export(run_dir, export_format, archive, _progress_writer(run_dir, status))
        except Exception as error:
            _write_status(
                run_dir,
                replace(
                    status,
                    state=ExportState.FAILED,
                    updated=time.time(),
                    reason=short_message(f"The export failed: {error}"),
                ),
            )
            raise
        status = replace(
            status,
            state=ExportState.AGREES if agreement.agrees else ExportState.DISAGREES,
            done=agreement.photos,
            total=agreement.photos,
            agreement=agreement,
            reason=None if agreement.agrees else f"Not offered: {agreement.describe()}.",
            updated=time.time(),
        )
        _write_status(run_dir, status)
        return status


def score_export(
    run_dir: Path,
    export_format: ExportFormat,
    archive: Path,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> Agreement:
    """Run the zip's model and the Keras model on every test photo; compare their answers."""
    with tempfile.TemporaryDirectory(dir=run_dir / EXPORTS_DIR, prefix=".check-") as folder:
        exported = RUNNERS[export_format](extract_model(archive, export_format, Path(folder)))
        agreement = compare_on_test_photos(run_dir, exported, progress)
    return replace(agreement, max_accuracy_drop=MAX_ACCURACY_DROP) if export_format.quantized else agreement


def score_keras_folder(run_dir: Path, folder: Path) -> Agreement:
    """The plain Keras export (model.keras and its card, core.serving.export.write_keras_folder),
    loaded from ``folder`` with the temperature its card gives, against the run."""
    temperature = json.loads((folder / CARD_JSON).read_text())["calibration"]["temperature"]
    return compare_on_test_photos(run_dir, KerasReference(folder, temperature))


def compare_on_test_photos(
    run_dir: Path,
    exported: Callable[[np.ndarray], np.ndarray],
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> Agreement:
    """``exported`` (images -> probabilities) and the run's Keras model on every test photo."""
    config = read_config(run_dir)
    samples = _test_samples(run_dir)
    reference = KerasReference(run_dir)
    same_label = correct = keras_correct = 0
    worst = 0.0
    for start in range(0, len(samples), CHECK_BATCH):
        batch = samples[start : start + CHECK_BATCH]
        images = np.stack([load_resized(sample.path, config.image_size) for sample in batch]).astype(np.float32)
        truth = np.array([sample.label for sample in batch])
        got, want = np.asarray(exported(images), np.float64), reference(images)
        same_label += int((got.argmax(axis=1) == want.argmax(axis=1)).sum())
        correct += int((got.argmax(axis=1) == truth).sum())
        keras_correct += int((want.argmax(axis=1) == truth).sum())
        worst = max(worst, float(np.abs(got - want).max()))
        progress(start + len(batch), len(samples))
    return Agreement(
        photos=len(samples),
        same_label=same_label,
        max_difference=worst,
        correct=correct,
        keras_correct=keras_correct,
    )


class KerasReference:
    """What the page answers: softmax(model.keras(images) / temperature), in float64.

    The temperature is the run's (trust.json) unless given."""

    def __init__(self, run_dir: Path, temperature: float | None = None):
        self.model = load_run_model(run_dir)
        self.temperature = float(read_trust(run_dir).temperature if temperature is None else temperature)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        logits = np.asarray(self.model(images, training=False), np.float64) / self.temperature
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)


def _test_photos(run_dir: Path) -> list[str]:
    return [sample.path for sample in _test_samples(run_dir)]


def _test_samples(run_dir: Path) -> list[Sample]:
    """The run's recorded test photos and labels; a sentence when they cannot be scored as trained."""
    splits = run_splits(run_dir, read_config(run_dir))
    if read_facts(run_dir).classes not in ([], splits.classes):
        raise ValueError("The dataset's classes changed since training; the export cannot be checked.")
    if not splits.test:
        raise ValueError("The run has no test photos to check the export on.")
    missing = missing_files(splits, "test")
    if missing:
        raise ValueError(
            f"{len(missing)} of the run's {len(splits.test)} test photos are no longer "
            f"in the dataset ({missing[0]}, ...); the export cannot be checked."
        )
    return splits.test


# --- running each format -------------------------------------------------------------


def _saved_model_runner(folder: Path):
    import tensorflow as tf

    serve = tf.saved_model.load(str(folder)).signatures["serving_default"]
    return lambda images: next(iter(serve(tf.constant(images)).values())).numpy()


def _tflite_runner(file: Path):
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=str(file))
    [input_detail], [output_detail] = interpreter.get_input_details(), interpreter.get_output_details()

    def run(images: np.ndarray) -> np.ndarray:
        interpreter.resize_tensor_input(input_detail["index"], images.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(input_detail["index"], images)
        interpreter.invoke()
        return interpreter.get_tensor(output_detail["index"])

    return run


def _onnx_runner(file: Path):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(file), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    return lambda images: session.run(None, {input_name: images})[0]


RUNNERS = {
    ExportFormat.SAVED_MODEL: _saved_model_runner,
    ExportFormat.TFLITE: _tflite_runner,
    ExportFormat.TFLITE_INT8: _tflite_runner,  # float32 in and out, int8 inside
    ExportFormat.ONNX: _onnx_runner,
}


# --- files -----------------------------------------------------------------------------


def _status_path(run_dir: Path, export_format: ExportFormat) -> Path:
    return run_dir / EXPORTS_DIR / f"{export_format}.status.json"


def _write_status(run_dir: Path, status: ExportStatus) -> None:
    write_json(_status_path(run_dir, status.format), status.to_dict())


def _progress_writer(run_dir: Path, status: ExportStatus) -> Callable[[int, int], None]:
    last = 0.0

    def progress(done: int, total: int) -> None:
        nonlocal last
        if time.monotonic() - last >= PROGRESS_INTERVAL or done == total:
            last = time.monotonic()
            _write_status(run_dir, replace(status, done=done, total=total, updated=time.time()))

    return progress


def source_of(run_dir: Path, *more: Path) -> str:
    """Which model.keras and trust.json (and ``more`` files) an export is made from: size and time of each."""
    parts = []
    for path in (model_path(run_dir), run_dir / TRUST_FILE, *more):
        stat = path.stat() if path.is_file() else None
        parts.append(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}" if stat else f"{path.name}:-")
    return " ".join(parts)


def main(argv: list[str] | None = None) -> int:
    """``python -m core.serving.export_check RUN_DIR FORMAT``: exit 0 when the export agrees."""
    run_dir, export_format = sys.argv[1:] if argv is None else argv
    status = check_export(run_dir, export_format)
    reason = status.reason or (status.agreement.describe() if status.agreement else "")
    print(f"{export_format}: {status.state}: {reason}")
    return 0 if status.offered else 1


if __name__ == "__main__":
    sys.exit(main())
