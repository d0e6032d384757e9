"""Scoring models on a run's test split: accuracy, per-class scores, confusions, mistakes."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import make_separable_dataset

from core.data.dataset import scan_dataset
from core.data.splits import make_splits
from core.runs.evaluation import evaluate_model, evaluate_run, scores
from core.runs.recipes import make_config
from core.runs.run_split import split_for
from core.runs.store import (
    MODEL_FILE,
    SPLIT_FILE,
    RunFacts,
    create_run,
    read_config,
    write_facts,
    write_split,
)


def test_scores_count_true_classes_in_rows():
    labels = np.array([0, 0, 0, 1, 1, 2])
    predictions = np.array([0, 0, 1, 1, 2, 2])
    result = scores(labels, predictions, ["a", "b", "c"])
    assert result["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert result["accuracy"] == pytest.approx(4 / 6) and result["count"] == 6
    a, b = result["per_class"]["a"], result["per_class"]["b"]
    assert (a["precision"], a["recall"], a["support"]) == (1.0, pytest.approx(2 / 3), 3)
    assert (b["precision"], b["recall"], b["f1"]) == (0.5, 0.5, 0.5)


def test_scores_of_a_class_never_predicted_are_zero_not_nan():
    result = scores(np.array([0, 1]), np.array([0, 0]), ["a", "b"])
    assert result["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


def colour_model():
    """A fixed model: red photos are class 0 ("circles"), blue ones class 1 ("squares")."""
    inputs = keras.Input((32, 32, 3), name="image")
    mean_rgb = keras.layers.GlobalAveragePooling2D()(inputs)
    logits = keras.layers.Dense(2, name="logits")(mean_rgb)
    model = keras.Model(inputs, logits)
    model.get_layer("logits").set_weights(
        [
            np.array([[0.1, -0.1], [0.0, 0.0], [-0.1, 0.1]], dtype="float32"),
            np.zeros(2, "float32"),
        ]
    )
    return model


@pytest.fixture
def data(tmp_path):
    return make_separable_dataset(tmp_path / "data", per_class=20, size=32)


def test_evaluate_model_reports_each_mistake_with_its_probabilities(data):
    # A red circle filed under squares: the model calls it a circle, the label says square.
    stray = next((data / "validation" / "circles").iterdir())
    shutil.copy(stray, data / "validation" / "squares" / "stray.jpg")
    samples = scan_dataset(data).splits["validation"]

    result = evaluate_model(colour_model(), samples, ["circles", "squares"], 32, batch_size=8)
    assert result["count"] == len(samples) == np.sum(result["confusion_matrix"])
    assert result["confusion_matrix"][1][0] >= 1  # true square, predicted circle
    mistakes = {m["file"]: m for m in result["misclassified"]}
    wrong = mistakes[str(data / "validation" / "squares" / "stray.jpg")]
    assert (wrong["true"], wrong["predicted"]) == ("squares", "circles")
    assert sum(wrong["probabilities"].values()) == pytest.approx(1.0)
    assert wrong["probabilities"]["circles"] > 0.5
    assert len(result["misclassified"]) == result["count"] - np.trace(result["confusion_matrix"])


def saved_run(data, tmp_path):
    """A run trained on ``data`` as a run from before split.json: facts and model, no split."""
    run_dir = create_run(make_config(data, "cnn", 1, image_size=32, batch_size=8), tmp_path / "runs")
    write_facts(run_dir, RunFacts(classes=["circles", "squares"]))
    colour_model().save(run_dir / MODEL_FILE)
    return run_dir


def test_evaluate_run_scores_the_saved_model_on_the_test_split(data, tmp_path):
    run_dir = saved_run(data, tmp_path)
    result = evaluate_run(run_dir)
    test = split_for(read_config(run_dir)).test
    assert result["count"] == len(test) > 0 and result["split"] == "test"
    assert result["accuracy"] == 1.0
    assert json.loads((run_dir / "evaluation.json").read_text()) == result
    # The images the run chose its best epoch on are not scored again.
    config = read_config(run_dir)
    validation = make_splits(scan_dataset(data), seed=config.seed).validation
    assert not {s.path for s in validation} & {s.path for s in test}


def test_evaluate_run_refuses_a_dataset_whose_classes_changed(data, tmp_path):
    run_dir = saved_run(data, tmp_path)
    for split in ("train", "validation"):
        (data / split / "triangles").mkdir()
        shutil.copy(next((data / split / "circles").iterdir()), data / split / "triangles" / "t.jpg")
    with pytest.raises(ValueError, match="classes changed"):
        evaluate_run(run_dir)
    assert not (run_dir / "evaluation.json").exists()


def test_cli_evaluate_prints_json_or_an_error(data, tmp_path, capsys):
    from core.cli import main

    run_dir = saved_run(data, tmp_path)
    assert main(["evaluate", str(run_dir)]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == 1.0

    (run_dir / MODEL_FILE).unlink()
    assert main(["evaluate", str(run_dir)]) == 1
    assert "no saved model" in json.loads(capsys.readouterr().out)["error"]


def test_a_run_without_a_recorded_split_is_split_again(data, tmp_path):
    """Runs from before split.json: the dataset is split again by the run's seed and fractions."""
    run_dir = saved_run(data, tmp_path)
    assert not (run_dir / SPLIT_FILE).exists()
    result = evaluate_run(run_dir)
    config = read_config(run_dir)
    resplit = make_splits(
        scan_dataset(data),
        seed=config.seed,
        test_fraction=config.test_fraction,
        validation_fraction=config.validation_fraction,
    )
    assert result["count"] == len(resplit.test) > 0
    assert result["confusion_matrix"][0][0] == sum(s.class_name == "circles" for s in resplit.test)


def test_a_recorded_split_is_used_even_when_the_dataset_would_split_differently(data, tmp_path):
    run_dir = saved_run(data, tmp_path)
    splits = split_for(read_config(run_dir))
    recorded = replace(splits, test=splits.test[:1])  # one photo, which no re-split would choose
    write_split(run_dir, recorded.to_record())
    result = evaluate_run(run_dir)
    assert result["count"] == 1


def test_a_recorded_test_photo_that_is_gone_is_named(data, tmp_path):
    run_dir = saved_run(data, tmp_path)
    splits = split_for(read_config(run_dir))
    write_split(run_dir, splits.to_record())
    gone = Path(splits.test[0].path)
    gone.unlink()
    with pytest.raises(ValueError, match="no longer in") as error:
        evaluate_run(run_dir)
    assert gone.name in str(error.value)
    assert not (run_dir / "evaluation.json").exists()


def test_evaluate_run_calibrates_with_the_runs_temperature_and_keeps_its_accuracy(data, tmp_path):
    from core.data.dataset import Sample
    from core.runs.trust import RunTrust, write_trust

    run_dir = saved_run(data, tmp_path)
    # A circle recorded as a square: a mistake whose probabilities are listed.
    splits = split_for(read_config(run_dir))
    circle = next(s for s in splits.test if s.class_name == "circles")
    stray = Sample(circle.path, 1, "squares")
    write_split(run_dir, replace(splits, test=[*splits.test, stray]).to_record())
    uncalibrated = evaluate_run(run_dir)
    write_trust(run_dir, RunTrust(temperature=4.0))
    calibrated = evaluate_run(run_dir)

    assert (uncalibrated["temperature"], calibrated["temperature"]) == (1.0, 4.0)
    # The temperature never changes which class wins...
    for key in ("accuracy", "confusion_matrix", "per_class"):
        assert calibrated[key] == uncalibrated[key]
    # ...only how sure the model says it is.
    assert calibrated["ece_before"] == pytest.approx(uncalibrated["ece_before"])
    assert uncalibrated["ece_after"] == pytest.approx(uncalibrated["ece_before"])
    assert calibrated["ece_after"] != pytest.approx(calibrated["ece_before"])
    assert [m["file"] for m in calibrated["misclassified"]] == [stray.path]
    sure, humble = uncalibrated["misclassified"][0], calibrated["misclassified"][0]
    assert 0.5 < humble["probabilities"][humble["predicted"]] < sure["probabilities"][sure["predicted"]]


def test_balanced_accuracy_is_the_mean_of_the_per_class_recalls():
    # 8 a and 2 b, everything called a: 80% accuracy, but b is never found.
    result = scores(np.array([0] * 8 + [1] * 2), np.zeros(10, dtype=int), ["a", "b", "c"])
    assert result["accuracy"] == pytest.approx(0.8)
    # c has no test photos: it has no recall to count.
    assert result["balanced_accuracy"] == pytest.approx((1.0 + 0.0) / 2)


def test_evaluation_json_carries_balanced_accuracy_and_an_old_one_without_it_still_loads(data, tmp_path):
    from core.runs.store import read_evaluation

    run_dir = saved_run(data, tmp_path)
    splits = split_for(read_config(run_dir))
    circle = next(s for s in splits.test if s.class_name == "circles")
    # One circle recorded as a square: squares' recall drops, circles' stays whole.
    write_split(
        run_dir, replace(splits, test=[*splits.test, replace(circle, label=1, class_name="squares")]).to_record()
    )
    evaluate_run(run_dir)
    written = json.loads((run_dir / "evaluation.json").read_text())
    recalls = [line["recall"] for line in written["per_class"].values()]
    assert written["balanced_accuracy"] == pytest.approx(sum(recalls) / len(recalls))
    assert written["balanced_accuracy"] < 1.0
    assert read_evaluation(run_dir).balanced_accuracy == written["balanced_accuracy"]

    del written["balanced_accuracy"]  # as evaluations were written before it
    (run_dir / "evaluation.json").write_text(json.dumps(written))
    old = read_evaluation(run_dir)
    assert old.balanced_accuracy is None and old.accuracy == written["accuracy"]
