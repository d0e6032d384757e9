"""Classifying files with a trained run: same answers as evaluation, bad files named, CLI.

The helpers at the top (a tiny trained run, copied into each test's
PAWLAB_HOME) are shared with the Grad-CAM, export and Classify page tests.
"""

from __future__ import annotations

import functools
import io
import json
import re
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import make_separable_dataset
from PIL import Image

IMAGE_SIZE = 32


# --- A tiny trained run, trained once per test session ----------------------------


@functools.cache
def _trained_run_template(base: Path) -> Path:
    """Train a cnn on circles vs squares through core.runs.training, under ``base``."""
    from core.runs.recipes import make_config
    from core.runs.store import RunState, create_run
    from core.runs.worker import execute_run

    data = make_separable_dataset(base / "data", per_class=16, size=48)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PAWLAB_HOME", str(base / "home"))
        config = make_config(data, "cnn", 4, batch_size=8, image_size=IMAGE_SIZE)
        run_dir = create_run(config, base / "runs", state=RunState.RUNNING)
        state = execute_run(run_dir)
    assert state == RunState.COMPLETED, (run_dir / "status.json").read_text()
    return run_dir


def install_trained_run(tmp_path_factory, home: Path) -> Path:
    """A completed run (model.keras, config.json, facts.json, status.json, evaluation.json...) in ``home``'s runs."""
    template = _trained_run_template(tmp_path_factory.getbasetemp() / "trained_run")
    target = home / "runs" / template.name
    shutil.copytree(template, target)
    return target


@pytest.fixture
def run_dir(tmp_path_factory, pawlab_home) -> Path:
    return install_trained_run(tmp_path_factory, pawlab_home)


@pytest.fixture
def predictor(run_dir):
    from core.serving.inference import Predictor

    return Predictor.from_run(run_dir)


def validation_files(run_dir: Path) -> list[str]:
    from core.runs.store import read_config

    root = Path(read_config(run_dir).data_root)
    return sorted(str(p) for p in (root / "validation").rglob("*.jpg"))


# --- Bad and unusual files, made in tmp_path ----------------------------------


def sparse_png(width: int, height: int) -> bytes:
    """A valid, all-black 1-bit PNG of any size, made without allocating its pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])
    row = bytes(1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    pixels = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def photo(colour=(200, 60, 60), size=(64, 48)) -> Image.Image:
    image = Image.new("RGB", size, (20, 20, 20))
    image.paste(colour, (size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2))
    return image


def write_bad_and_unusual_files(folder: Path) -> dict[str, Path]:
    """{case: file}; cases starting with "bad_" cannot be classified, the rest can."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}

    def path(name):
        files[name.split(".")[0]] = folder / name
        return folder / name

    photo().save(path("good.jpg"))
    path("bad_text.jpg").write_text("this is not a photo, just text renamed to .jpg")
    path("bad_empty.jpg").write_bytes(b"")
    photo(size=(400, 300)).save(folder / "whole.jpg", quality=95)
    whole = (folder / "whole.jpg").read_bytes()
    path("bad_truncated.jpg").write_bytes(whole[: len(whole) // 2])
    path("bad_bomb.png").write_bytes(sparse_png(20000, 20000))
    sixteen = np.linspace(0, 65535, 48 * 64).reshape(48, 64).astype(np.uint16)
    Image.fromarray(sixteen).save(path("gray16.png"))
    assert Image.open(files["gray16"]).mode.startswith("I")
    photo().convert("CMYK").save(path("cmyk.jpg"))
    photo().convert("P", palette=Image.Palette.ADAPTIVE).save(path("palette.png"))
    frames = [photo(c) for c in ((220, 30, 30), (30, 30, 220), (30, 200, 30))]
    frames[0].save(path("animated.gif"), save_all=True, append_images=frames[1:], duration=100)
    return files


# --- Same answers as evaluation ------------------------------------------------


def test_predictions_match_the_evaluation_pipeline(run_dir):
    """A file gets the probabilities core.runs.evaluation's pipeline gives it, calibrated by the
    run's temperature, not just the label."""
    from core.data.dataset import scan_dataset
    from core.data.pipeline import make_dataset
    from core.runs.calibration import softmax
    from core.runs.store import read_config, read_facts
    from core.runs.trust import read_trust
    from core.serving.inference import Predictor, load_run_model

    config, classes = read_config(run_dir), read_facts(run_dir).classes
    samples = scan_dataset(config.data_root).splits["validation"]
    dataset = make_dataset(samples, config.image_size, config.batch_size, training=False)
    model = load_run_model(run_dir)
    logits = np.concatenate([model(images, training=False) for images, _ in dataset])
    expected = softmax(logits, read_trust(run_dir).temperature)

    predictions = Predictor.from_run(run_dir).predict([s.path for s in samples])
    got = np.array([[p.probabilities[c] for c in classes] for p in predictions])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert [p.label for p in predictions] == [classes[i] for i in expected.argmax(1)]
    assert [p.file for p in predictions] == [s.path for s in samples]


def test_real_photos_match_evaluate_model(shared_dir, tmp_path, pawlab_home):
    """Full-size JPEGs (draft decoding kicks in) give evaluate_model's probabilities."""
    import keras

    from core.data.dataset import Sample
    from core.models.zoo import build_model
    from core.runs.evaluation import evaluate_model
    from core.serving.inference import Predictor

    validation = shared_dir / "data" / "cats_and_dogs" / "validation"
    paths = sorted((validation / "cats").glob("*.jpg"))[:4] + sorted((validation / "dogs").glob("*.jpg"))[:4]
    classes = ["cats", "dogs"]
    samples = [Sample(str(p), classes.index(p.parent.name), p.parent.name) for p in paths]
    model = build_model("cnn", 2, 64, seed=3)
    # Evaluation lists probabilities for misclassified files only. Every file is
    # misclassified under one of the two labellings, so together they list all.
    flipped = [Sample(s.path, 1 - s.label, classes[1 - s.label]) for s in samples]
    expected = {}
    for labelled in (samples, flipped):
        evaluation = evaluate_model(model, labelled, classes, 64, batch_size=3)
        expected.update({m["file"]: m["probabilities"] for m in evaluation["misclassified"]})
    assert len(expected) == len(samples)

    predictions = Predictor(model, classes, 64).predict(paths)
    for prediction in predictions:
        for name in classes:
            assert prediction.probabilities[name] == pytest.approx(expected[prediction.file][name], abs=1e-5)
    keras.backend.clear_session()


# --- One batch, bad files named, the rest still answered ---------------------------


def test_a_drop_is_one_model_call_and_bad_files_get_a_sentence(predictor, tmp_path, monkeypatch):
    files = write_bad_and_unusual_files(tmp_path / "drop")
    batches = []
    compiled = predictor._logits
    monkeypatch.setattr(predictor, "_logits", lambda images: batches.append(images.shape[0]) or compiled(images))

    predictions = predictor.predict(list(files.values()))

    by_case = dict(zip(files, predictions))
    good_cases = [case for case in files if not case.startswith("bad_")]
    assert batches == [len(good_cases)]  # every good photo in a single call
    for case in good_cases:  # 16-bit, CMYK, palette and animated images are photos too
        prediction = by_case[case]
        assert prediction.ok, prediction.error
        assert prediction.label in predictor.classes
        assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
        assert prediction.confidence == max(prediction.probabilities.values())
        assert prediction.ms > 0
    reasons = {
        "bad_text": "not an image",
        "bad_empty": "empty",
        "bad_truncated": "truncated",
        "bad_bomb": "too large|pixel limit",
    }
    for case, words in reasons.items():
        prediction = by_case[case]
        assert prediction.label is None and prediction.probabilities is None
        assert prediction.file == str(files[case])
        assert files[case].name in prediction.error
        assert re.search(words, prediction.error), prediction.error


def test_decompression_bomb_is_refused_without_decoding_it(predictor, tmp_path, monkeypatch):
    """A 20000x20000 PNG (400 million pixels, 50 KB on disk) never reaches the decoder,
    nor does one just over PawLab's own limit (below Pillow's)."""
    from PIL import ImageFile

    (tmp_path / "bomb.png").write_bytes(sparse_png(20000, 20000))
    (tmp_path / "big.png").write_bytes(sparse_png(8000, 7000))  # 56 M pixels > 50 M limit
    decoded = []
    original_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self.size) or original_load(self))

    bomb, big = predictor.predict([tmp_path / "bomb.png", tmp_path / "big.png"])

    assert "bomb.png" in bomb.error and ("too large" in bomb.error or "limit" in bomb.error)
    assert "8000x7000" in big.error and "limit" in big.error
    assert decoded == []


def test_uploaded_bytes_and_files_are_accepted(predictor, tmp_path):
    """Streamlit's UploadedFile is a named BytesIO that may already have been read."""
    buffer = io.BytesIO()
    photo().save(buffer, format="PNG")
    upload = io.BytesIO(buffer.getvalue())
    upload.name = "from the browser.png"
    upload.read()  # position at the end, as after a preview
    empty = io.BytesIO(b"")
    empty.name = "nothing.jpg"

    by_file, by_bytes, nothing = predictor.predict([upload, buffer.getvalue(), empty])

    assert by_file.file == "from the browser.png" and by_file.ok
    assert by_bytes.ok and by_bytes.probabilities == pytest.approx(by_file.probabilities)
    assert nothing.error == "nothing.jpg is empty (0 bytes)."


def test_a_run_without_model_is_a_clear_error(run_dir):
    from core.serving.inference import Predictor, RunNotReadyError

    (run_dir / "model.keras").unlink()
    with pytest.raises(RunNotReadyError, match="no saved model"):
        Predictor.from_run(run_dir)


# --- Command line -------------------------------------------------------------------


def run_cli(capsys, *argv) -> tuple[int, list[dict]]:
    from core.cli import main

    code = main(["predict", *map(str, argv)])
    return code, [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_cli_prints_one_json_line_per_file_and_exits_0(run_dir, capsys):
    files = validation_files(run_dir)[:3]

    code, lines = run_cli(capsys, run_dir, *files)

    assert code == 0
    assert [line["file"] for line in lines] == files
    for line in lines:
        assert set(line) <= {"file", "label", "probabilities", "ms", "answer", "abstained", "reason"}
        assert {"file", "label", "probabilities", "ms", "answer", "abstained"} <= set(line)
        assert line["answer"] == line["label"] if line["abstained"] is None else line["answer"] == line["abstained"]
        assert line["label"] == max(line["probabilities"], key=line["probabilities"].get)
        # The separable photos are named after their class.
        assert Path(line["file"]).name.startswith(line["label"])


def test_cli_names_each_file_as_given(run_dir, capsys, tmp_path, monkeypatch):
    """Two photos with the same name in different folders are two different lines."""
    first, second = validation_files(run_dir)[0], validation_files(run_dir)[-1]
    for folder, source in (("a", first), ("b", second)):
        (tmp_path / folder).mkdir()
        shutil.copy(source, tmp_path / folder / "cat.1.jpg")
    monkeypatch.chdir(tmp_path)

    code, lines = run_cli(capsys, run_dir, "a/cat.1.jpg", "b/cat.1.jpg", "a/missing.jpg")

    assert code == 2
    assert [line["file"] for line in lines] == ["a/cat.1.jpg", "b/cat.1.jpg", "a/missing.jpg"]
    assert lines[0]["label"] != lines[1]["label"]  # a circle and a square
    assert lines[2]["error"] == "a/missing.jpg was not found."


def test_cli_exits_2_when_any_file_fails(run_dir, capsys, tmp_path):
    files = write_bad_and_unusual_files(tmp_path / "drop")

    code, lines = run_cli(capsys, run_dir, files["good"], files["bad_text"], tmp_path / "missing.jpg")

    assert code == 2
    assert "label" in lines[0]
    assert lines[1] == {"file": str(files["bad_text"]), "error": lines[1]["error"]}
    assert "not an image" in lines[1]["error"]
    missing = str(tmp_path / "missing.jpg")
    assert lines[2] == {"file": missing, "error": f"{missing} was not found."}


def test_cli_on_a_folder_that_is_not_a_run_exits_2(capsys, tmp_path):
    code, lines = run_cli(capsys, tmp_path, tmp_path / "any.jpg")
    assert code == 2 and "error" in lines[0]


def test_a_flip_averaging_model_answers_a_photo_and_its_mirror_alike_with_a_heatmap(run_dir, tmp_path):
    """Classify on a run whose saved model averages each photo and its mirror (core.models.mirror)."""
    from core.models.mirror import with_test_time_flip
    from core.models.zoo import load_saved_model
    from core.serving.inference import Predictor

    with_test_time_flip(load_saved_model(run_dir / "model.keras")).save(run_dir / "model.keras")
    photo = Image.open(validation_files(run_dir)[0]).convert("RGB")
    photo.save(tmp_path / "photo.png")
    photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(tmp_path / "mirror.png")

    predictor = Predictor.from_run(run_dir)
    as_is, mirrored = predictor.predict([str(tmp_path / "photo.png"), str(tmp_path / "mirror.png")])
    assert as_is.label == mirrored.label
    assert as_is.probabilities == pytest.approx(mirrored.probabilities, abs=1e-4)
    heatmap = predictor.gradcam(as_is)
    assert heatmap.ndim == 2 and heatmap.max() <= 1
