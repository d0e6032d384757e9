"""Taking a trained model elsewhere: TF Serving's SavedModel and TensorFlow Lite.

Both files are made from the run's model.keras on first request and kept in
``<run>/exports/``; they are made again only when model.keras is newer. Each
is written to a temporary name in the same folder and renamed into place, so
a half-written export is never served.

The exported models take what model.keras takes: float32 images in [0, 255]
of shape (batch, S, S, 3), and return logits, one per class in the order of
``labels.txt`` (apply softmax for probabilities).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from core.serving.inference import load_run_model, model_path
from core.runs.store import read_facts

EXPORTS_DIR = "exports"
SAVEDMODEL_ZIP = "saved_model.zip"
TFLITE_FILE = "model.tflite"


def export_savedmodel_zip(run_dir: str | os.PathLike) -> Path:
    """A zip of the run's model as a TF Serving SavedModel (``saved_model/``) plus ``labels.txt``."""
    run_dir = Path(run_dir)
    target = _exports_dir(run_dir) / SAVEDMODEL_ZIP
    if _is_fresh(target, run_dir):
        return target
    labels = "\n".join(read_facts(run_dir).classes) + "\n"
    with _scratch_dir(target.parent) as scratch:
        saved_model = _export_saved_model(run_dir, scratch / "saved_model")
        archive = scratch / SAVEDMODEL_ZIP
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
            for path in sorted(saved_model.rglob("*")):
                if path.is_file():
                    zipped.write(path, Path("saved_model") / path.relative_to(saved_model))
            zipped.writestr("labels.txt", labels)
        os.replace(archive, target)
    return target


def export_tflite(run_dir: str | os.PathLike) -> Path:
    """The run's model converted to TensorFlow Lite (float32, no quantization)."""
    import tensorflow as tf

    run_dir = Path(run_dir)
    target = _exports_dir(run_dir) / TFLITE_FILE
    if _is_fresh(target, run_dir):
        return target
    with _scratch_dir(target.parent) as scratch:
        # The converter's supported path for Keras 3 models is a SavedModel.
        saved_model = _export_saved_model(run_dir, scratch / "saved_model")
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
        flatbuffer = converter.convert()
        converted = scratch / TFLITE_FILE
        converted.write_bytes(flatbuffer)
        os.replace(converted, target)
    return target


def cached_export(run_dir: str | os.PathLike, file_name: str) -> Path | None:
    """``exports/<file_name>`` when it was made from the current model.keras, else None."""
    run_dir = Path(run_dir)
    target = run_dir / EXPORTS_DIR / file_name
    if model_path(run_dir).is_file() and _is_fresh(target, run_dir):
        return target
    return None


def _export_saved_model(run_dir: Path, folder: Path) -> Path:
    model = load_run_model(run_dir)
    # model.export writes the "serve" / "serving_default" signature TF Serving calls.
    model.export(str(folder), format="tf_saved_model", verbose=False)
    return folder


def _exports_dir(run_dir: Path) -> Path:
    if not model_path(run_dir).is_file():
        raise FileNotFoundError(f"Run {run_dir.name} has no saved model to export.")
    folder = run_dir / EXPORTS_DIR
    folder.mkdir(exist_ok=True)
    return folder


def _is_fresh(target: Path, run_dir: Path) -> bool:
    """An export made from the current model.keras (not an older checkpoint)."""
    return target.is_file() and target.stat().st_mtime >= model_path(run_dir).stat().st_mtime


@contextlib.contextmanager
def _scratch_dir(parent: Path):
    """A temporary folder beside the target (same disk, so os.replace is atomic)."""
    folder = Path(tempfile.mkdtemp(dir=parent, prefix=".export-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
