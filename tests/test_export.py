"""Export: a SavedModel zip for TF Serving and a TFLite file that answers like the Keras model."""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest

from test_inference import install_trained_run, validation_files


@pytest.fixture
def run_dir(tmp_path_factory, pawlab_home):
    return install_trained_run(tmp_path_factory, pawlab_home)


def test_exports_are_made_once_cached_and_remade_for_a_newer_model(run_dir):
    import tensorflow as tf

    from core.serving.export import SAVEDMODEL_ZIP, TFLITE_FILE, cached_export, export_savedmodel_zip, export_tflite
    from core.serving.inference import Predictor

    assert cached_export(run_dir, SAVEDMODEL_ZIP) is None
    archive = export_savedmodel_zip(run_dir)
    tflite = export_tflite(run_dir)

    assert archive.parent == tflite.parent == run_dir / "exports"
    assert cached_export(run_dir, SAVEDMODEL_ZIP) == archive
    assert cached_export(run_dir, TFLITE_FILE) == tflite
    with zipfile.ZipFile(archive) as zipped:
        names = set(zipped.namelist())
        assert {"saved_model/saved_model.pb", "labels.txt"} <= names
        assert zipped.read("labels.txt").decode().split() == ["circles", "squares"]
    assert not [p for p in archive.parent.iterdir() if p.name.startswith(".")]  # no leftovers

    # The TFLite model gives the Keras model's logits for a real photo.
    predictor = Predictor.from_run(run_dir)
    [prediction] = predictor.predict(validation_files(run_dir)[:1])
    pixels = prediction.pixels[np.newaxis].astype(np.float32)
    interpreter = tf.lite.Interpreter(model_path=str(tflite))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], pixels)
    interpreter.invoke()
    tflite_logits = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    keras_logits = np.asarray(predictor.model(pixels, training=False))
    np.testing.assert_allclose(tflite_logits, keras_logits, rtol=1e-4, atol=1e-4)

    # A second request is served from the run folder...
    made = archive.stat().st_mtime_ns
    assert export_savedmodel_zip(run_dir).stat().st_mtime_ns == made
    # ...until training writes a better model.keras.
    newer = archive.stat().st_mtime + 5
    os.utime(run_dir / "model.keras", (newer, newer))
    assert cached_export(run_dir, SAVEDMODEL_ZIP) is None
    assert export_savedmodel_zip(run_dir).stat().st_mtime_ns != made


def test_savedmodel_serves_the_keras_logits(run_dir, tmp_path):
    """What TF Serving would load: the zip's saved_model/ with its serving signature."""
    import tensorflow as tf

    from core.serving.export import export_savedmodel_zip
    from core.serving.inference import load_run_model

    with zipfile.ZipFile(export_savedmodel_zip(run_dir)) as zipped:
        zipped.extractall(tmp_path / "unzipped")
    loaded = tf.saved_model.load(str(tmp_path / "unzipped" / "saved_model"))
    serve = loaded.signatures["serving_default"]
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)

    [served] = serve(tf.constant(images)).values()

    np.testing.assert_allclose(served, load_run_model(run_dir)(images), rtol=1e-5, atol=1e-5)


def test_export_without_a_model_says_so(run_dir):
    from core.serving.export import export_tflite

    (run_dir / "model.keras").unlink()
    with pytest.raises(FileNotFoundError, match="no saved model"):
        export_tflite(run_dir)
