"""Imbalanced classes: training weights the loss by inverse class frequency when the
largest training class has IMBALANCE_RATIO times the photos of the smallest, the run's
config records the switch, and the doctor says what training will do about it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras
import pytest
from conftest import REPO, make_separable_dataset
from streamlit.testing.v1 import AppTest

from core.config import get_settings
from core.data.acquire import COMPLETE_MARKER
from core.fileio import write_json
from core.review import runner
from core.review.doctor import DoctorReport
from core.runs.recipes import IMBALANCE_RATIO, ClassBalance, TrainConfig, make_config
from core.runs.store import create_run, read_config

# --- when training weights the loss ------------------------------------------------------


def test_weights_are_on_from_the_ratio_and_off_below_it():
    assert IMBALANCE_RATIO == 1.5
    assert ClassBalance({"cats": 149, "dogs": 100}).weights() is None
    weights = ClassBalance({"cats": 150, "dogs": 100}).weights()
    assert weights is not None
    # Inverse class frequency: each class weighs the same in all, the average photo weighs 1.
    assert weights[0] * 150 == pytest.approx(weights[1] * 100)
    assert (weights[0] * 150 + weights[1] * 100) / 250 == pytest.approx(1.0)


def test_the_switch_off_leaves_every_photo_at_one():
    balance = ClassBalance({"cats": 1000, "dogs": 100}, enabled=False)
    assert balance.imbalanced and not balance.weighted
    assert balance.weights() is None
    assert "off" in balance.describe()


def test_the_sentence_says_what_training_does():
    assert ClassBalance({"cats": 1000, "dogs": 100}).describe() == (
        "The largest training class has 10x the photos of the smallest: "
        "training weights the loss by inverse class frequency (dogs x10)."
    )
    assert "counts every photo the same" in ClassBalance({"cats": 120, "dogs": 100}).describe()


def test_the_switch_is_recorded_in_the_config(tiny_dataset, tmp_path):
    assert make_config(tiny_dataset, "cnn", 1).balance_classes is True  # on by default
    run_dir = create_run(make_config(tiny_dataset, "cnn", 1, balance_classes=False), tmp_path / "runs")
    assert json.loads((run_dir / "config.json").read_text())["balance_classes"] is False
    assert read_config(run_dir).balance_classes is False
    with pytest.raises(ValueError, match="true or false"):
        make_config(tiny_dataset, "cnn", 1, balance_classes="no")
    # A config written before the switch existed trains as the default does.
    old = make_config(tiny_dataset, "cnn", 1).to_dict()
    del old["balance_classes"]
    assert TrainConfig.from_dict(old).balance_classes is True


@pytest.fixture
def fit_calls(monkeypatch) -> list:
    """The class_weight of every model.fit training makes, passed on to the real fit."""
    calls = []
    real_fit = keras.Model.fit

    def recording_fit(self, *args, **kwargs):
        calls.append(kwargs.get("class_weight"))
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", recording_fit)
    return calls


def imbalanced_dataset(root: Path, kept: int = 4) -> Path:
    """12 circles and ``kept`` squares to train on; validation and test balanced."""
    make_separable_dataset(root, per_class=12, size=32)
    for extra in sorted((root / "train" / "squares").iterdir())[kept:]:
        extra.unlink()
    return root


def train(data: Path, *flags: str) -> Path:
    from core.cli import main

    runs = data.parent / "runs"
    command = ["train", "--data", str(data), "--arch", "cnn", "--epochs", "1", "--image-size", "32"]
    assert main([*command, "--batch-size", "8", "--runs-dir", str(runs), *flags]) == 0
    [run_dir] = runs.iterdir()
    return run_dir


def test_an_imbalanced_run_weights_the_loss_by_inverse_class_frequency(tmp_path, fit_calls, capsys):
    run_dir = train(imbalanced_dataset(tmp_path / "data"))
    assert read_config(run_dir).balance_classes is True
    # facts.json: 12 circles, 4 squares to train on; a square's loss counts three times.
    assert json.loads((run_dir / "facts.json").read_text())["split_counts"]["train"] == {"circles": 12, "squares": 4}
    [weights] = fit_calls
    assert weights == pytest.approx({0: 16 / 24, 1: 16 / 8})
    assert "inverse class frequency (squares x3)" in capsys.readouterr().err  # the run's log


def test_no_balance_classes_trains_without_weights(tmp_path, fit_calls):
    run_dir = train(imbalanced_dataset(tmp_path / "data"), "--no-balance-classes")
    assert read_config(run_dir).balance_classes is False
    assert fit_calls == [None]


def test_a_balanced_enough_run_trains_without_weights(tmp_path, fit_calls):
    train(imbalanced_dataset(tmp_path / "data", kept=9))  # 12 against 9: 1.33x
    assert fit_calls == [None]


# --- what the doctor says -------------------------------------------------------------------


def report_with(train_counts: dict[str, int]) -> DoctorReport:
    return DoctorReport(
        classes=list(train_counts),
        photos=sum(train_counts.values()) + 40,
        class_balance={"train": train_counts, "validation": dict.fromkeys(train_counts, 10), "test": {}},
    )


def test_the_doctor_says_what_training_will_do_about_uneven_classes():
    assert "(dogs x10)" in report_with({"cats": 1000, "dogs": 100}).training_balance().describe()
    assert "every photo the same" in report_with({"cats": 100, "dogs": 90}).training_balance().describe()


@pytest.fixture
def dataset(tiny_dataset, monkeypatch) -> Path:
    """The tiny dataset imported, as a new session finds it."""
    monkeypatch.delenv("PAWLAB_ALLOW_LOCAL_PATHS", raising=False)
    root = get_settings().datasets_dir / "tiny"
    shutil.copytree(tiny_dataset, root)
    (root / COMPLETE_MARKER).write_text("{}\n")
    return root.resolve()


def review_captions(root: Path, report: DoctorReport) -> str:
    runner.review_dir(root).mkdir(parents=True, exist_ok=True)
    write_json(runner.review_dir(root) / runner.REPORT_FILE, report.to_dict())
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()
    at.switch_page("pages/review.py").run()
    assert not at.exception, at.exception
    return "\n".join(caption.value for caption in at.caption)


def test_the_review_page_says_it_under_the_class_balance_chart(dataset):
    captions = review_captions(dataset, report_with({"circles": 30, "squares": 10}))
    assert "training weights the loss by inverse class frequency (squares x3)" in captions
    assert "Switch off **Balance classes** on the Train page" in captions

    captions = review_captions(dataset, report_with({"circles": 12, "squares": 12}))
    assert "training counts every photo the same" in captions
    assert "Balance classes" not in captions
