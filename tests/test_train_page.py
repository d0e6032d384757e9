"""The Train page, driven through Streamlit's AppTest (no browser).

Run folders are written by hand in core.runs.store' documented format, so each
state (finished, running, queued) is shown exactly as a worker would leave
it on disk, without training anything. Starting runs goes through the real
core.runs.jobs with its dispatch step switched off (no free training slot), so a
submitted run stays queued and no TensorFlow process is spawned.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core.config import get_settings
from core.data.acquire import COMPLETE_MARKER
from core.fileio import write_json
from core.runs import jobs, tutorial
from core.runs.recipes import make_config
from core.runs.store import (
    EVALUATION_FILE,
    MODEL_FILE,
    RunFacts,
    append_metrics,
    create_run,
    list_runs,
    read_config,
    read_status,
    update_status,
    write_facts,
)

APP = Path(__file__).resolve().parent.parent / "app.py"
TIMEOUT = 60  # the first run imports pandas and Plotly


def open_train_page() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.switch_page("pages/train.py").run()
    assert not at.exception, at.exception
    return at


def chart(at: AppTest, key_prefix: str) -> dict:
    """The Plotly figure (as JSON) of the chart whose key starts with ``key_prefix``."""
    charts = [c for c in at.get("plotly_chart") if f"-{key_prefix}" in c.proto.id]
    assert charts, f"no chart with key {key_prefix}*"
    return json.loads(charts[0].proto.spec)


def runs_table(at: AppTest):
    tables = [d for d in at.dataframe if d.key and d.key.startswith("runs_table")]
    assert len(tables) == 1
    return tables[0]


def select_rows(at: AppTest, rows: list[int]) -> None:
    at.session_state[runs_table(at).key] = {"selection": {"rows": rows, "columns": [], "cells": []}}
    at.run()
    assert not at.exception, at.exception


def button(at: AppTest, label: str):
    matches = [b for b in at.button if b.label == label]
    assert matches, f"no button {label!r} in {[b.label for b in at.button]}"
    return matches[0]


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


EPOCHS = [
    {"loss": 0.69, "accuracy": 0.52, "val_loss": 0.68, "val_accuracy": 0.55},
    {"loss": 0.55, "accuracy": 0.71, "val_loss": 0.58, "val_accuracy": 0.75},
    {"loss": 0.41, "accuracy": 0.83, "val_loss": 0.49, "val_accuracy": 0.70},
]


def write_run(data_root: Path, arch="cnn", *, state: str, metrics: int, created: float | None = None, **status) -> Path:
    """A run folder as a worker leaves it: config, status, ``metrics`` epochs of metrics."""
    config = make_config(data_root, arch, 5, image_size=32)
    config.created = created or time.time()
    run_dir = create_run(config)
    write_facts(run_dir, RunFacts(classes=["circles", "squares"], mode="end_to_end"))
    started = config.created + 1
    update_status(run_dir, state=state, started=started, epochs_total=5, phase="train", mode="end_to_end", **status)
    for index, values in enumerate(EPOCHS[:metrics], start=1):
        append_metrics(
            run_dir,
            {
                "epoch": index,
                "phase": "train",
                **values,
                "seconds": 2.0,
                "images_per_second": 120.0,
                "time": started + 2 * index,
            },
        )
    return run_dir


def finish_run(run_dir: Path, data_root: Path) -> dict:
    """Mark a run completed with a test evaluation that got one squares photo wrong."""
    wrong = sorted((data_root / "validation" / "squares").glob("*.jpg"))[0]
    evaluation = {
        "accuracy": 0.75,
        "count": 4,
        "classes": ["circles", "squares"],
        "per_class": {
            "circles": {"precision": 0.67, "recall": 1.0, "f1": 0.8, "support": 2},
            "squares": {"precision": 1.0, "recall": 0.5, "f1": 0.67, "support": 2},
        },
        "confusion_matrix": [[2, 0], [1, 1]],
        "misclassified": [
            {
                "file": str(wrong),
                "true": "squares",
                "predicted": "circles",
                "probabilities": {"circles": 0.8, "squares": 0.2},
            }
        ],
    }
    write_json(run_dir / EVALUATION_FILE, evaluation)
    update_status(run_dir, state="completed", finished=time.time(), phase="evaluate")
    return evaluation


@pytest.fixture
def dataset(tiny_dataset, monkeypatch) -> Path:
    """The tiny dataset, imported (as an upload leaves it in PAWLAB_HOME/datasets): a new
    session's dataset. Opening folders elsewhere on the server stays switched off."""
    monkeypatch.delenv("PAWLAB_ALLOW_LOCAL_PATHS", raising=False)
    root = get_settings().datasets_dir / "tiny"
    shutil.copytree(tiny_dataset, root)
    (root / COMPLETE_MARKER).write_text("{}\n")
    return root.resolve()


@pytest.fixture
def no_free_slot(monkeypatch):
    """Submitted runs stay queued: the test sees what Start wrote, nothing trains.

    The job manager never finds a free slot (at least one slot is a setting's
    minimum, so its dispatch step is what is switched off).
    """
    monkeypatch.setattr(jobs, "dispatch", lambda runs_dir=None: [])
    yield
    for summary in list_runs():
        if summary.state in ("queued", "running"):
            jobs.cancel(summary.path)


def test_without_a_dataset_the_page_points_to_the_dataset_page():
    at = open_train_page()

    assert any("Choose a dataset first" in info.value for info in at.info)
    assert [link.proto.page for link in at.get("page_link")] == ["dataset"]  # its url_path
    assert not [b for b in at.button if b.label == "Start training"]  # nothing to train on
    assert any("No training runs yet" in info.value for info in at.info)


def test_a_finished_run_shows_in_the_table_with_curves_and_results(dataset):
    run_dir = write_run(dataset, state="running", metrics=3, pid=None)
    evaluation = finish_run(run_dir, dataset)
    (run_dir / MODEL_FILE).write_bytes(b"not really a model")

    at = open_train_page()

    table = runs_table(at).value
    assert list(table["Run"]) == [run_dir.name]
    assert table["Model"][0] == "Tutorial CNN"
    assert "completed" in table["Status"][0]
    assert table["Best val accuracy"][0] == pytest.approx(75.0)  # percent
    assert table["Test accuracy"][0] == pytest.approx(75.0)
    # The newest run is the one shown: its curves, training vs validation, all epochs.
    curves = chart(at, f"curves_{run_dir.name}")
    validation = [t for t in curves["data"] if t["name"] == "validation"]
    assert validation[0]["x"] == [1, 2, 3] and validation[0]["y"] == [0.55, 0.75, 0.70]
    assert validation[1]["y"] == [0.68, 0.58, 0.49]  # the loss panel
    assert metric(at, "Epoch") == "3 / 5"
    # Results: confusion matrix, per-class scores, the misclassified photo, the model file.
    confusion = chart(at, f"confusion_{run_dir.name}")
    assert confusion["data"][0]["z"] == evaluation["confusion_matrix"]
    assert confusion["data"][0]["x"] == ["circles", "squares"]
    assert metric(at, "Test accuracy") == "75.0%"
    per_class = next(d.value for d in at.dataframe if "Recall" in d.value.columns)
    assert list(per_class["Class"]) == ["circles", "squares"]
    assert list(per_class["Recall"]) == [100.0, 50.0]
    assert len(at.get("image")) == 1
    assert any("squares → **circles**" in c.value and "circles 80%" in c.value for c in at.caption)
    assert [d.label for d in at.get("download_button")] == ["Download model.keras (0.0 MB)"]
    assert any(f"tensorboard --logdir {run_dir.parent}" in code.value for code in at.code)


def test_a_running_run_shows_live_progress_after_a_reload(dataset):
    older = write_run(dataset, state="completed", metrics=3, created=time.time() - 600)
    # Alive (this process) with a fresh heartbeat: what a worker in epoch 3 writes.
    running = write_run(
        dataset, state="running", metrics=2, pid=os.getpid(), heartbeat=time.time(), epoch=3, batch=4, batches_total=10
    )

    # A new AppTest is a new browser session: nothing in session state, all from disk.
    at = open_train_page()

    assert read_status(running).state == "running"  # start-up recovery left it alone
    assert metric(at, "Epoch") == "3 / 5"
    assert metric(at, "Validation accuracy") == "75.0%"
    assert next(m for m in at.metric if m.label == "Validation accuracy").delta == "+20.0 points"
    assert any(f"{running.name}` · 32 px · 🏃 running · 120 images/s" in c.value for c in at.caption)
    assert metric(at, "Time left") == "≈ 5s"  # 2 s epochs: 60% of epoch 3, then epochs 4 and 5
    assert at.progress[0].value == 40  # batch 4 of 10, in percent
    assert "batch 4 / 10" in at.progress[0].proto.text
    curves = chart(at, f"curves_{running.name}")
    assert next(t["x"] for t in curves["data"] if t["name"] == "validation") == [1, 2]
    assert not [c for c in at.get("plotly_chart") if f"-confusion_{older.name}" in c.proto.id]

    button(at, "Cancel run").click().run()
    assert (running / "cancel").exists()  # the worker stops after its current batch


def test_cancel_is_not_lost_when_the_panel_finds_the_runs_changed(dataset, monkeypatch):
    """The click's redraw can find a run changed (it reruns the whole page before the
    button): the click still cancels (the browser journey lost one this way)."""
    from pages._train import live

    running = write_run(dataset, state="running", metrics=1, pid=os.getpid(), heartbeat=time.time(), epoch=2)
    at = open_train_page()
    real_signature, calls = live.runs_signature, []

    def changed_once(summaries):
        calls.append(1)
        # The page's own call (1) sees the runs as drawn; the panel's (2) finds them changed.
        return ("changed",) if len(calls) == 2 else real_signature(summaries)

    monkeypatch.setattr(live, "runs_signature", changed_once)
    button(at, "Cancel run").click().run()
    assert (running / "cancel").exists()
    assert not at.exception


def test_selecting_runs_focuses_one_or_overlays_several(dataset):
    first = write_run(dataset, state="completed", metrics=3, created=time.time() - 600)
    finish_run(first, dataset)
    second = write_run(dataset, "cnn_plus", state="completed", metrics=2)
    at = open_train_page()
    assert list(runs_table(at).value["Run"]) == [second.name, first.name]  # newest first

    select_rows(at, [1])
    chart(at, f"curves_{first.name}")
    chart(at, f"confusion_{first.name}")

    select_rows(at, [0, 1])
    overlay = chart(at, "runs_overlay")
    assert sorted(len(t["x"]) for t in overlay["data"]) == [2, 3]


def test_deleting_a_run_asks_first(dataset):
    run_dir = write_run(dataset, state="completed", metrics=1)
    at = open_train_page()
    select_rows(at, [0])

    assert run_dir.exists()  # selecting only offers the button
    button(at, "Delete for good").click().run()

    assert not at.exception
    assert not run_dir.exists()
    assert not [d for d in at.dataframe if d.key and d.key.startswith("runs_table")]


def test_start_queues_a_run_with_the_form_settings(dataset, no_free_slot):
    at = open_train_page()
    at.selectbox(key="train_arch").set_value("cnn_aug").run()
    at.selectbox(key="train_image_size_cnn_aug").set_value(32).run()
    # The model's own default augmentation is preselected.
    assert at.selectbox(key="train_augment_cnn_aug").value == "tutorial"
    at.number_input(key="train_epochs_cnn_aug").set_value(2)
    at.number_input(key="train_subset").set_value(5)
    button(at, "Start training").click().run()

    assert not at.exception
    [summary] = list_runs()
    config = read_config(summary.path)
    assert (config.arch, config.image_size, config.epochs, config.subset) == ("cnn_aug", 32, 2, 5)
    assert config.augment.name == "tutorial"
    assert config.data_root == str(dataset.resolve())
    assert summary.state == "queued"
    assert any(summary.id in t.value for t in at.toast)
    assert at.progress[0].value == 0 and "Queued" in at.progress[0].proto.text


def test_starting_the_same_run_twice_in_a_minute_asks_first(dataset, no_free_slot):
    """Enter in the epochs field, then Start: one run, unless the person says two."""
    at = open_train_page()
    at.selectbox(key="train_image_size_cnn").set_value(32).run()
    at.number_input(key="train_epochs_cnn").set_value(2)
    button(at, "Start training").click().run()
    [first] = list_runs()

    button(at, "Start training").click().run()  # the same settings again, seconds later
    assert not at.exception
    assert [run.id for run in list_runs()] == [first.id]  # nothing more queued...
    [warning] = at.warning
    assert f"Run `{first.id}` was queued with these same settings" in warning.value  # ...but asked
    assert at.number_input(key="train_epochs_cnn").value == 2  # and the form keeps what was typed

    button(at, "Start another identical run").click().run()
    assert len(list_runs()) == 2
    assert not at.warning and not [b for b in at.button if b.label == "Start another identical run"]
    assert read_config(list_runs()[0].path).epochs == 2

    # "Keep one" forgets the question; another setting is no twin at all.
    button(at, "Start training").click().run()
    button(at, "Keep just the one").click().run()
    assert len(list_runs()) == 2 and not at.warning
    at.number_input(key="train_epochs_cnn").set_value(3)
    button(at, "Start training").click().run()
    assert len(list_runs()) == 3 and not at.warning


def test_enter_in_a_field_does_not_start_a_run(dataset):
    at = open_train_page()
    [form] = [block for block in _blocks(at) if block.type == "form"]
    assert form.proto.form.form_id == "new_run" and form.proto.form.enter_to_submit is False


def _blocks(at: AppTest):
    """Every block of the page (containers, forms, tabs), depth first."""
    pending = [at.main]
    while pending:
        block = pending.pop()
        yield block
        pending += [child for child in getattr(block, "children", {}).values() if hasattr(child, "children")]


def test_with_a_ray_cluster_the_form_asks_what_a_run_needs_and_checks_it(dataset, no_free_slot, monkeypatch):
    at = open_train_page()
    assert "train_cpus" not in [n.key for n in at.number_input]  # no cluster: nothing to ask

    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    at.run()
    at.selectbox(key="train_image_size_cnn").set_value(32).run()
    at.number_input(key="train_cpus").set_value(2.0)
    at.text_input(key="train_ray_resources").set_value("gpu box=1")
    button(at, "Start training").click().run()
    assert "Ray resource name" in at.error[0].value and list_runs() == []  # refused on the server

    at.text_input(key="train_ray_resources").set_value("gpu_box=1")
    button(at, "Start training").click().run()
    [summary] = list_runs()
    config = read_config(summary.path)
    assert (config.cpus, config.gpus, config.ray_resources) == (2.0, 0.0, {"gpu_box": 1.0})


def test_fine_tuning_epochs_only_for_models_that_fine_tune(dataset):
    at = open_train_page()
    labels = [n.label for n in at.number_input]
    assert "Fine-tuning epochs" not in labels

    at.selectbox(key="train_arch").set_value("mobilenet_v2_finetune").run()
    assert "Fine-tuning epochs" in [n.label for n in at.number_input]


def test_reproduce_the_tutorial_queues_its_four_models_and_compares(dataset, no_free_slot):
    at = open_train_page()
    button(at, "Reproduce the tutorial").click().run()

    assert not at.exception
    runs = list_runs()
    assert sorted(s.arch for s in runs) == sorted(tutorial.TUTORIAL_ARCHS)
    for summary in runs:
        config = read_config(summary.path)
        assert (config.image_size, config.batch_size, config.epochs) == (160, 32, 20)
        assert tutorial.is_tutorial_config(config)
    assert button(at, "Reproduce the tutorial").disabled  # not twice at once
    comparison = next(
        d.value for d in at.dataframe if "Tutorial reported" in d.value.columns and "PawLab test" in d.value.columns
    )
    assert list(comparison["Tutorial reported"]) == [61.0, 66.0, 70.0, 97.0]
    # Re-run figures only where a recorded command measured them, with the command shown.
    shown = [None if value != value else round(value, 1) for value in comparison["Tutorial code, re-run"]]
    assert shown == [round(100 * m.rerun.val_accuracy, 1) if m.rerun else None for m in tutorial.TUTORIAL_MODELS]
    assert shown == [73.8, 69.9, 70.2, 98.5]
    assert any("benchmarks/results/tutorial_mobilenet_v2" in m.value for m in at.markdown)
    assert len(chart(at, "tutorial_comparison")["layout"]["annotations"]) >= 4
    assert any("never share a photo" in c.value for c in at.caption)
    # Our recipes are offered as the next step.
    button(at, "Train CNN+ (ours)").click().run()
    assert "cnn_plus" in [s.arch for s in list_runs()]


def test_a_real_model_gets_a_keras_summary_on_demand(dataset):
    run_dir = write_run(dataset, state="running", metrics=2, pid=None)
    finish_run(run_dir, dataset)
    from core.models.zoo import build_model

    build_model("cnn", 2, 32).save(run_dir / MODEL_FILE)
    at = open_train_page()
    assert not any("Total params" in code.value for code in at.code)  # TensorFlow only on demand

    button(at, "Show the Keras layer summary").click().run(timeout=TIMEOUT)

    summary = next(code.value for code in at.code if "Total params" in code.value)
    assert "conv2d" in summary.lower() and "logits" in summary


def test_parameter_counts_are_counted_aside_and_remembered(dataset, monkeypatch):
    from core.models import param_counts
    from core.models.zoo import ARCHITECTURES, count_params

    counts = param_counts.count_in_subprocess(["cnn", "cnn_plus"], 2, 32)
    assert counts == {"cnn": count_params("cnn", 2, 32), "cnn_plus": count_params("cnn_plus", 2, 32)}

    def no_child_process(*args, **kwargs):
        raise AssertionError("counted again instead of reading the remembered counts")

    with monkeypatch.context() as patch:
        patch.setattr(param_counts.subprocess, "run", no_child_process)
        assert param_counts.count_in_subprocess(["cnn"], 2, 32) == {"cnn": counts["cnn"]}
    assert param_counts.cached_counts(ARCHITECTURES, 2, 32) == counts  # only those asked for

    # The form shows the remembered count for the chosen model and size.
    at = open_train_page()
    at.selectbox(key="train_image_size_cnn").set_value(32).run()
    assert any(f"{counts['cnn']:,} parameters for 2 classes at 32 px" in c.value for c in at.caption)


@pytest.mark.parametrize("arch", ["cnn", "cnn_plus", "mobilenet_v2_finetune"])
def test_the_form_starts_from_the_models_recipe(dataset, arch):
    from core import defaults
    from core.runs.recipes import recipe_for

    at = open_train_page()
    at.selectbox(key="train_arch").set_value(arch).run()

    recipe = recipe_for(arch)
    assert at.selectbox(key=f"train_image_size_{arch}").value == recipe.image_size
    assert at.selectbox(key="train_batch_size").value == defaults.BATCH_SIZE
    assert at.number_input(key=f"train_epochs_{arch}").value == recipe.epochs
    assert at.number_input(key=f"train_patience_{arch}").value == recipe.patience
    assert at.select_slider(key=f"train_learning_rate_{arch}").value == recipe.learning_rate
    optimizer = "AdamW, weight decay 0.0005, cosine decay after a warm-up" if arch == "cnn_plus" else "Adam"
    assert at.select_slider(key=f"train_learning_rate_{arch}").label == f"Learning rate ({optimizer})"
    assert at.selectbox(key=f"train_augment_{arch}").value == recipe.augment
    if recipe.fine_tune_epochs:
        assert at.number_input(key=f"train_fine_tune_{arch}").value == recipe.fine_tune_epochs


def test_damaged_runs_are_listed_with_their_problem_and_the_page_keeps_working(dataset):
    good = write_run(dataset, state="completed", metrics=2, created=time.time() - 600)
    number = write_run(dataset, state="completed", metrics=1, created=time.time() - 300)
    null = write_run(dataset, state="completed", metrics=1)
    (number / "status.json").write_text("42")
    (null / "status.json").write_text("null")

    at = open_train_page()

    table = runs_table(at).value
    assert list(table["Run"]) == [null.name, number.name, good.name]
    assert "damaged" in table["Status"][0] and "damaged" in table["Status"][1]
    assert "completed" in table["Status"][2]
    assert "status.json" in table["Problem"][0] and "status.json" in table["Problem"][1]
    assert pd.isna(table["Problem"][2])  # the readable run has none
    chart(at, f"curves_{good.name}")  # the newest readable run is the one shown

    select_rows(at, [1])  # the damaged run itself: explained, not raised
    assert any(number.name in e.value and "status.json" in e.value for e in at.error)


@pytest.mark.parametrize("evaluation", ['{"accuracy": 0.9', '{"accuracy": 0.9}', '{"accuracy": "high", "count": 1}'])
def test_a_partial_evaluation_is_listed_as_damage_and_the_page_keeps_working(dataset, evaluation):
    """A half-written evaluation.json used to raise KeyError on the Train page."""
    good = write_run(dataset, state="completed", metrics=2, created=time.time() - 600)
    partial = write_run(dataset, state="completed", metrics=2)
    (partial / EVALUATION_FILE).write_text(evaluation)

    at = open_train_page()

    assert not at.exception, at.exception
    table = runs_table(at).value
    assert list(table["Run"]) == [partial.name, good.name]
    assert "damaged" in table["Status"][0] and EVALUATION_FILE in table["Problem"][0]
    select_rows(at, [0])  # the damaged run itself: explained, not raised
    assert not at.exception, at.exception
    assert any(partial.name in e.value and EVALUATION_FILE in e.value for e in at.error)


def test_a_failed_run_shows_its_error_and_where_the_traceback_is(dataset):
    run_dir = write_run(
        dataset, state="failed", metrics=1, error="Out of memory while training [details](http://example.com)"
    )

    at = open_train_page()

    [error] = [e.value for e in at.error]
    assert "Out of memory while training" in error
    assert "[details](http" not in error and r"\[details\]" in error  # as written, never a link
    assert any("log.txt" in c.value and str(run_dir) in c.value for c in at.caption)


def test_names_from_the_dataset_are_shown_as_written(tmp_path, monkeypatch):
    """Class and dataset names are folder names anyone can upload: never Markdown."""
    from conftest import make_separable_dataset

    monkeypatch.delenv("PAWLAB_ALLOW_LOCAL_PATHS", raising=False)
    source = make_separable_dataset(tmp_path / "odd", classes=("[link](evil.example)", ":red[alarm]"))
    root = get_settings().datasets_dir / "odd_*names*"
    shutil.copytree(source, root)
    (root / COMPLETE_MARKER).write_text("{}\n")

    at = open_train_page()

    line = next(m.value for m in at.markdown if m.value.startswith("Dataset **"))
    assert r"odd\_\*names\*" in line
    assert r"\[link\](evil.example)" in line and r"\:red\[alarm\]" in line


def two_mistakes(run_dir: Path, data_root: Path) -> tuple[Path, Path]:
    """A finished run that took a square for a circle (sure) and a circle for a square (unsure)."""
    square = sorted((data_root / "validation" / "squares").glob("*.jpg"))[0]
    circle = sorted((data_root / "validation" / "circles").glob("*.jpg"))[0]
    evaluation = {
        "accuracy": 0.5,
        "count": 4,
        "classes": ["circles", "squares"],
        "per_class": {
            name: {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2} for name in ("circles", "squares")
        },
        "confusion_matrix": [[1, 1], [1, 1]],
        "misclassified": [
            {
                "file": str(circle),
                "true": "circles",
                "predicted": "squares",
                "probabilities": {"circles": 0.4, "squares": 0.6},
            },
            {
                "file": str(square),
                "true": "squares",
                "predicted": "circles",
                "probabilities": {"circles": 0.95, "squares": 0.05},
            },
        ],
    }
    write_json(run_dir / EVALUATION_FILE, evaluation)
    update_status(run_dir, state="completed", finished=time.time(), phase="evaluate")
    return square, circle


def test_mistakes_by_confusion_cell_and_top_losses_can_be_relabelled(dataset):
    from core.data.corrections import load_corrections

    _square, circle = two_mistakes(write_run(dataset, state="running", metrics=3, pid=None), dataset)
    at = open_train_page()

    # Top losses: every mistake, the most confidently wrong first.
    captions = [c.value for c in at.caption if "→" in c.value]
    assert captions == [
        "squares → **circles**  \ncircles 95% · squares 5%",
        "circles → **squares**  \nsquares 60% · circles 40%",
    ]
    # One cell of the confusion matrix: true circles, predicted squares.
    run_id = list_runs()[0].id
    at.selectbox(key=f"mistakes_true_{run_id}").set_value("circles")
    at.selectbox(key=f"mistakes_predicted_{run_id}").set_value("squares").run()
    assert [c.value for c in at.caption if "→" in c.value] == [captions[1]]
    assert len(at.image) == 1

    button(at, "Move to squares").click().run()
    assert not at.exception
    relative = circle.relative_to(dataset).as_posix()
    assert load_corrections(dataset).mapping == {relative: "squares"}
    assert "1 correction: 1 relabelled, 0 excluded" in "\n".join(m.value for m in at.markdown)
    at.selectbox(key=f"mistakes_predicted_{run_id}").set_value("circles").run()
    assert any("diagonal" in i.value for i in at.info)


def test_a_runs_config_shows_the_corrections_it_trains_with(dataset):
    from core.data.corrections import add_correction

    add_correction(dataset, "train/circles/circles.train.0.jpg", "squares")
    add_correction(dataset, "train/circles/circles.train.1.jpg", None)
    run_dir = write_run(dataset, state="running", metrics=3, pid=None)
    finish_run(run_dir, dataset)
    at = open_train_page()

    [config] = [c.value for c in at.code if c.value.startswith("Model: ")]
    assert "Corrections: 1 relabelled, 1 excluded" in config.splitlines()


def read_only(*args, **kwargs):
    raise OSError(errno.EROFS, "Read-only file system", str(get_settings().home))


def test_a_read_only_home_is_one_sentence_not_a_traceback(dataset, monkeypatch):
    run_dir = write_run(dataset, state="completed", metrics=1)
    monkeypatch.setattr(jobs, "submit", read_only)
    monkeypatch.setattr("core.runs.store.delete_run", read_only)
    at = open_train_page()

    button(at, "Start training").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        f"Could not start the run: the folder PawLab writes to is read-only (`{get_settings().home}`)."
    ]

    select_rows(at, [0])
    button(at, "Delete for good").click().run()
    assert not at.exception
    assert any(
        e.value.startswith(f"Could not delete run {run_dir.name}: the folder PawLab writes to is read-only")
        for e in at.error
    )
    assert run_dir.exists()


# --- How far to trust a run (trust.json) -----------------------------------------------


def write_trust_json(run_dir: Path):
    """A calibration as a worker writes it, from made-up validation logits (overconfident)."""
    import numpy as np

    from core.runs.trust import calibrate, write_trust

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    right = rng.random(200) < 0.85
    predicted = np.where(right, labels, 1 - labels)
    logits = np.zeros((200, 2))
    logits[np.arange(200), predicted] = rng.uniform(2, 8, 200)  # far too sure
    trust = calibrate(logits, labels)
    write_trust(run_dir, trust)
    return trust


def test_a_calibrated_run_shows_its_reliability_diagram_threshold_and_trade_off(dataset):
    run_dir = write_run(dataset, state="running", metrics=3, pid=None)
    finish_run(run_dir, dataset)
    trust = write_trust_json(run_dir)

    at = open_train_page()

    assert metric(at, "Calibration error before") == f"{trust.ece_before:.1%}"
    assert metric(at, "Calibration error after") == f"{trust.ece_after:.1%}"
    assert metric(at, "Answers from") == f"{trust.confidence_threshold:.0%}"
    reliability = chart(at, f"reliability_{run_dir.name}")
    diagonal, before, after = reliability["data"]
    assert diagonal["x"] == [0, 1] and diagonal["y"] == [0, 1]
    assert before["x"] == [b["confidence"] for b in trust.reliability_before]
    assert before["y"] == [b["accuracy"] for b in trust.reliability_before]
    assert after["y"] == [b["accuracy"] for b in trust.reliability_after]
    curve, chosen = chart(at, f"trade_off_{run_dir.name}")["data"]
    assert sorted(curve["x"]) == sorted(p["coverage"] for p in trust.trade_off)
    assert chosen["text"] == [f"{trust.confidence_threshold:.0%}"]
    assert any(
        f"was right on {trust.cv_precision:.1%}" in c.value and "no check for photos of something else" in c.value
        for c in at.caption
    )


def test_a_run_without_trust_json_shows_no_calibration(dataset):
    run_dir = write_run(dataset, state="running", metrics=3, pid=None)
    finish_run(run_dir, dataset)

    at = open_train_page()

    assert not [m for m in at.metric if m.label.startswith("Calibration error")]
    assert not [c for c in at.get("plotly_chart") if "reliability_" in c.proto.id]


def test_the_live_panel_starts_a_run_queued_behind_a_dead_worker(dataset, monkeypatch):
    """No restart, no click: the panel's poll (jobs.tick) notices the dead worker and
    starts the queued run."""
    started = []
    monkeypatch.setattr(jobs, "_start_worker", lambda run_dir: started.append(run_dir) or os.getpid())
    at = open_train_page()  # start-up recovery has run, with nothing to do
    dead = write_run(
        dataset, state="running", metrics=1, created=time.time() - 600, pid=2**22 + 7, heartbeat=time.time() - 3600
    )
    queued = write_run(dataset, state="queued", metrics=0)

    at.run()  # the panel polls

    assert not at.exception, at.exception
    assert read_status(dead).state == "interrupted"
    assert started == [queued] and read_status(queued).state == "running"
    jobs.cancel(queued)


def test_a_runs_details_name_its_optimizer_schedule_and_flips(tmp_path):
    import pages._train.views as views

    facts = RunFacts(classes=["cats", "dogs"])
    ours = views.config_lines(make_config(tmp_path, "cnn_plus"), facts)
    assert "Learning rate: 0.003 (AdamW, weight decay 0.0005, cosine decay after a warm-up)" in ours
    assert "Answers: each photo averaged with its mirror image" in ours
    tutorial_lines = views.config_lines(make_config(tmp_path, "cnn"), facts)
    assert "Learning rate: 0.001 (Adam)" in tutorial_lines
    assert not any(line.startswith("Answers:") for line in tutorial_lines)


def test_balanced_accuracy_and_recall_per_class_show_beside_the_accuracy(dataset):
    run_dir = write_run(dataset, state="running", metrics=3, pid=None)
    evaluation = finish_run(run_dir, dataset)  # written as before balanced accuracy: not shown
    at = open_train_page()
    assert metric(at, "Test accuracy") == "75.0%"
    assert "Balanced accuracy" not in [m.label for m in at.metric]

    write_json(run_dir / EVALUATION_FILE, evaluation | {"accuracy": 0.9, "balanced_accuracy": 0.75})
    write_facts(
        run_dir,
        RunFacts(classes=["circles", "squares"], split_counts={"train": {"circles": 30, "squares": 10}}),
    )
    at = open_train_page()
    labels = [m.label for m in at.metric]
    assert labels[labels.index("Test accuracy") + 1] == "Balanced accuracy"
    assert metric(at, "Balanced accuracy") == "75.0%"
    assert any(c.value == "Recall per class: circles 100.0% · squares 50.0%" for c in at.caption)
    assert any("Class weights: inverse class frequency (squares x3)" in c.value for c in at.code)


def test_the_balance_classes_switch_goes_into_the_runs_config(dataset, no_free_slot):
    at = open_train_page()
    at.selectbox(key="train_image_size_cnn").set_value(32).run()
    assert at.toggle(key="train_balance_classes").value is True  # on by default
    at.toggle(key="train_balance_classes").set_value(False)
    button(at, "Start training").click().run()

    [summary] = list_runs()
    assert read_config(summary.path).balance_classes is False
