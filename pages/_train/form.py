"""Train page: the form that starts a run.

Every default in the form is the chosen model's recipe (core.runs.recipes)
or a shared number (core.defaults): the page writes none of its own. Widgets
whose default depends on the model are keyed per model, so each model keeps
its own default, and what was typed for it.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import streamlit as st

from core import defaults
from core.models import param_counts
from core.models.weights import IMAGENET_SIZES, imagenet_weights_filename, keras_models_dir
from core.models.zoo import ARCHITECTURES, Family
from core.runs import jobs
from core.runs.executors import configured_executor
from core.runs.recipes import (
    IMBALANCE_RATIO,
    LEARNING_RATES,
    MAX_CPUS,
    MAX_GPUS,
    Recipe,
    TrainConfig,
    make_config,
    optimizer_name,
    parse_ray_resources,
    recipe_for,
)
from core.runs.search import MAX_EPOCHS
from core.runs.store import Executor, read_config, read_status, run_dirs
from core.runs.tutorial import REPORTED
from pages._common.errors import cannot
from pages._common.text import code, md
from pages._train.fields import augmentation_field, image_size_field

SUBSET_STEP = 10  # photos per class, for the "Training photos per class" steps
# A second Start of the same settings this soon is more likely a double press (a click
# after Enter in a field) than a wish for two runs: the form asks before queuing it.
TWIN_SECONDS = 60
TWIN_KEY = "train_twin"  # (the config waiting for an answer, the id of its twin)


# --- parameter counts, counted aside -----------------------------------------------------


@st.cache_resource(show_spinner=False)
def _param_counter() -> ThreadPoolExecutor:
    # Counting builds the models, which needs TensorFlow: a child process does
    # it (core.models.param_counts) while this thread only waits, so the page never does.
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="count-params")


@st.cache_resource(show_spinner=False, max_entries=64)
def _param_counts_future(num_classes: int, image_size: int) -> Future:
    return _param_counter().submit(param_counts.count_in_subprocess, list(ARCHITECTURES), num_classes, image_size)


def param_count(arch: str, num_classes: int, image_size: int) -> tuple[bool, int | None]:
    """(done, count): count is None while being computed, or if counting failed."""
    known = param_counts.cached_counts([arch], num_classes, image_size)
    if arch in known:
        return True, known[arch]
    future = _param_counts_future(num_classes, image_size)
    if not future.done():
        return False, None
    return True, None if future.exception() is not None else future.result()[arch]


def model_caption(arch: str, num_classes: int, image_size: int, polling: bool) -> None:
    spec = ARCHITECTURES[arch]
    counted, count = param_count(arch, num_classes, image_size)
    if polling and counted:
        st.rerun(scope="app")  # the full run sees the count is there and stops polling
    where = f"for {num_classes} classes at {image_size} px"
    if not counted:
        size = f" Counting its parameters {where}…"
    else:
        size = f" {count:,} parameters {where}." if count else ""
    reported = REPORTED.get(arch)
    note = f" The tutorial reported {reported:.0%} validation accuracy." if reported else ""
    st.caption(f"{spec.description}{size}{note}")


# --- the form ------------------------------------------------------------------------------


def new_run_form(data_root: Path, classes: list[str]) -> None:
    """Model and image size (they change the caption at once), then the form; Start submits."""
    arch = st.selectbox(
        "Model", list(ARCHITECTURES), key="train_arch", format_func=lambda name: ARCHITECTURES[name].title
    )
    image_size = image_size_field(
        recipe_for(arch),
        key=f"train_image_size_{arch}",
        help=f"Photos are resized to this square. {defaults.IMAGE_SIZES[0]} or {defaults.IMAGE_SIZES[1]} "
        f"px train in seconds, {defaults.IMAGE_SIZE} px is the tutorial's size; the model's "
        f"recipe starts at its own.",
    )
    # Polls until the background count is ready, then shows it.
    counted, _ = param_count(arch, len(classes), image_size)
    st.fragment(model_caption, run_every=None if counted else 1.0)(arch, len(classes), image_size, polling=not counted)
    weights_note(arch, image_size)
    # Enter in a number field commits the number; only the button starts a run.
    with st.form("new_run", border=False, enter_to_submit=False):
        settings = form_fields(arch, recipe_for(arch))
        too_few_classes = len(classes) < 2
        if too_few_classes:
            st.warning("Training needs at least two classes (two class folders) in the dataset.")
        start = st.form_submit_button("Start training", type="primary", icon="▶️", disabled=too_few_classes)
    if start:
        start_run(data_root, arch, image_size=int(image_size), **settings)
    ask_about_twin(arch)


def weights_note(arch: str, image_size: int) -> None:
    if ARCHITECTURES[arch].family is not Family.TRANSFER:
        return
    weights = keras_models_dir() / imagenet_weights_filename(image_size)
    if not weights.is_file():
        st.caption(
            f"ImageNet weights for {image_size} px are not on this machine yet; the run "
            f"downloads {code(weights.name)} first. Keras publishes "
            f"{', '.join(map(str, IMAGENET_SIZES))} px."
        )


def form_fields(arch: str, recipe: Recipe) -> dict:
    """The form's widgets, filled with ``recipe``; returns make_config's keyword arguments."""
    left, right = st.columns(2)
    epochs = left.number_input(
        "Epochs", min_value=1, max_value=MAX_EPOCHS, value=recipe.epochs, key=f"train_epochs_{arch}"
    )
    batch_size = right.selectbox(
        "Batch size",
        defaults.BATCH_SIZES,
        key="train_batch_size",
        index=defaults.BATCH_SIZES.index(defaults.BATCH_SIZE),
    )
    rates = tuple(sorted({*LEARNING_RATES, recipe.learning_rate}))
    learning_rate = st.select_slider(
        f"Learning rate ({optimizer_name(recipe.schedule, recipe.weight_decay)})",
        rates,
        value=recipe.learning_rate,
        format_func=lambda r: f"{r:g}",
        key=f"train_learning_rate_{arch}",
    )
    augment = augmentation_field(
        recipe,
        key=f"train_augment_{arch}",
        help="Random changes to the training photos each epoch. Preview them on the Dataset page.",
    )
    left, right = st.columns(2)
    patience = left.number_input(
        "Early stopping patience",
        min_value=0,
        max_value=MAX_EPOCHS,
        value=recipe.patience,
        key=f"train_patience_{arch}",
        help="Stop after this many epochs without a better validation accuracy (0 = never). "
        "Either way the best epoch's model is the one kept.",
    )
    subset = right.number_input(
        "Training photos per class",
        min_value=0,
        value=0,
        step=SUBSET_STEP,
        key="train_subset",
        help="0 = all. A few dozen make a quick trial run.",
    )
    balance_classes = st.toggle(
        "Balance classes",
        value=True,
        key="train_balance_classes",
        help=f"When the largest class has at least {IMBALANCE_RATIO:g}x the training photos of the smallest, "
        "weight the loss by inverse class frequency, so a small class is not outvoted.",
    )
    fine_tune_epochs = 0
    if ARCHITECTURES[arch].fine_tune:
        fine_tune_epochs = st.number_input(
            "Fine-tuning epochs",
            min_value=0,
            max_value=MAX_EPOCHS,
            value=recipe.fine_tune_epochs,
            key=f"train_fine_tune_{arch}",
            help=f"After the head is trained, the top of the ImageNet base is unfrozen and trained "
            f"with a {recipe.fine_tune_learning_rate:g} learning rate.",
        )
    return dict(
        epochs=int(epochs),
        batch_size=int(batch_size),
        learning_rate=float(learning_rate),
        augment=augment,
        patience=int(patience),
        subset=int(subset),
        balance_classes=bool(balance_classes),
        fine_tune_epochs=int(fine_tune_epochs),
        **cluster_fields(),
    )


def cluster_fields() -> dict:
    """What a run asks of a Ray cluster's node; only when RAY_ADDRESS names one (core.runs.executors)."""
    if configured_executor() != Executor.RAY:
        return {}
    with st.expander("Ray cluster: what this run needs from a node"):
        left, right = st.columns(2)
        cpus = left.number_input(
            "CPUs", min_value=0.5, max_value=float(MAX_CPUS), value=1.0, step=0.5, key="train_cpus"
        )
        gpus = right.number_input(
            "GPUs", min_value=0.0, max_value=float(MAX_GPUS), value=0.0, step=1.0, key="train_gpus"
        )
        resources = st.text_input(
            "Custom resources",
            key="train_ray_resources",
            placeholder="gpu_box=1",
            help="NAME=AMOUNT, comma-separated: the run waits for a node that has them (`ray start --resources`).",
        )
    return dict(cpus=float(cpus), gpus=float(gpus), ray_resources=resources)


def start_run(data_root: Path, arch: str, **settings) -> None:
    """Queue the form's run, unless the same run was queued moments ago: then ask first."""
    st.session_state.pop(TWIN_KEY, None)  # a new Start replaces an unanswered question
    try:
        if "ray_resources" in settings:  # typed in the browser: checked here, on the server
            settings["ray_resources"] = parse_ray_resources(settings["ray_resources"])
        config = make_config(data_root, arch, **settings)
        twin = recent_twin(config)
    except ValueError as error:
        st.error(md(error))
        return
    except OSError as error:  # a read-only or full PAWLAB_HOME
        st.error(cannot("start the run", error))
        return
    if twin is None:
        queue_run(config)
    else:
        st.session_state[TWIN_KEY] = (config, twin)


def queue_run(config: TrainConfig) -> None:
    try:
        run_dir = jobs.submit(config)
    except ValueError as error:
        st.error(md(error))
        return
    except OSError as error:  # a read-only or full PAWLAB_HOME
        st.error(cannot("start the run", error))
        return
    st.toast(f"Run {code(run_dir.name)} {read_status(run_dir).state}.", icon="🚀")


def recent_twin(config: TrainConfig) -> str | None:
    """The id of a run queued in the last TWIN_SECONDS with exactly ``config``'s settings."""
    for run_dir in reversed(run_dirs()):  # newest first
        try:
            queued = read_config(run_dir)
        except ValueError:  # a damaged run (RunFileError) is nobody's twin
            continue
        if time.time() - queued.created > TWIN_SECONDS:
            return None
        if replace(queued, created=0.0) == config:
            return run_dir.name
    return None


def ask_about_twin(arch: str) -> None:
    """The question an identical second Start left: queue the run again, or keep the one."""
    config, twin = st.session_state.get(TWIN_KEY, (None, None))
    if config is None or config.arch != arch:  # another model chosen since: another form
        st.session_state.pop(TWIN_KEY, None)
        return
    question = st.empty()
    with question.container():
        st.warning(
            f"Run {code(twin)} was queued with these same settings less than a minute ago. "
            "Start another identical run?",
            icon="⚠️",
        )
        left, right = st.columns(2)
        again = left.button("Start another identical run", key="train_twin_again")
        keep = right.button("Keep just the one", key="train_twin_keep")
    if again or keep:
        question.empty()
        del st.session_state[TWIN_KEY]
    if again:
        queue_run(config)
