"""Answers you can trust: every run calibrates itself, and a prediction may be "unsure" or "unknown".

Two runs, each trained once for this file:

- a tiny from-scratch cnn (tests/test_inference.py's run, 32 px generated
  circles and squares): temperature, calibration error and "unsure" threshold
  in trust.json, and never an unknown-photo check;
- a small transfer run on real cats and dogs (mobilenet_v2_finetune at
  160 px, no fine-tuning, a few dozen photos linked from ../shared): its
  unknown-photo check calls the ten stranger photos (tests/_planted.py)
  "unknown" and answers unseen pets with a class.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from _planted import stranger_photos
from PIL import Image
from test_inference import install_trained_run, validation_files

from core.runs.calibration import expected_calibration_error, fit_temperature, softmax
from core.runs.trust import NOVELTY_FILE, TRUST_FILE, Abstain, read_trust

# The transfer run's photos per class: trained on, and validation/ (a fifth of
# which becomes its test split). UNSEEN_PETS come from elsewhere in validation/.
TRAIN_PETS, VALIDATION_PETS, UNSEEN_PETS = 30, 40, slice(100, 110)


def strangers() -> list[tuple[str, bytes]]:
    """The ten natural non-pet photos as (name, PNG bytes), as a browser would upload them."""
    photos = []
    for name, pixels in stranger_photos().items():
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "PNG")
        photos.append((f"{name}.png", buffer.getvalue()))
    return photos


def validation_logits(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The saved model's logits of the run's validation photos, and their labels."""
    from core.data.pipeline import make_dataset
    from core.runs.run_split import run_splits
    from core.runs.store import read_config
    from core.serving.inference import load_run_model

    config = read_config(run_dir)
    samples = run_splits(run_dir, config).validation
    dataset = make_dataset(samples, config.image_size, config.batch_size, training=False)
    logits = load_run_model(run_dir).predict(dataset.map(lambda images, labels: images), verbose=0)
    return np.asarray(logits, np.float64), np.array([s.label for s in samples])


# --- A from-scratch run -----------------------------------------------------------


@pytest.fixture
def scratch_run(tmp_path_factory, pawlab_home) -> Path:
    return install_trained_run(tmp_path_factory, pawlab_home)


def test_a_run_fits_its_temperature_on_validation_and_stores_it(scratch_run):
    trust = read_trust(scratch_run)
    logits, labels = validation_logits(scratch_run)

    assert (scratch_run / TRUST_FILE).is_file()
    assert trust.temperature == pytest.approx(fit_temperature(logits, labels), rel=1e-3)
    assert trust.temperature != pytest.approx(1.0)  # fitted, not the default
    assert trust.ece_before == pytest.approx(expected_calibration_error(softmax(logits), labels))
    assert trust.ece_after == pytest.approx(
        expected_calibration_error(softmax(logits, trust.temperature), labels), abs=1e-4
    )
    assert sum(b["count"] for b in trust.reliability_after) == len(labels)
    assert 0.0 < trust.confidence_threshold <= 1.0 and trust.target_precision == 0.99
    assert 0.0 <= trust.cv_coverage <= 1.0 and trust.trade_off


def test_a_from_scratch_run_never_says_unknown(scratch_run):
    from core.serving.inference import Predictor

    predictor = Predictor.from_run(scratch_run)
    predictions = predictor.predict(strangers() + validation_files(scratch_run)[:4])

    assert read_trust(scratch_run).novelty_threshold is None
    assert not (scratch_run / NOVELTY_FILE).exists() and predictor.novelty is None
    assert all(p.ok and p.answer != Abstain.UNKNOWN and p.novelty_distance is None for p in predictions)
    # Even an impossible novelty threshold cannot make it say unknown: it has no such check.
    assert all(p.answer != Abstain.UNKNOWN for p in predictor.predict(strangers(), novelty_threshold=0.0))


def test_probabilities_are_calibrated_and_low_ones_are_unsure(scratch_run):
    from core.serving.inference import Predictor

    predictor = Predictor.from_run(scratch_run)
    files = validation_files(scratch_run)
    _logits, _ = validation_logits(scratch_run)
    predictions = predictor.predict(files, confidence_threshold=0.0)

    images = np.stack([p.pixels for p in predictions])
    raw = predictor.logits(images)
    got = np.array([[p.probabilities[c] for c in predictor.classes] for p in predictions])
    np.testing.assert_allclose(got, softmax(raw, predictor.trust.temperature), atol=1e-6)
    assert [p.answer for p in predictions] == [p.label for p in predictions]
    # Just above one photo's confidence: that photo is unsure, with the numbers in its reason.
    least = min(predictions, key=lambda p: p.confidence)
    again = {p.file: p for p in predictor.predict(files, confidence_threshold=least.confidence + 1e-9)}
    assert again[least.file].answer == Abstain.UNSURE
    assert again[least.file].reason.startswith(f"only {least.confidence:.0%} sure; this run answers from")
    assert all(p.answer == p.label for p in again.values() if p.confidence > least.confidence + 1e-9)


def test_an_old_run_without_trust_json_still_predicts_uncalibrated(scratch_run):
    from core.serving.inference import Predictor

    (scratch_run / TRUST_FILE).unlink()
    predictor = Predictor.from_run(scratch_run)
    predictions = predictor.predict(validation_files(scratch_run))

    assert predictor.trust.temperature == 1.0 and predictor.thresholds.confidence == 0.0
    raw = predictor.logits(np.stack([p.pixels for p in predictions]))
    got = np.array([[p.probabilities[c] for c in predictor.classes] for p in predictions])
    np.testing.assert_allclose(got, softmax(raw), atol=1e-6)
    assert all(p.answer == p.label and p.reason is None for p in predictions)  # never unsure


def test_cli_lines_carry_the_answer_and_thresholds_can_be_overridden(scratch_run, capsys):
    import json

    from core.cli import main

    files = validation_files(scratch_run)[:3]
    assert main(["predict", str(scratch_run), *files]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["answer"] for line in lines] == [line["label"] for line in lines]

    assert main(["predict", str(scratch_run), "--confidence-threshold", "1", *files]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert all(line["answer"] == "unsure" and "sure; this run answers from 100%" in line["reason"] for line in lines)


# --- A transfer run on real photos ----------------------------------------------------


def small_real_dataset(cats_and_dogs: Path, target: Path) -> Path:
    """train/ and validation/ of a few dozen real photos per class, linked, not copied."""
    for split, count in (("train", TRAIN_PETS), ("validation", VALIDATION_PETS)):
        for animal in ("cats", "dogs"):
            folder = target / split / animal
            folder.mkdir(parents=True)
            for photo in sorted((cats_and_dogs / split / animal).glob("*.jpg"))[:count]:
                (folder / photo.name).symlink_to(photo)
    return target


@pytest.fixture(scope="module")
def transfer_run(tmp_path_factory, cats_and_dogs, keras_home) -> Path:
    from core.runs.recipes import make_config
    from core.runs.store import RunState, create_run, read_status
    from core.runs.worker import execute_run

    base = tmp_path_factory.mktemp("transfer")
    data = small_real_dataset(cats_and_dogs, base / "data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PAWLAB_HOME", str(base / "home"))
        patch.setenv("KERAS_HOME", str(keras_home))
        config = make_config(data, "mobilenet_v2_finetune", 10, fine_tune_epochs=0, image_size=160)
        run_dir = create_run(config, base / "runs")
        assert execute_run(run_dir) == RunState.COMPLETED, read_status(run_dir).error
    return run_dir


@pytest.fixture(scope="module")
def transfer_predictor(transfer_run, keras_home):
    from core.serving.inference import Predictor

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KERAS_HOME", str(keras_home))
        return Predictor.from_run(transfer_run)


def unseen_pets(cats_and_dogs: Path) -> list[Path]:
    return [
        photo
        for animal in ("cats", "dogs")
        for photo in sorted((cats_and_dogs / "validation" / animal).glob("*.jpg"))[UNSEEN_PETS]
    ]


def test_a_transfer_run_keeps_its_unknown_photo_check(transfer_run):
    from core.models.novelty import NoveltyDetector

    trust = read_trust(transfer_run)
    detector = NoveltyDetector.load(transfer_run / NOVELTY_FILE)
    assert trust.novelty_threshold == pytest.approx(detector.threshold) and 0 < detector.threshold < 1
    assert len(detector.reference) == 2 * TRAIN_PETS  # the training photos, nothing else
    # Fitted on the run's own 160 px features: no second pass over the photos at 224 px.
    assert detector.image_size == 160
    assert not list((transfer_run.parents[1] / "home" / "cache" / "embeddings").rglob("*.npy"))


def test_a_transfer_run_says_unknown_to_strangers_and_answers_pets(transfer_predictor, cats_and_dogs):
    odd = transfer_predictor.predict(strangers())
    pets = transfer_predictor.predict(unseen_pets(cats_and_dogs))

    assert [p.answer for p in odd] == [Abstain.UNKNOWN] * len(odd), [p.to_json() for p in odd]
    assert all(p.reason.startswith("looks like none of the training photos (distance ") for p in odd)
    answered = [p for p in pets if p.answer in transfer_predictor.classes]
    assert len(answered) >= 0.8 * len(pets), [(p.file, p.answer, p.reason) for p in pets]
    assert all(Path(p.file).parent.name == p.answer for p in answered)  # and rightly so
    assert all(p.to_json()["novelty_distance"] == p.novelty_distance for p in odd + pets)


def test_overriding_the_thresholds_changes_the_answers(transfer_predictor, cats_and_dogs):
    odd, pets = strangers()[:3], unseen_pets(cats_and_dogs)[:4]

    everything_known = transfer_predictor.predict(odd, novelty_threshold=2.0, confidence_threshold=0.0)
    nothing_known = transfer_predictor.predict(pets, novelty_threshold=0.0)
    never_sure = transfer_predictor.predict(pets, novelty_threshold=2.0, confidence_threshold=1.01)

    assert [p.answer for p in everything_known] == [p.label for p in everything_known]
    assert [p.answer for p in nothing_known] == [Abstain.UNKNOWN] * len(pets)
    assert [p.answer for p in never_sure] == [Abstain.UNSURE] * len(pets)
    # The run's own thresholds are back for the next call.
    assert transfer_predictor.predict(odd)[0].answer == Abstain.UNKNOWN
