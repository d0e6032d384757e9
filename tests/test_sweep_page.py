"""The Train page's Sweep tab, driven through Streamlit's AppTest (no browser, no Ray).

Sweeps and their trials are written on disk by hand, as the sweep's driver
(core.runs.sweep_driver) leaves them: the sweep's own run folder with a
``search`` in its config, trial run folders naming it in ``sweep``, their
metrics, and sweep.json when it ends. Starting a sweep or a run goes through
the real core.runs.jobs with its dispatch step switched off, so what Start
queues stays queued and no worker process is spawned.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.config import get_settings
from core.data.acquire import COMPLETE_MARKER
from core.models.zoo import ARCHITECTURES
from core.runs import jobs
from core.runs.recipes import make_config, recipe_for, with_knobs
from core.runs.search import COST_SENTENCES, Cost, KnobSpace, SweepSpec
from core.runs.store import (
    RunState,
    append_metrics,
    create_run,
    list_runs,
    read_config,
    update_status,
)
from core.runs.sweep import SweepResult, TrialResult, write_sweep_result

APP = Path(__file__).resolve().parent.parent / "app.py"
TIMEOUT = 60  # the first run imports pandas and Plotly
ARCH = "mobilenet_v2"
SEARCH = SweepSpec(
    trials=3,
    knobs={"learning_rate": KnobSpace(low=1e-4, high=1e-2, log=True), "head_units": KnobSpace(values=(0, 64, 128))},
)
# Each trial: its knobs, its validation accuracy per epoch, how it ended, its test accuracy.
TRIALS = [
    ({"learning_rate": 3e-3, "head_units": 64}, [0.70, 0.85, 0.90], RunState.COMPLETED, 0.88),
    ({"learning_rate": 2e-4, "head_units": 0}, [0.55], RunState.STOPPED, None),
    ({"learning_rate": 8e-4, "head_units": 128}, [0.60, 0.80], RunState.STOPPED, None),
]


@pytest.fixture
def dataset(tiny_dataset, monkeypatch) -> Path:
    """The tiny dataset, imported into PAWLAB_HOME/datasets: a new session's dataset."""
    monkeypatch.delenv("PAWLAB_ALLOW_LOCAL_PATHS", raising=False)
    root = get_settings().datasets_dir / "tiny"
    shutil.copytree(tiny_dataset, root)
    (root / COMPLETE_MARKER).write_text("{}\n")
    return root.resolve()


@pytest.fixture(autouse=True)
def no_free_slot(monkeypatch):
    """What Start queues stays queued, and so does a queued sweep written by hand: the job
    manager's dispatch step is switched off, so no worker (and no Ray) ever starts."""
    monkeypatch.setattr(jobs, "dispatch", lambda runs_dir=None: [])
    yield
    for summary in list_runs():
        if summary.state in ("queued", "running"):
            jobs.cancel(summary.path)


def open_train_page() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.switch_page("pages/train.py").run()
    assert not at.exception, at.exception
    return at


def run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, at.exception
    return at


def button(at: AppTest, label: str):
    matches = [b for b in at.button if b.label == label]
    assert matches, f"no button {label!r} in {[b.label for b in at.button]}"
    return matches[0]


def texts(at: AppTest) -> str:
    """Everything the page wrote in Markdown, captions, info and error boxes."""
    return "\n".join(
        e.value for kind in ("markdown", "caption", "info", "success", "warning", "error") for e in getattr(at, kind)
    )


def chart(at: AppTest, key_prefix: str) -> dict:
    charts = [c for c in at.get("plotly_chart") if f"-{key_prefix}" in c.proto.id]
    assert charts, f"no chart with key {key_prefix}*"
    return json.loads(charts[0].proto.spec)


def trials_table(at: AppTest):
    """The Sweep tab's table of trials (the runs table has a "Status" column, this one "State")."""
    tables = [d.value for d in at.dataframe if "State" in d.value.columns]
    assert len(tables) == 1, [list(d.value.columns) for d in at.dataframe]
    return tables[0]


def write_sweep(data_root: Path, *, state=RunState.RUNNING, created=None) -> Path:
    """A sweep's own queue entry, as jobs.submit writes it, in ``state``."""
    config = make_config(data_root, ARCH, 3, image_size=32, cpus=2, search=SEARCH)
    config.created = created or time.time()
    sweep_dir = create_run(config, state=RunState.QUEUED)
    if state != RunState.QUEUED:
        # Alive (this process) with a fresh heartbeat, so the queue leaves it alone.
        update_status(sweep_dir, state=state, started=config.created, heartbeat=time.time(), pid=os.getpid())
    return sweep_dir


def write_trials(sweep_dir: Path, trials=TRIALS, *, state=None) -> list[Path]:
    """The sweep's trials, as its driver leaves them: a run folder each, naming the sweep."""
    base = read_config(sweep_dir)
    folders = []
    for index, (knobs, accuracies, end, _) in enumerate(trials):
        config = with_knobs(base, knobs, sweep=sweep_dir.name)
        config.created = base.created + 1 + index
        trial_dir = create_run(config, state=RunState.QUEUED)
        update_status(
            trial_dir,
            state=state or end,
            started=config.created,
            heartbeat=time.time(),
            epochs_total=3,
            phase="train",
            pid=os.getpid(),
        )
        for epoch, accuracy in enumerate(accuracies, start=1):
            append_metrics(
                trial_dir,
                {
                    "epoch": epoch,
                    "phase": "train",
                    "accuracy": accuracy,
                    "val_accuracy": accuracy,
                    "loss": 1 - accuracy,
                    "val_loss": 1 - accuracy,
                },
            )
        folders.append(trial_dir)
    return folders


def finish_sweep(sweep_dir: Path, trial_dirs: list[Path]) -> SweepResult:
    """sweep.json as the driver writes it when the sweep ends; the first trial is the best."""
    result = SweepResult(
        trials=[
            TrialResult(
                run=path.name,
                knobs=knobs,
                state=str(end),
                epochs=len(accuracies),
                best_val_accuracy=max(accuracies),
                test_accuracy=test,
            )
            for path, (knobs, accuracies, end, test) in zip(trial_dirs, TRIALS)
        ],
        best_run=trial_dirs[0].name,
        seconds=42.0,
        cost=str(Cost.HEAD),
        ray="embedded (loopback only)",
    )
    best = read_config(trial_dirs[0])
    best.sweep, best.created = "", 0.0
    result.best_config = best.to_dict()
    write_sweep_result(sweep_dir, result)
    update_status(sweep_dir, state=RunState.COMPLETED, finished=time.time())
    return result


# --- define the search ------------------------------------------------------------------------


def test_the_tab_says_what_a_trial_costs_and_how_many_trials_before_start(dataset):
    at = open_train_page()
    assert at.selectbox(key="sweep_arch").value == ARCH  # the cheapest search: a transfer head
    at.number_input(key="sweep_trials").set_value(12)
    run(at)

    assert COST_SENTENCES[Cost.HEAD] in texts(at)
    assert "**12 trials**" in [m.value.split(",")[0] for m in at.markdown]
    assert not at.error

    # Augmentation as a knob: images go through the network every epoch.
    at.segmented_control(key=f"sweep_{ARCH}_augment_kind").set_value("grid")
    run(at)
    at.text_input(key=f"sweep_{ARCH}_augment_grid").input("none, tutorial")
    run(at)

    assert COST_SENTENCES[Cost.END_TO_END] in texts(at)
    assert COST_SENTENCES[Cost.HEAD] not in texts(at)
    # 12 trials over 2 grid values: 6 each.
    assert any(m.value.startswith("**12 trials** (2 grid combinations, each tried 6 times)") for m in at.markdown)


def test_every_model_gets_its_own_knobs_and_a_search_that_can_start(dataset):
    at = open_train_page()
    for arch, spec in ARCHITECTURES.items():
        at.selectbox(key="sweep_arch").set_value(arch)
        run(at)
        kinds = {
            c.key.removeprefix(f"sweep_{arch}_").removesuffix("_kind")
            for c in at.segmented_control
            if c.key.startswith(f"sweep_{arch}_")
        }
        head = {"dropout", "head_units"} if spec.family == "transfer" else set()
        fine_tune = {"fine_tune_layers"} if spec.fine_tune else set()
        assert kinds == {"learning_rate", "epochs", "augment", "image_size"} | head | fine_tune, arch
        assert not at.error, (arch, [e.value for e in at.error])
        assert not button(at, "Start sweep").disabled
        # From scratch, or fine-tuning the base: images through the network every epoch.
        end_to_end = not spec.frozen_base or (spec.fine_tune and recipe_for(arch).fine_tune_epochs > 0)
        assert COST_SENTENCES[Cost.END_TO_END if end_to_end else Cost.HEAD] in texts(at), arch

    at.segmented_control(key="sweep_mobilenet_v2_finetune_fine_tune_layers_kind").set_value("grid")
    run(at)
    at.text_input(key="sweep_mobilenet_v2_finetune_fine_tune_layers_grid").input("20, 54")
    run(at)
    assert not at.error
    assert "fine-tuned layers every one of 20, 54" in texts(at)


def test_a_bad_grid_value_is_one_sentence_and_queues_nothing(dataset):
    at = open_train_page()
    at.segmented_control(key=f"sweep_{ARCH}_learning_rate_kind").set_value("grid")
    run(at)
    at.text_input(key=f"sweep_{ARCH}_learning_rate_grid").input("1e-3, <b>fast</b>")
    run(at)

    [error] = at.error
    assert "is not a valid learning\\_rate" in error.value
    assert "\\<b\\>fast\\</b\\>" in error.value  # shown as typed, never as HTML or Markdown
    assert button(at, "Start sweep").disabled
    assert list_runs() == []


def grid(at: AppTest, knob: str, values: str) -> AppTest:
    at.segmented_control(key=f"sweep_{ARCH}_{knob}_kind").set_value("grid")
    run(at)
    at.text_input(key=f"sweep_{ARCH}_{knob}_grid").input(values)
    return run(at)


def test_a_grid_past_the_trial_cap_is_refused_whatever_trials_says(dataset):
    at = open_train_page()
    at.number_input(key="sweep_trials").set_value(1)
    grid(at, "head_units", ", ".join(str(n) for n in range(1, 21)))
    grid(at, "learning_rate", ", ".join(f"{n}e-4" for n in range(1, 21)))

    [error] = at.error
    assert "This search asks for 400 trials (400 grid combinations)" in error.value
    assert "a sweep runs at most 200, so list fewer grid values." in error.value
    assert button(at, "Start sweep").disabled
    assert list_runs() == []


@pytest.mark.parametrize(
    "knob, values, message",
    [
        ("epochs", "5, 1000000000", "'1000000000' is not a valid epochs: it must be a whole number from 1 to 500."),
        ("image_size", "96, 10000", "'10000' is not a valid image_size: it must be a whole number from 32 to 512."),
        ("head_units", "64, 64", "The head_units values list 64 twice: give each value once."),
        ("augment", "none, ../../etc/passwd", "'../../etc/passwd' is not a valid augment: it must be one of none"),
    ],
)
def test_a_grid_value_out_of_bounds_is_one_sentence_and_queues_nothing(dataset, knob, values, message):
    at = open_train_page()
    grid(at, knob, values)

    [error] = at.error
    assert message in error.value.replace("\\", ""), error.value  # as Markdown shows it, escapes gone
    assert button(at, "Start sweep").disabled
    assert list_runs() == []


def test_start_queues_exactly_one_sweep_entry(dataset):
    at = open_train_page()
    at.number_input(key="sweep_trials").set_value(4)
    at.number_input(key=f"sweep_epochs_{ARCH}").set_value(2)
    at.number_input(key="sweep_cpus").set_value(2)
    at.segmented_control(key=f"sweep_{ARCH}_head_units_kind").set_value("grid")
    run(at)
    at.text_input(key=f"sweep_{ARCH}_head_units_grid").input("0, 128")
    run(at)
    button(at, "Start sweep").click()
    run(at)

    [summary] = list_runs()
    assert summary.is_sweep and summary.state == RunState.QUEUED
    config = read_config(summary.path)
    assert (config.arch, config.epochs, config.cpus, config.sweep) == (ARCH, 2, 2.0, "")
    spec = config.search
    assert spec.trials == 4 and spec.total_trials == 4
    assert spec.knobs["head_units"] == KnobSpace(values=(0, 128), grid=True)
    assert spec.knobs["learning_rate"] == KnobSpace(low=1e-4, high=1e-2, log=True)
    assert config.data_root == str(dataset)
    # The page now shows that sweep, queued.
    assert at.selectbox(key="sweep_shown").value == summary.id
    assert any(summary.id in s.value for s in at.success)
    assert any("Queued" in p.proto.text for p in at.progress)


# --- watch and results -------------------------------------------------------------------------


def test_the_trials_table_lists_every_trial_of_the_sweep_and_nothing_else(dataset):
    older = write_sweep(dataset, state=RunState.COMPLETED, created=time.time() - 100)
    write_trials(older, TRIALS[:1])  # another sweep's trial
    other_run = create_run(make_config(dataset, "cnn", 2, image_size=32))  # a run of its own
    sweep_dir = write_sweep(dataset)
    trial_dirs = write_trials(sweep_dir, state=RunState.RUNNING)

    at = open_train_page()

    assert at.selectbox(key="sweep_shown").value == sweep_dir.name  # the newest sweep
    frame = trials_table(at)
    assert sorted(frame["Run"]) == sorted(path.name for path in trial_dirs)
    assert other_run.name not in set(frame["Run"]) and older.name not in set(frame["Run"])
    assert list(frame["Head units"]) == [64, 0, 128]
    assert list(frame["Best val accuracy"]) == [90.0, 55.0, 80.0]
    # Validation accuracy per epoch, one line per trial.
    lines = chart(at, f"sweep_curves_{sweep_dir.name}")["data"]
    assert sorted(line["name"] for line in lines) == sorted(path.name for path in trial_dirs)
    assert [len(line["y"]) for line in lines] == [3, 1, 2]
    assert button(at, "Cancel sweep")


def test_cancel_stops_an_active_sweep(dataset):
    sweep_dir = write_sweep(dataset, state=RunState.QUEUED)
    at = open_train_page()
    button(at, "Cancel sweep").click()
    run(at)
    [summary] = list_runs()
    assert summary.id == sweep_dir.name and summary.state == RunState.CANCELLED


def test_the_results_show_the_parallel_coordinates_and_the_best_run(dataset):
    sweep_dir = write_sweep(dataset)
    trial_dirs = write_trials(sweep_dir)
    finish_sweep(sweep_dir, trial_dirs)

    at = open_train_page()

    assert not [b for b in at.button if b.label == "Cancel sweep"]
    [parcoords] = chart(at, f"sweep_parallel_{sweep_dir.name}")["data"]
    assert parcoords["type"] == "parcoords"
    axes = {d["label"]: d["values"] for d in parcoords["dimensions"]}
    assert list(axes) == ["learning rate", "head units", "best val accuracy"]
    assert axes["head units"] == [64, 0, 128] and axes["best val accuracy"] == [0.90, 0.55, 0.80]
    page = texts(at)
    assert f"Best: run `{trial_dirs[0].name}`, 90.0% validation accuracy, 88.0% on the test photos" in page
    assert "3 trials in 42s on Ray: embedded (loopback only)." in page
    frame = trials_table(at)
    assert list(frame["Run"]) == [trial_dirs[0].name, trial_dirs[2].name, trial_dirs[1].name]  # best first


def test_trials_missing_from_the_result_are_counted(dataset):
    """A Tune trial that failed before it made a run folder is not in sweep.json: 2 of 3 ran."""
    sweep_dir = write_sweep(dataset)
    trial_dirs = write_trials(sweep_dir, TRIALS[:2])
    result = finish_sweep(sweep_dir, trial_dirs)
    assert len(result.trials) == 2 and SEARCH.total_trials == 3

    at = open_train_page()

    page = texts(at)
    assert "2 of 3 trials in 42s" in page
    assert "1 trial failed before making a run folder" in page


def test_train_the_best_queues_a_run_with_the_best_trials_knobs(dataset):
    sweep_dir = write_sweep(dataset)
    trial_dirs = write_trials(sweep_dir)
    finish_sweep(sweep_dir, trial_dirs)
    before = {s.id for s in list_runs()}

    at = open_train_page()
    button(at, "Train the best as a full run").click()
    run(at)

    [new] = [s for s in list_runs() if s.id not in before]
    config = read_config(new.path)
    assert new.state == RunState.QUEUED and not new.is_sweep
    assert (config.learning_rate, config.head_units) == (3e-3, 64)
    assert config.sweep == "" and config.search is None
    assert any(new.id in s.value for s in at.success)


def test_a_damaged_best_config_is_one_sentence(dataset):
    sweep_dir = write_sweep(dataset)
    trial_dirs = write_trials(sweep_dir)
    result = finish_sweep(sweep_dir, trial_dirs)
    result.best_config["augment"]["flip"] = "sideways"  # sweep.json is a file: it may be edited
    write_sweep_result(sweep_dir, result)
    before = {s.id for s in list_runs()}

    at = open_train_page()
    button(at, "Train the best as a full run").click()
    run(at)

    assert any("cannot be trained" in e.value for e in at.error)
    assert {s.id for s in list_runs()} == before
