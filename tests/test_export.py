"""Exports: SavedModel, TFLite and ONNX zips that give the page's calibrated probabilities,
proven on the run's test photos before they are offered, and refused when they do not agree."""

from __future__ import annotations

import json
import os
import time
import zipfile

import numpy as np
import pytest
from test_inference import install_trained_run

# A temperature far enough from 1 that forgetting it moves probabilities well past the tolerance.
TEMPERATURE = 2.5
FORMATS = ("saved_model", "tflite", "onnx")


@pytest.fixture
def run_dir(tmp_path_factory, pawlab_home):
    run_dir = install_trained_run(tmp_path_factory, pawlab_home)
    (run_dir / "trust.json").write_text(json.dumps({"temperature": TEMPERATURE, "ece_before": 0.08, "ece_after": 0.02}))
    return run_dir


def test_the_temperature_matters_on_these_photos(run_dir):
    """Guard for the tests below: T = 2.5 and T = 1 differ by far more than the tolerance."""
    from core.data.images import load_resized
    from core.serving.export_check import TOLERANCE, KerasReference, _test_photos

    images = np.stack([load_resized(path, 32) for path in _test_photos(run_dir)]).astype(np.float32)
    reference = KerasReference(run_dir)
    calibrated = reference(images)
    reference.temperature = 1.0
    assert np.abs(reference(images) - calibrated).max() > 20 * TOLERANCE


@pytest.mark.parametrize("export_format", FORMATS)
def test_each_format_is_made_checked_and_offered(run_dir, export_format):
    from core.serving.export import ExportFormat
    from core.serving.export_check import ExportState, _test_photos, check_export, export_status, offered_export

    assert export_status(run_dir, export_format).state == ExportState.NONE
    assert offered_export(run_dir, export_format) is None

    status = check_export(run_dir, export_format)

    test_photos = len(_test_photos(run_dir))
    assert status.state == ExportState.AGREES, status.reason
    assert status.agreement.photos == status.agreement.same_label == test_photos > 0
    assert status.agreement.max_difference <= 1e-3
    assert (status.done, status.total) == (test_photos, test_photos)
    assert export_status(run_dir, export_format) == status  # what the page polls
    archive = offered_export(run_dir, export_format)
    assert archive == run_dir / "exports" / ExportFormat(export_format).archive
    with zipfile.ZipFile(archive) as zipped:
        names = set(zipped.namelist())
        member = ExportFormat(export_format).model_member
        assert any(name == member or name.startswith(member + "/") for name in names)
        assert {"labels.txt", "MODEL_CARD.md", "model_card.json"} <= names
        assert zipped.read("labels.txt").decode().split() == ["circles", "squares"]
        assert json.loads(zipped.read("model_card.json"))["calibration"]["temperature"] == TEMPERATURE
    assert not [p for p in archive.parent.iterdir() if p.name.startswith(".export-")]  # no leftovers


def test_savedmodel_serves_calibrated_probabilities(run_dir, tmp_path):
    """What TF Serving would load: the zip's saved_model/ answers softmax(logits / T)."""
    import tensorflow as tf

    from core.serving.export import make_export
    from core.serving.inference import load_run_model

    with zipfile.ZipFile(make_export(run_dir, "saved_model")) as zipped:
        zipped.extractall(tmp_path / "unzipped")
    serve = tf.saved_model.load(str(tmp_path / "unzipped" / "saved_model")).signatures["serving_default"]
    images = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)

    [served] = serve(tf.constant(images)).values()

    logits = np.asarray(load_run_model(run_dir)(images), np.float64) / TEMPERATURE
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(served, expected, atol=1e-6)


def test_the_check_runs_in_a_child_process_the_page_polls(run_dir):
    from core.serving.export_check import ExportState, export_status, offered_export, start_export

    started = start_export(run_dir, "tflite")
    assert started.state == ExportState.STARTING and started.pid != os.getpid()
    assert start_export(run_dir, "tflite").pid == started.pid  # a second press starts nothing

    seen = set()
    deadline = time.monotonic() + 300
    while (status := export_status(run_dir, "tflite")).state.running and time.monotonic() < deadline:
        seen.add(status.state)
        time.sleep(0.2)

    log_file = run_dir / "exports" / "tflite.log"
    assert status.state == ExportState.AGREES, (status, log_file.read_text()[-2000:])
    assert seen <= {ExportState.STARTING, ExportState.EXPORTING, ExportState.CHECKING}
    # The child prints its verdict after it wrote the status that the page polls for.
    while "tflite: agrees: same label on" not in log_file.read_text() and time.monotonic() < deadline + 30:
        time.sleep(0.2)
    assert "tflite: agrees: same label on" in log_file.read_text()
    assert offered_export(run_dir, "tflite") is not None
    assert start_export(run_dir, "tflite") == status  # done already: not made again


@pytest.mark.parametrize("damage", ["temperature 5% off", "classes swapped"])
def test_an_export_that_does_not_agree_is_refused(run_dir, monkeypatch, damage):
    """A converter that changed the model (here: the calibrated model perturbed before export)."""
    import keras

    from core.serving import export
    from core.serving.export_check import ExportState, check_export, export_status, offered_export

    honest = export.calibrated_model

    def perturbed(run_dir):
        model = honest(run_dir)
        if damage == "temperature 5% off":
            model.get_layer("temperature").scale = 1.0 / (TEMPERATURE * 1.05)
            return model
        swapped = keras.layers.Lambda(lambda p: keras.ops.flip(p, axis=-1))(model.output)
        return keras.Model(model.input, swapped)

    monkeypatch.setattr(export, "calibrated_model", perturbed)
    status = check_export(run_dir, "onnx")

    assert status.state == ExportState.DISAGREES
    assert status.reason.startswith("Not offered: same label on")
    if damage == "classes swapped":
        assert status.agreement.same_label < status.agreement.photos
    else:
        assert status.agreement.same_label == status.agreement.photos
        assert status.agreement.max_difference > 1e-3
    assert offered_export(run_dir, "onnx") is None
    assert export_status(run_dir, "onnx").state == ExportState.DISAGREES


def test_an_offered_export_is_withdrawn_when_its_zip_or_model_changes(run_dir):
    from core.serving.export_check import ExportState, check_export, export_status, offered_export

    status = check_export(run_dir, "saved_model")
    archive = offered_export(run_dir, "saved_model")
    assert status.offered and archive is not None

    with zipfile.ZipFile(archive, "a") as zipped:  # someone changed the file after the check
        zipped.writestr("extra.txt", "not checked")
    assert offered_export(run_dir, "saved_model") is None

    newer = time.time() + 5  # training wrote a better model.keras
    os.utime(run_dir / "model.keras", (newer, newer))
    assert export_status(run_dir, "saved_model").state == ExportState.NONE


def test_missing_test_photos_fail_the_check_with_a_sentence(run_dir, tmp_path):
    import shutil

    from core.serving.export_check import ExportState, _test_photos, check_export, export_status

    # The dataset is shared by every test's copy of the run: remove a photo from a copy of it.
    config = json.loads((run_dir / "config.json").read_text())
    config["data_root"] = str(shutil.copytree(config["data_root"], tmp_path / "data"))
    (run_dir / "config.json").write_text(json.dumps(config))
    os.remove(_test_photos(run_dir)[0])
    with pytest.raises(ValueError, match="no longer in the dataset"):
        check_export(run_dir, "tflite")
    status = export_status(run_dir, "tflite")
    assert status.state == ExportState.FAILED
    assert "test photos are no longer in the dataset" in status.reason


def test_tflite_serves_calibrated_probabilities_and_a_new_calibration_remakes_it(run_dir, tmp_path):
    import tensorflow as tf

    from core.serving.export import extract_model, make_export
    from core.serving.export_check import KerasReference

    archive = make_export(run_dir, "tflite")
    tflite = extract_model(archive, "tflite", tmp_path / "unzipped")
    images = np.random.default_rng(1).uniform(0, 255, (1, 32, 32, 3)).astype(np.float32)
    interpreter = tf.lite.Interpreter(model_path=str(tflite))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], images)
    interpreter.invoke()
    probabilities = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(probabilities, KerasReference(run_dir)(images), atol=1e-5)

    made = archive.stat().st_mtime
    assert make_export(run_dir, "tflite").stat().st_mtime == made  # fresh: not made again
    newer = made + 5  # a newer trust.json (recalibrated) makes it stale
    os.utime(run_dir / "trust.json", (newer, newer))
    assert make_export(run_dir, "tflite").stat().st_mtime > made


def test_export_without_a_model_says_so(run_dir):
    from core.serving.export import make_export
    from core.serving.export_check import start_export

    (run_dir / "model.keras").unlink()
    with pytest.raises(FileNotFoundError, match="no saved model"):
        make_export(run_dir, "tflite")
    with pytest.raises(FileNotFoundError, match="no saved model"):
        start_export(run_dir, "tflite")


def test_the_checks_reference_is_what_the_page_answers(run_dir):
    """KerasReference (what exports are held to) equals the Classify page's Predictor probabilities."""
    from core.data.images import load_resized
    from core.serving.export_check import KerasReference, _test_photos
    from core.serving.inference import Predictor

    images = np.stack([load_resized(path, 32) for path in _test_photos(run_dir)])

    page = Predictor.from_run(run_dir).probabilities(images)

    np.testing.assert_allclose(page, KerasReference(run_dir)(images.astype(np.float32)), atol=1e-6)


def test_an_onnx_export_keeps_the_models_test_time_flips(run_dir, tmp_path):
    """A run whose model averages each photo and its mirror (core.models.mirror) exports the average."""
    import onnxruntime

    from core.models.mirror import with_test_time_flip
    from core.models.zoo import load_saved_model
    from core.serving.export import make_export

    plain = load_saved_model(run_dir / "model.keras")
    flipped = with_test_time_flip(plain)
    flipped.save(run_dir / "model.keras")
    with zipfile.ZipFile(make_export(run_dir, "onnx")) as zipped:
        zipped.extractall(tmp_path / "unzipped")
    [model_file] = (tmp_path / "unzipped").glob("*.onnx")
    session = onnxruntime.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    images = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)

    [served] = session.run(None, {session.get_inputs()[0].name: images})

    def probabilities(model):
        logits = np.asarray(model(images), np.float64) / TEMPERATURE
        return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)

    np.testing.assert_allclose(served, probabilities(flipped), atol=1e-5)
    assert not np.allclose(served, probabilities(plain), atol=1e-5)


def test_the_int8_model_is_calibrated_on_the_runs_training_photos(run_dir, monkeypatch):
    """Its activation ranges come from training photos (split.json), decoded as the page decodes them."""
    from core.runs.run_split import run_splits
    from core.runs.store import read_config
    from core.serving import export

    monkeypatch.setattr(export, "REPRESENTATIVE_PHOTOS", 10)
    decoded = []
    decode = export.load_resized
    monkeypatch.setattr(export, "load_resized", lambda path, size: decoded.append((path, size)) or decode(path, size))

    export.make_export(run_dir, "tflite_int8")

    train = run_splits(run_dir, read_config(run_dir)).train
    assert len(train) > 10
    assert {size for _, size in decoded} == {32}
    photos = [path for path, _ in decoded]
    assert photos == export.representative_photos(run_dir) and 5 <= len(set(photos)) <= 10
    label_of = {sample.path: sample.label for sample in train}
    assert {label_of[path] for path in photos} == {0, 1}  # spread over the classes, not the first ten of one
