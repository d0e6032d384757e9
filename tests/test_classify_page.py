"""The Classify page (Streamlit AppTest): pick a model, drop photos, read the answers."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from conftest import REPO
from test_inference import install_trained_run, validation_files, write_bad_and_unusual_files


def classify_page() -> AppTest:
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    app.switch_page("pages/classify.py")
    return app.run()


def classify_page_alone() -> AppTest:
    """The page script without app.py, for button clicks.

    AppTest starts every run in Streamlit's legacy pages-folder mode, where
    pages/_shell.py reruns the script through app.py; a rerun drops a button
    click. Run on its own, the page needs no such rerun.
    """
    return AppTest.from_file(str(REPO / "pages" / "classify.py"), default_timeout=120).run()


def texts(elements) -> list[str]:
    return [element.value for element in elements]


@pytest.fixture
def run_dir(tmp_path_factory, pawlab_home):
    return install_trained_run(tmp_path_factory, pawlab_home)


def test_without_a_trained_model_the_page_sends_you_to_train():
    app = classify_page()

    assert not app.exception
    assert "no trained model yet" in texts(app.info)[0]
    [link] = app.get("page_link")
    assert link.proto.page == "train" and link.proto.label == "Train a model"
    assert not app.file_uploader  # nothing to classify with


def test_the_page_does_not_load_tensorflow_without_a_model(tmp_path):
    """Opening Classify before any training must stay quick: no TensorFlow import."""
    script = (
        "import sys\n"
        "from streamlit.testing.v1 import AppTest\n"
        f"app = AppTest.from_file({str(REPO / 'app.py')!r}, default_timeout=60)\n"
        "app.switch_page('pages/classify.py')\n"
        "app.run()\n"
        "assert not app.exception, app.exception\n"
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n"
    )
    env = {"PAWLAB_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_models_are_listed_best_test_accuracy_first(run_dir, pawlab_home):
    from core.fileio import read_json, write_json
    from core.runs.store import update_status

    def copy_with(name, accuracy, created):
        target = pawlab_home / "runs" / name
        shutil.copytree(run_dir, target)
        config = read_json(target / "config.json").value
        write_json(target / "config.json", {**config, "created": created})
        evaluation = read_json(target / "evaluation.json").value
        write_json(target / "evaluation.json", {**evaluation, "accuracy": accuracy})
        return target

    now = time.time()
    copy_with("20200101-000000-cnn-old1", 0.75, now - 3000)
    copy_with("20200102-000000-cnn-new1", 0.75, now - 1000)
    copy_with("20200103-000000-cnn-best", 0.95, now - 2000)
    unfinished = copy_with("20200104-000000-cnn-runs", 0.99, now)
    update_status(unfinished, state="running")
    shutil.rmtree(run_dir)

    app = classify_page()

    picker = app.selectbox[0]
    assert picker.options == [
        picker.format_func(name) for name in
        ("20200103-000000-cnn-best", "20200102-000000-cnn-new1", "20200101-000000-cnn-old1")
    ]
    assert all("runs" not in option for option in picker.options)  # only completed runs
    assert "Tutorial CNN · test accuracy 95.0% · " in picker.options[0]


@pytest.fixture
def downloads(monkeypatch) -> dict[str, bytes]:
    """What the page's download buttons hand the browser, by file name."""
    from streamlit.runtime.media_file_storage import MediaFileKind
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    offered: dict[str, bytes] = {}
    store = MemoryMediaFileStorage.load_and_get_id

    def recording(self, path_or_data, mimetype, kind, filename=None):
        if kind == MediaFileKind.DOWNLOADABLE and isinstance(path_or_data, bytes):
            offered[filename] = path_or_data
        return store(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", recording)
    return offered


def test_a_drop_is_classified_with_chart_table_csv_and_bad_files_named(run_dir, tmp_path, downloads):
    from core.serving.inference import Predictor

    good = validation_files(run_dir)[:2]  # circles.validation.0.jpg, .1.jpg
    bad = write_bad_and_unusual_files(tmp_path / "bad")
    drop = [(name, open(path, "rb").read(), "image/jpeg") for name, path in (
        ("circle-a.jpg", good[0]), ("truncated.jpg", bad["bad_truncated"]),
        ("circle-b.jpg", good[1]), ("notes.jpg", bad["bad_text"]),
        ("bomb.png", bad["bad_bomb"]), ("animated.gif", bad["animated"]),
    )]
    # What the model itself says about the same bytes, outside the page.
    expected = Predictor.from_run(run_dir).predict([(name, data) for name, data, _ in drop])
    app = classify_page()
    assert not app.exception

    app.file_uploader[0].set_value(drop).run()

    assert not app.exception
    answers = [h for h in texts(app.subheader) if " — " in h]
    classified = [p for p in expected if p.ok]
    assert [p.file for p in classified] == ["circle-a.jpg", "circle-b.jpg", "animated.gif"]
    assert [p.label for p in classified][:2] == ["circles", "circles"]  # the photos are circles
    # Each answer is the model's label and top probability, as the page rounds it.
    assert answers == [f"{p.label} — {p.confidence:.1%}" for p in classified]
    errors = texts(app.error)
    assert len(errors) == 3
    assert "truncated.jpg is truncated" in errors[0]
    assert "notes.jpg is not an image" in errors[1]
    assert "bomb.png" in errors[2]
    assert len(app.get("plotly_chart")) == 3
    assert len(app.image) >= 3
    assert any("ms" in caption for caption in texts(app.caption))

    # Several photos: a summary table and a CSV of it.
    [table] = app.dataframe
    assert list(table.value["file"]) == [name for name, _, _ in drop]
    assert list(table.value["prediction"])[:3] == ["circles", "not classified", "circles"]
    assert [b.proto.label for b in app.get("download_button") if "CSV" in b.proto.label]
    check_predictions_csv(downloads["predictions.csv"], expected, classes=["circles", "squares"])


def check_predictions_csv(data: bytes, expected, classes: list[str]) -> None:
    """One row per dropped file, in drop order: its label and probabilities, or why not."""
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(data.decode())))
    assert [row["file"] for row in rows] == [p.file for p in expected]
    for row, prediction in zip(rows, expected):
        if not prediction.ok:
            assert row["prediction"] == "" and row["error"] == prediction.error
            assert all(row[f"p_{name}"] == "" for name in classes)
            continue
        assert row["prediction"] == prediction.label and row["error"] == ""
        assert float(row["confidence"]) == pytest.approx(prediction.confidence, abs=1e-6)
        probabilities = {name: float(row[f"p_{name}"]) for name in classes}
        assert probabilities == pytest.approx(prediction.probabilities, abs=1e-6)
        assert max(probabilities, key=probabilities.get) == prediction.label
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-5)


def test_gradcam_toggle_shows_an_overlay(run_dir):
    path = validation_files(run_dir)[-1]  # a square
    app = classify_page()
    app.file_uploader[0].set_value(("square.jpg", open(path, "rb").read(), "image/jpeg")).run()
    photo_url = app.image[0].proto.imgs[0].url
    assert app.slider(key="opacity_0").disabled

    app.toggle(key="gradcam_0").set_value(True).run()

    assert not app.exception
    assert not app.slider(key="opacity_0").disabled
    overlay_url = app.image[0].proto.imgs[0].url
    assert overlay_url != photo_url  # a different picture: the photo with its heatmap

    app.slider(key="opacity_0").set_value(0.9).run()
    assert app.image[0].proto.imgs[0].url not in (photo_url, overlay_url)
    assert texts(app.subheader)[-1].startswith("squares — ")


def test_export_buttons_prepare_and_offer_the_files(run_dir):
    app = classify_page_alone()
    assert not app.exception
    labels = [b.proto.label for b in app.get("download_button")]
    assert any("Keras model" in label for label in labels)
    assert not any("TensorFlow Lite" in label for label in labels)  # not made yet

    app.button(key="prepare_tflite").click().run()

    assert not app.exception and not app.error, [e.value for e in app.error]
    assert (run_dir / "exports" / "model.tflite").is_file()
    labels = [b.proto.label for b in app.get("download_button")]
    assert any("TensorFlow Lite" in label for label in labels)
    app.run()  # from now on the prepared file is offered straight away
    assert not [b for b in app.button if b.key == "prepare_tflite"]
    assert [b for b in app.button if b.key == "prepare_savedmodel"]


def test_reruns_keep_the_compiled_model(run_dir, monkeypatch):
    """Streamlit clears Keras' session after each run unless told not to; that would
    re-optimize the model's graph on every upload (seconds for MobileNetV2)."""
    import keras

    clears = []
    monkeypatch.setattr(keras.backend, "clear_session", lambda *args, **kwargs: clears.append(1))
    photos = validation_files(run_dir)[:2]
    app = classify_page()
    for path in photos:
        app.file_uploader[0].set_value((Path(path).name, open(path, "rb").read(), "image/jpeg")).run()
        assert not app.exception
    app.toggle(key="gradcam_0").set_value(True).run()

    assert clears == []


def test_a_drop_over_the_limits_is_refused_in_one_sentence(run_dir, monkeypatch):
    """PAWLAB_MAX_DROP_PHOTOS / _BYTES: nothing is classified, the page says why."""
    import core.serving.inference as inference

    photos = validation_files(run_dir)[:3]
    drop = [(Path(path).name, open(path, "rb").read(), "image/jpeg") for path in photos]
    classified = []
    predict = inference.Predictor.predict
    monkeypatch.setattr(inference.Predictor, "predict",
                        lambda self, files, *a, **k: classified.append(len(files)) or predict(self, files, *a, **k))
    monkeypatch.setenv("PAWLAB_MAX_DROP_PHOTOS", "2")
    app = classify_page()
    app.file_uploader[0].set_value(drop).run()

    assert not app.exception
    assert [e.value for e in app.error] == [
        "That is 3 photos; PawLab classifies at most 2 at a time. Drop fewer or smaller photos."]
    assert not [h for h in texts(app.subheader) if " — " in h] and classified == []

    monkeypatch.setenv("PAWLAB_MAX_DROP_PHOTOS", "200")
    monkeypatch.setenv("PAWLAB_MAX_DROP_BYTES", str(sum(len(data) for _, data, _ in drop) - 1))
    app.run()
    assert "PawLab classifies at most" in app.error[0].value and classified == []

    monkeypatch.delenv("PAWLAB_MAX_DROP_BYTES")
    app.run()
    assert not app.error and classified == [3]
