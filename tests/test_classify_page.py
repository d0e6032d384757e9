"""The Classify page (Streamlit AppTest): pick a model, drop photos, read the answers."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO
from streamlit.testing.v1 import AppTest
from test_inference import install_trained_run, validation_files, write_bad_and_unusual_files

from pages._classify.export import EXPORT_TAB
from pages._common.text import md


def classify_page(tab: str | None = None) -> AppTest:
    """The page through app.py, with ``tab`` open (the first one when None)."""
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    app.switch_page("pages/classify.py")
    if tab is not None:
        app.session_state["classify_tab"] = tab
    return app.run()


def classify_page_alone(tab: str | None = None) -> AppTest:
    """The page script without app.py, for button clicks.

    AppTest starts every run in Streamlit's legacy pages-folder mode, where
    pages/_common/shell.py reruns the script through app.py; a rerun drops a button
    click. Run on its own, the page needs no such rerun.
    """
    app = AppTest.from_file(str(REPO / "pages" / "classify.py"), default_timeout=120)
    if tab is not None:
        app.session_state["classify_tab"] = tab
    return app.run()


TITLES = {"unsure": "Not sure", "unknown": "None of these"}


def drop_table(app: AppTest) -> pd.DataFrame:
    """A drop's summary as the page shows it: a Markdown table, its cells as written (escaped)."""
    [table] = [m.value for m in app.markdown if m.value.startswith("| File |")]
    header, _rule, *rows = [UNESCAPED_PIPE.split(line.strip()[2:-2]) for line in table.splitlines()]
    return pd.DataFrame([[cell.strip() for cell in row] for row in rows], columns=[c.strip() for c in header])


# A cell ends at a pipe md() did not escape.
UNESCAPED_PIPE = re.compile(r"(?<!\\) \| ")


def texts(elements) -> list[str]:
    return [element.value for element in elements]


def heading(prediction) -> str:
    """The subheader the page gives an answer."""
    if prediction.abstained == "unsure":
        return ":orange[Not sure]"
    if prediction.abstained == "unknown":
        return ":violet[None of these]"
    return f"{prediction.label} — {prediction.confidence:.1%}"


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
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
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
        picker.format_func(name)
        for name in ("20200103-000000-cnn-best", "20200102-000000-cnn-new1", "20200101-000000-cnn-old1")
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


def test_a_drop_is_classified_with_bars_table_csv_and_bad_files_named(run_dir, tmp_path, downloads):
    from core.serving.inference import Predictor

    good = validation_files(run_dir)[:2]  # circles.validation.0.jpg, .1.jpg
    bad = write_bad_and_unusual_files(tmp_path / "bad")
    drop = [
        (name, open(path, "rb").read(), "image/jpeg")
        for name, path in (
            ("circle-a.jpg", good[0]),
            ("truncated.jpg", bad["bad_truncated"]),
            ("circle-b.jpg", good[1]),
            ("notes.jpg", bad["bad_text"]),
            ("bomb.png", bad["bad_bomb"]),
            ("animated.gif", bad["animated"]),
        )
    ]
    # What the model itself says about the same bytes, outside the page.
    expected = Predictor.from_run(run_dir).predict([(name, data) for name, data, _ in drop])
    app = classify_page()
    assert not app.exception

    app.file_uploader[0].set_value(drop).run()

    assert not app.exception
    answers = [h for h in texts(app.subheader) if h != "Summary"]
    classified = [p for p in expected if p.ok]
    assert [p.file for p in classified] == ["circle-a.jpg", "circle-b.jpg", "animated.gif"]
    assert [p.label for p in classified][:2] == ["circles", "circles"]  # the photos are circles
    # Each answer is the model's (the run's thresholds): its label and top probability, as the
    # page rounds it, or "Not sure".
    assert answers == [heading(p) for p in classified]
    assert any(c.startswith("Probabilities are calibrated (temperature ") for c in texts(app.caption))
    errors = texts(app.error)
    assert len(errors) == 3
    assert "truncated.jpg is truncated" in errors[0]
    assert "notes.jpg is not an image" in errors[1]
    assert "bomb.png" in errors[2]
    # Each answer's class probabilities as bars, most likely first.
    bars = [bar.proto.text for bar in app.get("progress")]
    for prediction in classified:
        ranked = sorted(prediction.probabilities.items(), key=lambda item: -item[1])
        expected_bars = [f"{name} · {value:.1%}" for name, value in ranked]
        assert any(bars[i : i + len(ranked)] == expected_bars for i in range(len(bars))), (expected_bars, bars)
    assert len(app.image) >= 3
    assert any("ms" in caption for caption in texts(app.caption))

    # Several photos: a summary table (static: a drop's is small) and a CSV of it.
    assert not app.dataframe
    table = drop_table(app)
    assert list(table["File"]) == [md(name) for name, _, _ in drop]
    assert list(table["Most likely"])[:3] == ["circles", "not classified", "circles"]
    assert list(table["Answer"]) == [TITLES[p.abstained] if p.abstained else p.label or "" for p in expected]
    shown = expected[0].probabilities
    assert list(table.iloc[0][["P(circles)", "P(squares)"]]) == [f"{shown[c]:.1%}" for c in ("circles", "squares")]
    assert table["Problem"][1].startswith("truncated.jpg is truncated")
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
        assert row["answer"] == prediction.answer and row["reason"] == (prediction.reason or "")
        assert float(row["confidence"]) == pytest.approx(prediction.confidence, abs=1e-6)
        probabilities = {name: float(row[f"p_{name}"]) for name in classes}
        assert probabilities == pytest.approx(prediction.probabilities, abs=1e-6)
        assert max(probabilities, key=probabilities.get) == prediction.label
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-5)


def test_gradcam_toggle_shows_an_overlay(run_dir):
    from core.serving.inference import Predictor

    path = validation_files(run_dir)[-1]  # a square
    app = classify_page()
    app.file_uploader[0].set_value(("square.jpg", open(path, "rb").read(), "image/jpeg")).run()
    photo_url = app.image[0].proto.imgs[0].url
    assert not [s for s in app.slider if s.key.startswith("opacity")]  # it comes with the heatmap

    app.toggle(key="gradcam_0").set_value(True).run()

    assert not app.exception
    assert [s.key for s in app.slider if s.key.startswith("opacity")] == ["opacity_0"]
    overlay_url = app.image[0].proto.imgs[0].url
    assert overlay_url != photo_url  # a different picture: the photo with its heatmap

    app.slider(key="opacity_0").set_value(0.9).run()
    assert app.image[0].proto.imgs[0].url not in (photo_url, overlay_url)
    assert texts(app.subheader)[-1] == heading(Predictor.from_run(run_dir).predict([path])[0])


def test_a_drop_summary_shows_a_visitors_file_names_as_written(run_dir):
    """The summary is Markdown: a file name must not become a link, an image, coloured text or a new cell."""
    from core.serving.inference import Predictor

    photos = validation_files(run_dir)[0], validation_files(run_dir)[-1], validation_files(run_dir)[1]
    # No "/": the uploader keeps the base name.
    names = ["![x](http:evil.example) t.jpg", ":red[y] <b>z<b>.jpg", "a | b | c.jpg"]
    app = classify_page()
    app.file_uploader[0].set_value([(n, open(p, "rb").read(), "image/jpeg") for n, p in zip(names, photos)])
    app.run()

    assert not app.exception
    table = drop_table(app)
    assert list(table["File"]) == [
        r"\!\[x\](http\:evil.example) t.jpg",
        r"\:red\[y\] \<b\>z\<b\>.jpg",
        r"a \| b \| c.jpg",
    ]
    assert list(table["Most likely"]) == [p.label for p in Predictor.from_run(run_dir).predict(list(photos))]


def test_a_drop_keeps_small_thumbnails_in_its_own_session_only(run_dir):
    """Each tab holds its last drop: answers without pixels, JPEG thumbnails; no other tab's."""
    circles, squares = validation_files(run_dir)[:2], validation_files(run_dir)[-2:]
    sessions = []
    for photos in (circles, squares):
        app = classify_page()
        app.file_uploader[0].set_value([(Path(p).name, open(p, "rb").read(), "image/jpeg") for p in photos]).run()
        assert not app.exception
        sessions.append((app, [Path(p).name for p in photos]))

    for app, names in sessions:
        kept = app.session_state["classify_drop"]
        assert [p.file for p in kept.predictions] == names
        assert list(drop_table(app)["File"]) == [md(name) for name in names]
        assert all(p.pixels is None for p in kept.predictions)
        assert all(t.startswith(b"\xff\xd8") and len(t) < 64_000 for t in kept.thumbnails)  # JPEG
        assert len(app.image) == len(names)


def test_a_heatmap_is_computed_when_asked_for_and_once_per_photo(run_dir, monkeypatch):
    import core.serving.inference as inference

    computed, gradcam = [], inference.Predictor.gradcam
    monkeypatch.setattr(
        inference.Predictor, "gradcam", lambda self, prediction: computed.append(1) or gradcam(self, prediction)
    )
    path = validation_files(run_dir)[-1]
    app = classify_page()
    app.file_uploader[0].set_value(("square.jpg", open(path, "rb").read(), "image/jpeg")).run()
    assert computed == []

    app.toggle(key="gradcam_0").set_value(True).run()
    app.slider(key="opacity_0").set_value(0.9).run()
    app.slider(key="opacity_0").set_value(0.2).run()

    assert not app.exception and computed == [1]


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
    monkeypatch.setattr(
        inference.Predictor,
        "predict",
        lambda self, files, *a, **k: classified.append(len(files)) or predict(self, files, *a, **k),
    )
    monkeypatch.setenv("PAWLAB_MAX_DROP_PHOTOS", "2")
    app = classify_page()
    app.file_uploader[0].set_value(drop).run()

    assert not app.exception
    assert [e.value for e in app.error] == [
        "That is 3 photos; PawLab classifies at most 2 at a time. Drop fewer or smaller photos."
    ]
    assert not [h for h in texts(app.subheader) if " — " in h] and classified == []

    monkeypatch.setenv("PAWLAB_MAX_DROP_PHOTOS", "200")
    monkeypatch.setenv("PAWLAB_MAX_DROP_BYTES", str(sum(len(data) for _, data, _ in drop) - 1))
    app.run()
    assert "PawLab classifies at most" in app.error[0].value and classified == []

    monkeypatch.delenv("PAWLAB_MAX_DROP_BYTES")
    app.run()
    assert not app.error and classified == [3]


# --- Answers: a class, "Not sure" or "None of these" --------------------------------

WHITE_DISTANCE, NOVELTY_THRESHOLD = 1.0, 0.5


class BrightnessNovelty:
    """A stand-in unknown-photo check: a photo's distance is its mean brightness (0..1).

    The tiny run's circles and squares are dark (about 0.15); a white photo is 1.0.
    """

    threshold = NOVELTY_THRESHOLD
    image_size = 32  # photos are resized to this for the check; brightness does not depend on it

    def distance(self, embeddings):
        return embeddings[:, 0] / 255.0


def brightness_embedder(image_size):
    import tensorflow as tf

    return tf.function(lambda images: tf.reduce_mean(images, axis=[1, 2, 3])[:, None])


@pytest.fixture
def checked_run(run_dir, monkeypatch):
    """The tiny run with an unknown-photo check (a stub: real ones need ImageNet weights), and
    so unsure (a high temperature) that no photo reaches its confidence threshold."""
    import core.serving.inference as inference
    from core.runs.trust import read_trust, write_trust

    trust = read_trust(run_dir)
    trust.temperature, trust.confidence_threshold, trust.novelty_threshold = 50.0, 0.9, NOVELTY_THRESHOLD
    write_trust(run_dir, trust)
    monkeypatch.setattr(inference, "_load_novelty", lambda run, trust: BrightnessNovelty())
    monkeypatch.setattr(inference, "_pooled_embedder", brightness_embedder)
    return run_dir


def white_photo() -> tuple[str, bytes, str]:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (255, 255, 255)).save(buffer, "PNG")
    return ("white wall.png", buffer.getvalue(), "image/png")


def test_answers_are_not_sure_or_none_of_these_with_their_reason_and_sliders_change_them(checked_run):
    circle = validation_files(checked_run)[0]
    app = classify_page()
    app.file_uploader[0].set_value([("circle.jpg", open(circle, "rb").read(), "image/jpeg"), white_photo()]).run()

    assert not app.exception
    assert texts(app.subheader)[1:] == [":orange[Not sure]", ":violet[None of these]"]
    [unsure] = texts(app.warning)
    assert "sure; this run answers from 90%. The closest class: circles (" in unsure
    [unknown] = texts(app.info)
    assert unknown.startswith("Looks like none of the training photos (distance 1.000 \\> 0.500).")
    assert list(drop_table(app)["Answer"]) == ["Not sure", "None of these"]
    confidence = app.slider(key=f"answer_confidence_{checked_run.name}")
    novelty = app.slider(key=f"answer_novelty_{checked_run.name}")
    assert (confidence.value, novelty.value) == (0.9, NOVELTY_THRESHOLD)  # the run's own

    confidence.set_value(0.0).run()  # answer whatever the confidence
    assert not app.exception
    assert texts(app.subheader)[1].startswith("circles — ")
    assert texts(app.subheader)[2] == ":violet[None of these]"  # unknown however sure

    app.slider(key=f"answer_novelty_{checked_run.name}").set_value(1.0).run()  # nothing is too far
    assert all(" — " in h for h in texts(app.subheader)[1:])  # both answered with a class
    assert not app.info and not app.warning
    assert list(drop_table(app)["Answer"]) == list(drop_table(app)["Most likely"])


def test_a_class_named_unsure_is_answered_as_that_class_not_as_not_sure(run_dir):
    """A photo the model is sure is class "unsure" used to show as an orange "Not sure"."""
    from core.fileio import read_json, write_json
    from core.runs.trust import read_trust, write_trust

    facts = read_json(run_dir / "facts.json").value
    write_json(run_dir / "facts.json", {**facts, "classes": ["unsure", "unknown"]})  # circles, squares
    trust = read_trust(run_dir)
    trust.confidence_threshold = 0.0  # the model answers every photo with its class
    write_trust(run_dir, trust)
    circle, square = validation_files(run_dir)[0], validation_files(run_dir)[-1]

    app = classify_page()
    drop = [
        ("circle.jpg", open(circle, "rb").read(), "image/jpeg"),
        ("square.jpg", open(square, "rb").read(), "image/jpeg"),
    ]
    app.file_uploader[0].set_value(drop).run()

    assert not app.exception
    answers = texts(app.subheader)[1:]
    assert answers[0].startswith("unsure — ") and answers[1].startswith("unknown — "), answers
    assert not app.warning and not app.info  # no "Not sure" / "None of these" explanation
    assert list(drop_table(app)["Answer"]) == ["unsure", "unknown"]


def test_a_from_scratch_model_says_why_it_has_no_unknown_check(run_dir):
    app = classify_page()

    assert not [s for s in app.slider if s.key.startswith("answer_novelty")]
    assert any(
        "only models with a frozen ImageNet backbone can tell a photo of something else" in c
        for c in texts(app.caption)
    )
    assert app.slider(key=f"answer_confidence_{run_dir.name}").value == pytest.approx(
        __import__("core.runs.trust", fromlist=["read_trust"]).read_trust(run_dir).confidence_threshold
    )


# --- Many photos at once -------------------------------------------------------------


def zip_bytes(files: dict[str, bytes]) -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_a_zip_is_classified_with_progress_into_the_table_csv_and_a_sorted_zip(
    checked_run, downloads, deferred_downloads, monkeypatch
):
    import csv
    import io
    import zipfile

    import pages._classify.batch as batch

    seen, classify_many = [], batch.classify_many

    def spying(predictor, photos, progress=None, **kwargs):
        assert progress is not None  # the page's progress bar
        return classify_many(
            predictor,
            photos,
            **kwargs,
            progress=lambda done, total: seen.append((done, total)) or progress(done, total),
        )

    monkeypatch.setattr(batch, "classify_many", spying)
    monkeypatch.setattr("core.serving.batch.BATCH", 2)
    circles = validation_files(checked_run)[:3]
    upload = {f"trip/{i}-{Path(p).name}": open(p, "rb").read() for i, p in enumerate(circles)}
    upload |= {"trip/white.png": white_photo()[1], "trip/broken.jpg": b"not a photo", "readme.txt": b"hi"}

    app = classify_page()
    [confidence] = [s for s in app.slider if s.key.startswith("answer_confidence")]
    confidence.set_value(0.0).run()  # circles are answered; the white photo is still unknown
    app.file_uploader(key="batch_zip").set_value(("holiday.zip", zip_bytes(upload), "application/zip")).run()

    assert not app.exception and not app.error, texts(app.error)
    names = sorted(n for n in upload if n.endswith((".jpg", ".png")))
    assert seen == [(2, 5), (4, 5), (5, 5)]
    table = app.dataframe[0].value
    assert list(table["file"]) == names
    assert dict(zip(table["file"], table["answer"])) == {
        **{n: "circles" for n in names if "circle" in n},
        "trip/white.png": "None of these",
        "trip/broken.jpg": "",
    }
    rows = list(csv.DictReader(io.StringIO(downloads["batch-predictions.csv"].decode())))
    assert [(r["file"], r["answer"]) for r in rows] == [
        (n, "unknown" if "white" in n else "" if "broken" in n else "circles") for n in names
    ]
    assert rows[names.index("trip/white.png")]["reason"].startswith("looks like none of the training photos")
    assert [r["abstained"] for r in rows] == ["unknown" if "white" in n else "" for n in names]
    assert any(m.value.startswith("**5 photos**") for m in app.markdown)

    archive = zipfile.ZipFile(io.BytesIO(deferred_downloads["sorted-by-answer.zip"]()))
    assert sorted(archive.namelist()) == sorted(
        [f"answered/circles/{Path(n).name}" for n in names if "circle" in n]
        + ["none of these/white.png", "unreadable/broken.jpg"]
    )

    # The sliders re-answer the zip without classifying it again.
    app.slider(key=f"answer_novelty_{checked_run.name}").set_value(1.0).run()
    assert seen[3:] == [] and "None of these" not in list(app.dataframe[0].value["answer"])


def test_a_zip_that_cannot_be_extracted_is_one_sentence(run_dir):
    app = classify_page()
    app.file_uploader(key="batch_zip").set_value(("photos.zip", b"PK not really a zip", "application/zip")).run()

    assert not app.exception
    [error] = texts(app.error)
    assert "is not a zip archive, or it is damaged" in error
    assert not app.dataframe


def test_a_server_folder_only_when_local_paths_are_allowed(run_dir, monkeypatch):
    assert not [t for t in classify_page().text_input if t.key == "batch_folder"]

    monkeypatch.setenv("PAWLAB_ALLOW_LOCAL_PATHS", "1")
    app = classify_page()
    folder = str(Path(validation_files(run_dir)[0]).parent.parent)  # validation/{circles,squares}
    app.text_input(key="batch_folder").set_value(folder).run()
    assert not app.exception
    assert len(app.dataframe[0].value) == len(validation_files(run_dir))


class Gate:
    """Holds the model's ``hold_at``-th call (0-based) until ``open`` is set, so a test can look
    at the page while a background batch runs."""

    def __init__(self, hold_at: int):
        import threading

        self.hold_at, self.calls = hold_at, 0
        self.open, self.waiting = threading.Event(), threading.Event()


@pytest.fixture
def gate(monkeypatch) -> Gate:
    import core.serving.inference as inference

    gate, predict = Gate(hold_at=1), inference.Predictor.predict

    def held(self, files, *args, **kwargs):
        if gate.calls == gate.hold_at:
            gate.waiting.set()
            gate.open.wait(60)
        gate.calls += 1
        return predict(self, files, *args, **kwargs)

    monkeypatch.setattr(inference.Predictor, "predict", held)
    yield gate
    gate.open.set()  # never leave a job waiting


@pytest.fixture
def large_batches(monkeypatch):
    """More than two photos is a large batch, classified two at a time in the background."""
    monkeypatch.setattr("pages._classify.batch.INLINE_PHOTOS", 2)
    monkeypatch.setattr("core.serving.batch.BATCH", 2)


def five_photo_zip(run_dir) -> tuple[str, bytes, str]:
    photos = validation_files(run_dir)[:5]
    return ("many.zip", zip_bytes({Path(p).name: open(p, "rb").read() for p in photos}), "application/zip")


def test_a_large_zip_is_classified_in_the_background_while_the_page_shows_its_progress(run_dir, gate, large_batches):
    app = classify_page()
    app.file_uploader(key="batch_zip").set_value(five_photo_zip(run_dir)).run()

    assert not app.exception
    assert gate.waiting.wait(30)  # the job is held in its second batch; the script run is over
    [bar] = app.progress
    assert bar.proto.text in ("Classified 0 of 5 photos…", "Classified 2 of 5 photos…")
    assert app.button(key="batch_cancel") and not app.dataframe

    gate.open.set()
    assert app.session_state["classify_batch"].job.wait(60) == "done"
    app.run()

    assert not app.exception and not app.progress
    assert list(app.dataframe[0].value["file"]) == sorted(Path(p).name for p in validation_files(run_dir)[:5])


def test_a_background_batch_can_be_cancelled_and_started_again(run_dir, gate, large_batches):
    app = classify_page()
    app.file_uploader(key="batch_zip").set_value(five_photo_zip(run_dir)).run()
    assert gate.waiting.wait(30)
    job = app.session_state["classify_batch"].job
    work = Path(app.session_state["classify_batch"].work.name)

    app.button(key="batch_cancel").click().run()

    assert not app.exception
    assert [p.proto.text for p in app.progress] == ["Cancelling…"]
    gate.open.set()
    assert job.wait(60) == "cancelled"
    app.run()
    assert texts(app.info)[-1] == "Cancelled after 4 of 5 photos; nothing was kept."  # the held batch ended
    assert not app.dataframe and not work.exists()  # the extracted photos are gone

    app.button(key="batch_again").click().run()
    assert app.session_state["classify_batch"].job.wait(60) == "done"
    app.run()
    assert len(app.dataframe[0].value) == 5


def test_a_zip_over_the_batch_cap_is_refused_in_one_sentence_before_it_is_unpacked(run_dir, monkeypatch):
    monkeypatch.setenv("PAWLAB_MAX_BATCH_PHOTOS", "4")
    page_tmp = Path(run_dir).parent / "page-tmp"  # where the page's work folders go
    page_tmp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(page_tmp))

    app = classify_page()
    app.file_uploader(key="batch_zip").set_value(five_photo_zip(run_dir)).run()

    assert not app.exception
    assert texts(app.error) == ["The file 'many.zip' holds 5 photos; PawLab classifies at most 4 at a time."]
    assert not app.dataframe and not app.progress
    assert not [p for p in page_tmp.rglob("*") if p.is_file()]  # nothing unpacked


# --- Exports that are proven to agree ---------------------------------------------------


def export_tab_with(monkeypatch, run_dir, statuses: dict, offered: dict) -> tuple[AppTest, list]:
    """The page with export_check's answers replaced: ``statuses`` and ``offered`` by format."""
    import pages._classify.export as export
    from core.serving.export_check import ExportStatus

    started = []
    monkeypatch.setattr(export, "export_status", lambda run, fmt: statuses.get(fmt, ExportStatus(fmt)))
    monkeypatch.setattr(export, "offered_export", lambda run, fmt: offered.get(fmt))
    monkeypatch.setattr(export, "start_export", lambda run, fmt: started.append(fmt))
    app = classify_page_alone(tab=EXPORT_TAB)
    assert not app.exception, app.exception
    return app, started


def test_the_exports_are_drawn_only_while_their_tab_is_open(run_dir):
    def keras_download(app: AppTest) -> list:
        return [b for b in app.get("download_button") if "Keras model" in b.proto.label]

    square = validation_files(run_dir)[-1]
    app = classify_page()
    assert not app.exception and not keras_download(app)  # the Photos tab is open
    app.file_uploader[0].set_value(("square.jpg", open(square, "rb").read(), "image/jpeg")).run()
    answer = texts(app.subheader)[-1]

    app.session_state["classify_tab"] = EXPORT_TAB
    app.run()
    assert not app.exception and keras_download(app)
    # The Photos tab is still drawn (hidden), so the drop and its answer survive a look here.
    assert texts(app.subheader)[-1] == answer and len(app.image) == 1


def test_only_an_export_that_agrees_is_offered_with_its_agreement(run_dir, monkeypatch, tmp_path):
    from core.serving.export import ExportFormat
    from core.serving.export_check import Agreement, ExportState, ExportStatus

    checked = tmp_path / "saved_model.zip"
    checked.write_bytes(b"a checked zip")
    agree = Agreement(photos=200, same_label=200, max_difference=6.6e-08)
    statuses = {
        ExportFormat.SAVED_MODEL: ExportStatus(ExportFormat.SAVED_MODEL, ExportState.AGREES, 200, 200, agree),
        ExportFormat.TFLITE: ExportStatus(
            ExportFormat.TFLITE,
            ExportState.DISAGREES,
            200,
            200,
            Agreement(200, 197, 0.3),
            reason="Not offered: same label on 197 of 200 test photos, largest probability difference 3.0e-01.",
        ),
        ExportFormat.ONNX: ExportStatus(ExportFormat.ONNX, ExportState.CHECKING, 64, 200),
    }
    app, started = export_tab_with(monkeypatch, run_dir, statuses, {ExportFormat.SAVED_MODEL: checked})

    labels = [b.proto.label for b in app.get("download_button")]
    assert "⬇️ saved_model.zip" in labels
    assert not [label for label in labels if "tflite" in label or "onnx" in label]
    assert any(
        "same label on 200 of 200 test photos, largest probability difference 6.6e-08" in c for c in texts(app.caption)
    )
    assert [w.value.replace("\\", "") for w in app.warning] == [statuses[ExportFormat.TFLITE].reason]
    assert [p.proto.text for p in app.progress] == ["Checking it on the run's test photos (64 of 200)"]
    assert [b.key for b in app.button if b.key.startswith("prepare_")] == ["prepare_tflite", "prepare_tflite_int8"]

    app.button(key="prepare_tflite").click().run()
    assert started == [ExportFormat.TFLITE]


def test_an_agreeing_status_without_its_checked_zip_is_not_offered(run_dir, monkeypatch):
    from core.serving.export import ExportFormat
    from core.serving.export_check import Agreement, ExportState, ExportStatus

    agree = Agreement(photos=10, same_label=10, max_difference=1e-7)
    statuses = {ExportFormat.ONNX: ExportStatus(ExportFormat.ONNX, ExportState.AGREES, 10, 10, agree)}
    app, _started = export_tab_with(monkeypatch, run_dir, statuses, offered={})  # the zip changed

    assert not [b for b in app.get("download_button") if "onnx" in b.proto.label]
    assert any("prepare it again" in w.value for w in app.warning)
    assert {b.key for b in app.button if b.key.startswith("prepare_")} == {
        "prepare_saved_model",
        "prepare_tflite",
        "prepare_tflite_int8",
        "prepare_onnx",
    }


def test_the_model_card_is_offered_alone_and_shown_as_core_wrote_it(run_dir, downloads):
    from core.serving.model_card import card_json, card_markdown, model_card

    app = classify_page_alone(tab=EXPORT_TAB)
    card = model_card(run_dir)
    assert downloads[f"{run_dir.name}-MODEL_CARD.md"].decode() == card_markdown(card)
    assert downloads[f"{run_dir.name}-model_card.json"].decode() == card_json(card)
    assert not [m for m in app.markdown if m.value.startswith("# Model card")]

    app.toggle(key=f"show_card_{run_dir.name}").set_value(True).run()
    assert [m.value for m in app.markdown if m.value.startswith("# Model card")] == [card_markdown(card).strip()]


def test_a_real_export_is_prepared_in_the_background_checked_and_then_offered(run_dir):
    """Prepare starts core's real check (a child process): progress while it runs, then the zip."""
    from core.serving.export_check import ExportState, export_status

    app = classify_page_alone(tab=EXPORT_TAB)
    app.button(key="prepare_tflite").click().run()
    assert not app.exception and not app.error
    deadline = time.monotonic() + 300
    while export_status(run_dir, "tflite").state.running and time.monotonic() < deadline:
        time.sleep(1)
    status = export_status(run_dir, "tflite")
    assert status.state == ExportState.AGREES, status

    app.run()
    assert [b.proto.label for b in app.get("download_button") if "tflite" in b.proto.label] == ["⬇️ tflite.zip"]
    assert any(
        c.startswith(f"✅ Checked: same label on {status.agreement.photos} of {status.agreement.photos}")
        for c in texts(app.caption)
    )
    assert not [b for b in app.button if b.key == "prepare_tflite"]


def test_many_classes_show_the_five_most_likely_and_the_rest_summed():
    from pages._classify.views import ranked_probabilities

    probabilities = {f"class {i}": p for i, p in enumerate([0.02, 0.5, 0.1, 0.03, 0.2, 0.05, 0.1])}
    shown, rest = ranked_probabilities(probabilities)
    assert [value for _, value in shown] == [0.5, 0.2, 0.1, 0.1, 0.05]
    assert rest == pytest.approx(0.05)
    assert ranked_probabilities({"cats": 1.0, "dogs": 0.0}) == ([("cats", 1.0), ("dogs", 0.0)], 0)


def test_a_class_name_in_a_probability_bar_reads_as_written():
    """A folder name is not Markdown: no link, no colour in the bar's label."""
    from streamlit.testing.v1 import AppTest

    def page():
        from pages._classify.views import show_probabilities

        show_probabilities({"[x](http://evil.example)": 0.6, ":red[y]": 0.4})

    app = AppTest.from_function(page).run()
    assert [bar.proto.text for bar in app.get("progress")] == [
        r"\[x\](http\://evil.example) · 60.0%",
        r"\:red\[y\] · 40.0%",
    ]
