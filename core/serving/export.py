"""Taking a trained model elsewhere: SavedModel (TF Serving), TensorFlow Lite and ONNX.

Every export answers what the Classify page answers: calibrated
probabilities. The run's temperature (trust.json) is part of the exported
graph, so the exported model is

    images (float32, [0, 255], shape (batch, S, S, 3))
        -> model.keras -> logits -> / temperature -> softmax -> probabilities

one probability per class, in the order of ``labels.txt``. A run without
trust.json has temperature 1 (plain softmax).

Each format is one zip in ``<run>/exports/`` holding the model file(s),
``labels.txt``, the model card (``MODEL_CARD.md`` and ``model_card.json``,
core.serving.model_card):

    saved_model.zip   saved_model/ (the "serving_default" signature TF Serving calls)
    tflite.zip        model.tflite (float32, no quantization)
    onnx.zip          model.onnx (runs in onnxruntime)

A zip is made on first request and again only when model.keras or trust.json
is newer. It is written under a temporary name beside its target and renamed
into place, so a half-written export is never served. Whether an export
*agrees* with the Keras model is checked out of process on the run's test
photos (core.serving.export_check); only an export that agrees is offered.

TensorFlow is imported inside the functions that need it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import zipfile
from enum import StrEnum
from pathlib import Path

from core.runs.store import read_config, read_facts
from core.runs.trust import TRUST_FILE, read_trust
from core.serving.inference import load_run_model, model_path
from core.serving.model_card import CARD_JSON, CARD_MARKDOWN, card_json, card_markdown, model_card

EXPORTS_DIR = "exports"
LABELS_FILE = "labels.txt"
# The calibrated model's output name (the SavedModel signature's and ONNX graph's output).
OUTPUT_NAME = "probabilities"
INPUT_NAME = "images"


class ExportFormat(StrEnum):
    SAVED_MODEL = "saved_model"
    TFLITE = "tflite"
    ONNX = "onnx"

    @property
    def archive(self) -> str:
        """The zip's file name in ``exports/``."""
        return f"{self.value}.zip"

    @property
    def model_member(self) -> str:
        """The model inside the zip (a folder for SavedModel)."""
        return {"saved_model": "saved_model", "tflite": "model.tflite", "onnx": "model.onnx"}[self.value]

    @property
    def display_name(self) -> str:  # not "title": that is str.title, which a StrEnum keeps
        return {"saved_model": "SavedModel for TF Serving", "tflite": "TensorFlow Lite", "onnx": "ONNX"}[self.value]


# Kept for pages/_classify/views.py until it offers checked exports (export_check.offered_export).


# --- the model every format is made from ---------------------------------------------


def calibrated_model(run_dir: str | os.PathLike):
    """model.keras with the run's temperature scaling and softmax on top: images -> probabilities."""
    import keras

    run_dir = Path(run_dir)
    model = load_run_model(run_dir)
    size = read_config(run_dir).image_size
    temperature = float(read_trust(run_dir).temperature)
    images = keras.Input((size, size, 3), dtype="float32", name=INPUT_NAME)
    logits = model(images, training=False)
    scaled = keras.layers.Rescaling(1.0 / temperature, name="temperature")(logits)
    probabilities = keras.layers.Softmax(name=OUTPUT_NAME)(scaled)
    return keras.Model(images, probabilities, name=f"{model.name}_calibrated")


# --- one zip per format --------------------------------------------------------------


def make_export(run_dir: str | os.PathLike, export_format: ExportFormat | str) -> Path:
    """``exports/<format>.zip`` for the current model.keras and trust.json (made if needed)."""
    run_dir, export_format = Path(run_dir), ExportFormat(export_format)
    target = _exports_dir(run_dir) / export_format.archive
    if _is_fresh(target, run_dir):
        return target
    with _scratch_dir(target.parent) as scratch:
        model_file = WRITERS[export_format](calibrated_model(run_dir), scratch / export_format.model_member)
        archive = scratch / export_format.archive
        _write_archive(archive, run_dir, model_file)
        os.replace(archive, target)
    return target


def _write_saved_model(model, folder: Path) -> Path:
    # model.export writes the "serve" / "serving_default" signature TF Serving calls.
    model.export(str(folder), format="tf_saved_model", verbose=False)
    return folder


def _write_tflite(model, file: Path) -> Path:
    import tensorflow as tf

    # The converter's supported path for Keras 3 models is a SavedModel.
    saved_model = _write_saved_model(model, file.parent / "tflite_source")
    file.write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(saved_model)).convert())
    shutil.rmtree(saved_model)
    return file


def _write_onnx(model, file: Path) -> Path:
    import numpy as np

    model(np.zeros((1, *model.input.shape[1:]), np.float32))  # the ONNX exporter wants a called model
    # Keras 3's own ONNX export (tf2onnx underneath for the TensorFlow backend).
    model.export(str(file), format="onnx", verbose=False)
    return file


WRITERS = {
    ExportFormat.SAVED_MODEL: _write_saved_model,
    ExportFormat.TFLITE: _write_tflite,
    ExportFormat.ONNX: _write_onnx,
}


def _write_archive(archive: Path, run_dir: Path, model_file: Path) -> None:
    """The model (file or folder), labels.txt and the model card, in one zip."""
    card = model_card(run_dir)
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        if model_file.is_dir():
            for path in sorted(model_file.rglob("*")):
                if path.is_file():
                    zipped.write(path, Path(model_file.name) / path.relative_to(model_file))
        else:
            zipped.write(model_file, model_file.name)
        zipped.writestr(LABELS_FILE, "\n".join(read_facts(run_dir).classes) + "\n")
        zipped.writestr(CARD_MARKDOWN, card_markdown(card))
        zipped.writestr(CARD_JSON, card_json(card))


def extract_model(archive: str | os.PathLike, export_format: ExportFormat | str, folder: Path) -> Path:
    """Unzip ``archive`` into ``folder``; returns the model file (or SavedModel folder) in it."""
    export_format = ExportFormat(export_format)
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(folder)  # our own zip, made above: names are ours
    return folder / export_format.model_member


# --- files -----------------------------------------------------------------------------


def _exports_dir(run_dir: Path) -> Path:
    if not model_path(run_dir).is_file():
        raise FileNotFoundError(f"Run {run_dir.name} has no saved model to export.")
    folder = run_dir / EXPORTS_DIR
    folder.mkdir(exist_ok=True)
    return folder


def _is_fresh(target: Path, run_dir: Path) -> bool:
    """An export made from the current model.keras and trust.json (not older ones)."""
    if not target.is_file():
        return False
    sources = [model_path(run_dir), run_dir / TRUST_FILE]
    newest = max(path.stat().st_mtime for path in sources if path.is_file())
    return target.stat().st_mtime >= newest


@contextlib.contextmanager
def _scratch_dir(parent: Path):
    """A temporary folder beside the target (same disk, so os.replace is atomic)."""
    folder = Path(tempfile.mkdtemp(dir=parent, prefix=".export-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
