"""Taking a trained model elsewhere: SavedModel (TF Serving), TensorFlow Lite (float32 and int8) and ONNX.

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
    tflite_int8.zip   model_int8.tflite (int8 weights and activations, float32 input and output)
    onnx.zip          model.onnx (runs in onnxruntime)

The int8 model is quantized after training: the converter measures each
activation's range on up to ``REPRESENTATIVE_PHOTOS`` of the run's training
photos (split.json), decoded as training and the page decode them.

A zip is made on first request and again only when model.keras or trust.json
is newer. It is written under a temporary name beside its target and renamed
into place, so a half-written export is never served. Whether an export
*agrees* with the Keras model is checked out of process on the run's test
photos (core.serving.export_check); only an export that agrees is offered.

TensorFlow is imported inside the functions that need it.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Any

from core.data.images import load_resized
from core.runs.run_split import run_splits
from core.runs.store import read_config, read_facts
from core.runs.trust import TRUST_FILE, read_trust
from core.serving.inference import load_run_model, model_path
from core.serving.model_card import CARD_JSON, CARD_MARKDOWN, card_json, card_markdown, model_card

EXPORTS_DIR = "exports"
LABELS_FILE = "labels.txt"
# The calibrated model's output name (the SavedModel signature's and ONNX graph's output).
OUTPUT_NAME = "probabilities"
INPUT_NAME = "images"
# Training photos the int8 converter calibrates activation ranges on: a few dozen is plenty.
REPRESENTATIVE_PHOTOS = 100


class ExportFormat(StrEnum):
    SAVED_MODEL = "saved_model"
    TFLITE = "tflite"
    TFLITE_INT8 = "tflite_int8"
    ONNX = "onnx"

    @property
    def archive(self) -> str:
        """The zip's file name in ``exports/``."""
        return f"{self.value}.zip"

    @property
    def model_member(self) -> str:
        """The model inside the zip (a folder for SavedModel)."""
        return {
            "saved_model": "saved_model",
            "tflite": "model.tflite",
            "tflite_int8": "model_int8.tflite",
            "onnx": "model.onnx",
        }[self.value]

    @property
    def display_name(self) -> str:  # not "title": that is str.title, which a StrEnum keeps
        return {
            "saved_model": "SavedModel for TF Serving",
            "tflite": "TensorFlow Lite",
            "tflite_int8": "TensorFlow Lite int8",
            "onnx": "ONNX",
        }[self.value]

    @property
    def quantized(self) -> bool:
        """Its numbers are int8, not float32: its probabilities are only close, its labels are what counts."""
        return self is ExportFormat.TFLITE_INT8


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
        model_file = WRITERS[export_format](calibrated_model(run_dir), scratch / export_format.model_member, run_dir)
        archive = scratch / export_format.archive
        _write_archive(archive, run_dir, model_file)
        os.replace(archive, target)
    return target


def _write_saved_model(model, folder: Path, run_dir: Path | None = None) -> Path:
    # model.export writes the "serve" / "serving_default" signature TF Serving calls.
    model.export(str(folder), format="tf_saved_model", verbose=False)
    return folder


def _write_tflite(
    model, file: Path, run_dir: Path | None = None, quantize: Callable[[Any], None] | None = None
) -> Path:
    import tensorflow as tf

    # The converter's supported path for Keras 3 models is a SavedModel.
    saved_model = _write_saved_model(model, file.parent / "tflite_source")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    if quantize is not None:
        quantize(converter)
    file.write_bytes(converter.convert())
    shutil.rmtree(saved_model)
    return file


def _write_tflite_int8(model, file: Path, run_dir: Path) -> Path:
    import tensorflow as tf

    size = read_config(run_dir).image_size
    photos = representative_photos(run_dir)

    def representative():
        for path in photos:
            yield [load_resized(path, size)[None].astype("float32")]

    def quantize(converter) -> None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        # Every op in int8; input and output stay float32, so it is called like the float model.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]

    return _write_tflite(model, file, run_dir, quantize)


def representative_photos(run_dir: Path) -> list[str]:
    """Up to REPRESENTATIVE_PHOTOS of the run's training photos, taken evenly along its (class-sorted) list."""
    train = [sample.path for sample in run_splits(run_dir, read_config(run_dir)).train if os.path.isfile(sample.path)]
    if not train:
        raise ValueError("The run's training photos are no longer in the dataset; the int8 export calibrates on them.")
    return train[:: math.ceil(len(train) / REPRESENTATIVE_PHOTOS)]


def _write_onnx(model, file: Path, run_dir: Path | None = None) -> Path:
    import numpy as np

    model(np.zeros((1, *model.input.shape[1:]), np.float32))  # the ONNX exporter wants a called model
    # Keras 3's own ONNX export (tf2onnx underneath for the TensorFlow backend).
    model.export(str(file), format="onnx", verbose=False)
    return file


WRITERS: dict[ExportFormat, Callable[..., Path]] = {  # (model, target, run_dir) -> the model written
    ExportFormat.SAVED_MODEL: _write_saved_model,
    ExportFormat.TFLITE: _write_tflite,
    ExportFormat.TFLITE_INT8: _write_tflite_int8,
    ExportFormat.ONNX: _write_onnx,
}


def companion_files(run_dir: Path) -> dict[str, str]:
    """What goes beside the model in every export: labels.txt and the model card, by file name."""
    card = model_card(run_dir)
    return {
        LABELS_FILE: "\n".join(read_facts(run_dir).classes) + "\n",
        CARD_MARKDOWN: card_markdown(card),
        CARD_JSON: card_json(card),
    }


def _write_archive(archive: Path, run_dir: Path, model_file: Path) -> None:
    """The model (file or folder), labels.txt and the model card, in one zip."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        if model_file.is_dir():
            for path in sorted(model_file.rglob("*")):
                if path.is_file():
                    zipped.write(path, Path(model_file.name) / path.relative_to(model_file))
        else:
            zipped.write(model_file, model_file.name)
        for name, text in companion_files(run_dir).items():
            zipped.writestr(name, text)


def write_keras_folder(run_dir: str | os.PathLike, folder: Path) -> Path:
    """The run's model.keras as it is (it returns logits; the card has the temperature), beside
    labels.txt and the model card, in ``folder``; returns the model file."""
    run_dir = Path(run_dir)
    require_model(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    model_file = Path(shutil.copy2(model_path(run_dir), folder / model_path(run_dir).name))
    for name, text in companion_files(run_dir).items():
        (folder / name).write_text(text)
    return model_file


def model_bytes(archive: Path, export_format: ExportFormat) -> int:
    """The unzipped size of the model inside ``archive`` (all of a SavedModel folder)."""
    member = export_format.model_member
    with zipfile.ZipFile(archive) as zipped:
        return sum(
            info.file_size
            for info in zipped.infolist()
            if info.filename == member or info.filename.startswith(member + "/")
        )


def extract_model(archive: str | os.PathLike, export_format: ExportFormat | str, folder: Path) -> Path:
    """Unzip ``archive`` into ``folder``; returns the model file (or SavedModel folder) in it."""
    export_format = ExportFormat(export_format)
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(folder)  # our own zip, made above: names are ours
    return folder / export_format.model_member


# --- files -----------------------------------------------------------------------------


def require_model(run_dir: Path) -> None:
    """FileNotFoundError with a sentence when the run has no model.keras (yet)."""
    if not model_path(run_dir).is_file():
        raise FileNotFoundError(f"Run {run_dir.name} has no saved model to export.")


def _exports_dir(run_dir: Path) -> Path:
    require_model(run_dir)
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
