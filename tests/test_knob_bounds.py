"""What each knob may be, checked in one place for every door: a search, the CLI, jobs.submit.

Hostile or mistyped values (10000 px images, a billion epochs, inf, nan, a path for an
augmentation, 8000-trial grids) are refused with one sentence naming the knob, the
value and the allowed range, before anything is queued. None of these tests start Ray.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest
from conftest import REPO, make_separable_dataset

from core import cli, defaults
from core.runs import jobs
from core.runs.recipes import RECIPES, make_config
from core.runs.search import MAX_TRIALS, Knob, KnobSpace, SweepSpec, parse_value
from core.runs.store import list_runs, run_dirs

GRID_OF_20 = [str(n) for n in range(1, 21)]


@pytest.fixture
def data(tmp_path):
    return make_separable_dataset(tmp_path / "data")


@pytest.fixture
def no_worker(monkeypatch):
    """A queued run stays queued: no worker process is started."""
    monkeypatch.setattr(jobs, "dispatch", lambda runs_dir=None: [])


# --- one value at a time ---------------------------------------------------------------


@pytest.mark.parametrize(
    "knob, text, allowed",
    [
        (Knob.IMAGE_SIZE, "10000", "a whole number from 32 to 512"),
        (Knob.HEAD_UNITS, "1e9", "a whole number from 0 to 4096"),
        (Knob.EPOCHS, "1e9", "a whole number from 1 to 500"),
        (Knob.EPOCHS, "inf", "a whole number from 1 to 500"),
        (Knob.EPOCHS, "nan", "a whole number from 1 to 500"),
        (Knob.EPOCHS, "2.5", "a whole number from 1 to 500"),
        (Knob.FINE_TUNE_LAYERS, "1000", "a whole number from 0 to 154"),
        (Knob.LEARNING_RATE, "nan", "a number above 0 and below 1"),
        (Knob.LEARNING_RATE, "-inf", "a number above 0 and below 1"),
        (Knob.DROPOUT, "inf", "a number from 0 up to (not including) 1"),
        (Knob.IMAGE_SIZE, True, "a whole number from 32 to 512"),
    ],
)
def test_a_value_out_of_range_is_one_sentence_naming_knob_value_and_range(knob, text, allowed):
    with pytest.raises(ValueError) as error:
        parse_value(knob, text)
    assert str(error.value) == f"'{text}' is not a valid {knob}: it must be {allowed}."


def test_every_default_lies_inside_the_bounds():
    for recipe in RECIPES.values():
        for knob in (Knob.EPOCHS, Knob.IMAGE_SIZE, Knob.FINE_TUNE_LAYERS):
            assert parse_value(knob, getattr(recipe, knob.value)) == getattr(recipe, knob.value)
    assert [parse_value(Knob.IMAGE_SIZE, size) for size in defaults.IMAGE_SIZES] == list(defaults.IMAGE_SIZES)


# --- a search ----------------------------------------------------------------------------


def test_a_grid_may_not_pass_the_trial_cap_whatever_trials_says():
    grid = {"head_units": GRID_OF_20, "epochs": GRID_OF_20, "fine_tune_layers": GRID_OF_20}
    with pytest.raises(ValueError) as error:
        SweepSpec.from_grid(1, grid)
    assert str(error.value) == (
        f"This search asks for 8,000 trials (8,000 grid combinations); a sweep runs at most {MAX_TRIALS}, "
        "so list fewer grid values."
    )
    assert SweepSpec.from_grid(1, {"head_units": GRID_OF_20, "epochs": GRID_OF_20[:10]}).total_trials == 200


@pytest.mark.parametrize(
    "grid, message",
    [
        ({"epochs": ["1e9"]}, "'1e9' is not a valid epochs: it must be a whole number from 1 to 500."),
        ({"epochs": ["inf"]}, "'inf' is not a valid epochs"),
        ({"epochs": ["nan"]}, "'nan' is not a valid epochs"),
        ({"image_size": ["10000"]}, "'10000' is not a valid image_size"),
        ({"head_units": ["1e9"]}, "'1e9' is not a valid head_units"),
        ({"learning_rate": ["1e-3", "0.001"]}, "The learning_rate values list 0.001 twice: give each value once."),
        ({"head_units": ["64"] * 20}, "The head_units values list 64 twice"),
    ],
)
def test_a_grid_value_out_of_range_or_repeated_is_refused(grid, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SweepSpec.from_grid(4, grid)


def test_a_range_is_bounded_too_and_only_for_knobs_that_take_any_number():
    with pytest.raises(ValueError, match="'5' is not a valid learning_rate"):
        SweepSpec(trials=4, knobs={"learning_rate": KnobSpace(low=1e-4, high=5)})
    with pytest.raises(ValueError, match="The epochs take a list of values, not a range"):
        SweepSpec(trials=4, knobs={"epochs": KnobSpace(low=1, high=1e9)})


def test_an_augmentation_that_is_not_saved_is_refused_before_the_sweep_is_queued(data, no_worker):
    spec = SweepSpec.from_grid(2, {"augment": ["none", "../../etc/passwd"]})
    config = make_config(data, "mobilenet_v2", search=spec)
    with pytest.raises(ValueError) as error:
        jobs.submit(config)
    assert str(error.value).startswith("'../../etc/passwd' is not a valid augment: it must be one of none, ")
    assert run_dirs() == []


def test_an_old_sweep_that_todays_checks_refuse_is_listed_as_damaged(data):
    """A sweep queued before the cap: its config comes back as damage, with the sentence."""
    from core.runs.store import create_run

    sweep_dir = create_run(make_config(data, "mobilenet_v2", search=SweepSpec.from_grid(1, {})))
    config = json.loads((sweep_dir / "config.json").read_text())
    config["search"]["knobs"] = {
        name: {"values": GRID_OF_20, "grid": True} for name in ("head_units", "epochs", "fine_tune_layers")
    }
    (sweep_dir / "config.json").write_text(json.dumps(config))

    [summary] = list_runs()
    assert "8,000 trials" in summary.problem


# --- jobs.submit and the CLI ---------------------------------------------------------------


@pytest.mark.parametrize(
    "change, message",
    [
        ({"image_size": 10000}, "'10000' is not a valid image_size"),
        ({"epochs": 10**9}, "'1000000000' is not a valid epochs"),
        ({"head_units": 10**9}, "'1000000000' is not a valid head_units"),
    ],
)
def test_submit_refuses_a_knob_out_of_range_and_writes_nothing(data, no_worker, change, message):
    config = replace(make_config(data, "mobilenet_v2"), **change)
    with pytest.raises(ValueError, match=message):
        jobs.submit(config)
    assert run_dirs() == []


def test_cli_train_refuses_a_huge_image_size_before_any_run(data, monkeypatch, capsys):
    import core.runs.worker

    trained = []
    monkeypatch.setattr(core.runs.worker, "execute_run", lambda run_dir, **kwargs: trained.append(run_dir))
    code = cli.main(["train", "--data", str(data), "--arch", "cnn", "--image-size", "10000", "--epochs", "1"])
    stderr = capsys.readouterr().err.strip()
    assert code == cli.EXIT_USAGE and trained == [] and run_dirs() == []
    assert stderr == (
        "python -m core train: error: '10000' is not a valid image_size: it must be a whole number from 32 to 512."
    )


def _cli_sweep(data, *arguments):
    return subprocess.run(
        [sys.executable, "-m", "core", "sweep", "--data", str(data), "--arch", "mobilenet_v2", *arguments],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "arguments, message",
    [
        (
            [
                "--trials",
                "1",
                "--grid",
                f"head_units={','.join(GRID_OF_20)}",
                "--grid",
                f"epochs={','.join(GRID_OF_20)}",
            ],
            "This search asks for 400 trials",
        ),
        (["--grid", "augment=none,../../etc/passwd"], "'../../etc/passwd' is not a valid augment"),
        (["--epochs", "1000000000"], "'1000000000' is not a valid epochs"),
        (["--grid", "epochs=inf,5"], "'inf' is not a valid epochs"),
    ],
)
def test_cli_sweep_refuses_a_search_out_of_bounds_and_queues_nothing(data, arguments, message):
    result = _cli_sweep(data, *arguments)
    assert result.returncode == cli.EXIT_USAGE, result.stderr[-2000:]
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr
    assert list_runs() == []
