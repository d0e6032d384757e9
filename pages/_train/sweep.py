"""Train page: the Sweep tab. Define a search, watch its trials, train the best.

A sweep is one entry in the training queue (core.runs.jobs.submit), driven by
its own worker process with Ray Tune (core.runs.sweep_driver); its trials are
run folders naming it. Everything here is read back from disk: the trials
(core.runs.sweep.trials_of, core.runs.store) while it runs, sweep.json
(core.runs.sweep.read_sweep_result) when it ends.

    define ──Start──> SweepSpec + make_config(search=...) ──> jobs.submit
    watch (st.fragment) <── trials' status.json, metrics.jsonl
    results             <── sweep.json ──"Train the best"──> jobs.submit(best config)

Every value from the browser is checked by building the SweepSpec and the
TrainConfig on the server; what they refuse is one sentence, and nothing is
queued.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import streamlit as st

from core.data.augment import list_configs
from core.models.zoo import ARCHITECTURES, Family
from core.runs import jobs
from core.runs.recipes import MAX_CPUS, TrainConfig, make_config, recipe_for
from core.runs.search import (
    COST_SENTENCES,
    DEFAULT_TRIALS,
    MAX_EPOCHS,
    MAX_TRIALS,
    RANGE_KNOBS,
    Knob,
    KnobSpace,
    SweepSpec,
    check_knobs,
    knobs_for,
    parse_value,
)
from core.runs.store import (
    LOG_FILE,
    RunFileError,
    RunState,
    RunSummary,
    list_runs,
    read_config,
    read_metrics,
    summarize,
)
from core.runs.sweep import SweepResult, TrialResult, read_sweep_result, trials_of
from pages._common.errors import cannot
from pages._common.text import code, md
from pages._train import figures, views
from pages._train.fields import augmentation_field, image_size_field

# The watch panel re-reads the trials this often (seconds) while the sweep is queued or running.
ACTIVE_REFRESH = 2.0
SHOWN_KEY = "sweep_shown"  # the sweep the panel shows (its run id)
FLASH_KEY = "sweep_flash"  # a sentence to show once after a full-page rerun

FIXED, SAMPLED, GRID = "fixed", "sampled", "grid"
KNOB_LABELS = {
    Knob.LEARNING_RATE: "Learning rate",
    Knob.DROPOUT: "Dropout",
    Knob.HEAD_UNITS: "Head units",
    Knob.EPOCHS: "Epochs",
    Knob.AUGMENT: "Augmentation",
    Knob.IMAGE_SIZE: "Image size",
    Knob.FINE_TUNE_LAYERS: "Fine-tuned layers",
}
# What "fixed" means for knobs without a value field of their own.
FIXED_NOTES = {
    Knob.EPOCHS: "Fixed: the epochs per trial above.",
    Knob.FINE_TUNE_LAYERS: "Fixed: the recipe's top {value} layers.",
}
PERCENT = st.column_config.NumberColumn(format="%.1f%%")


def _values(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in str(text).split(",") if part.strip())


def _text(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


# --- define the search ----------------------------------------------------------------------


def sweep_tab(data_root: Path, classes: list[str]) -> None:
    """The whole tab: the search form (a fragment: editing it redraws only it), then the sweeps."""
    flash = st.session_state.pop(FLASH_KEY, None)
    if flash:
        st.success(flash)
    st.fragment(define_sweep)(data_root, classes)
    watch_sweeps()


def define_sweep(data_root: Path, classes: list[str]) -> None:
    names = list(ARCHITECTURES)
    default = next(name for name, spec in ARCHITECTURES.items() if spec.family is Family.TRANSFER)
    arch = st.selectbox(
        "Model", names, index=names.index(default), key="sweep_arch", format_func=lambda name: ARCHITECTURES[name].title
    )
    recipe = recipe_for(arch)
    left, middle, right = st.columns(3)
    trials = left.number_input(
        "Trials",
        min_value=1,
        max_value=MAX_TRIALS,
        value=DEFAULT_TRIALS,
        key="sweep_trials",
        help="How many runs in all. A grid's combinations "
        "are each tried the same number of times, so this rounds up to them.",
    )
    epochs = middle.number_input(
        "Epochs per trial",
        min_value=1,
        max_value=MAX_EPOCHS,
        value=recipe.epochs,
        key=f"sweep_epochs_{arch}",
        help="At most; bad trials are stopped early (ASHA) after the first epoch.",
    )
    cpus = right.number_input(
        "CPUs",
        min_value=1,
        max_value=MAX_CPUS,
        value=os.cpu_count() or 1,
        key="sweep_cpus",
        help="Trials run side by side, one per CPU.",
    )
    st.markdown("**What each knob does** — fixed, sampled for each trial, or a grid (every value is tried):")
    fixed, knobs = {}, {}
    errors = []
    for knob in knobs_for(arch):
        try:
            kind, value = knob_field(arch, knob, recipe)
        except ValueError as error:
            errors.append(str(error))
            continue
        if kind == FIXED:
            if value is not None:
                fixed[knob.value] = value
        else:
            knobs[knob.value] = value
    config = None
    if errors:
        st.error(md(errors[0]))
    else:
        try:
            config = sweep_config(data_root, arch, int(trials), int(epochs), cpus, fixed, knobs)
        except ValueError as error:
            st.error(md(error))
    if config is not None:
        describe(config)
    too_few_classes = len(classes) < 2
    if too_few_classes:
        st.warning("A sweep needs at least two classes (two class folders) in the dataset.")
    if (
        st.button(
            "Start sweep", type="primary", icon="▶️", key="sweep_start", disabled=config is None or too_few_classes
        )
        and config is not None
        and not too_few_classes
    ):
        start_sweep(config)


def knob_field(arch: str, knob: Knob, recipe) -> tuple[str, object]:
    """One knob's row: how it varies and its values. Returns (kind, value):
    (FIXED, the make_config value or None) or (SAMPLED/GRID, a KnobSpace).
    Raises ValueError with a sentence for a value that is not one."""
    label = KNOB_LABELS[knob]
    key = f"sweep_{arch}_{knob.value}"
    default_space = (defaults_for(arch)).get(knob)
    kinds = [FIXED, SAMPLED, GRID]
    default_kind = FIXED if default_space is None else (GRID if default_space.grid else SAMPLED)
    with st.container(key=f"{key}_row"):
        left, right = st.columns([1, 1], vertical_alignment="top")
        kind = left.segmented_control(
            label,
            kinds,
            default=default_kind,
            required=True,
            key=f"{key}_kind",
            format_func=lambda k: (
                "range" if k == SAMPLED and knob in RANGE_KNOBS else ("one of" if k == SAMPLED else k)
            ),
        )
        if kind not in kinds:  # a value from the browser that is none of them
            raise ValueError(f"Choose how the {label.lower()} varies: fixed, sampled or a grid.")
        with right:
            if kind == FIXED:
                return FIXED, fixed_field(arch, knob, recipe, key)
            if kind == SAMPLED and knob in RANGE_KNOBS:
                return SAMPLED, range_field(knob, default_space, key)
            listed = default_space.values if default_space is not None and default_space.values else ()
            text = st.text_input(
                "values, comma-separated",
                ", ".join(map(_text, listed)),
                key=f"{key}_{kind}",
                placeholder=examples(knob),
                help=f"For example {md(examples(knob))}.",
            )
            values = _values(text)
            if not values:
                raise ValueError(f"Give the {label.lower()} at least one value, or fix it.")
            return kind, KnobSpace(values=values, grid=kind == GRID)


def defaults_for(arch: str) -> dict:
    """The search the engine runs when told nothing: the form starts from it."""
    spec = SweepSpec.from_grid(1, {}, arch_family=ARCHITECTURES[arch].family)
    return {Knob(name): space for name, space in spec.knobs.items()}


def examples(knob: Knob) -> str:
    if knob == Knob.AUGMENT:
        return ", ".join(list_configs())
    return {
        Knob.LEARNING_RATE: "1e-3, 3e-4",
        Knob.DROPOUT: "0.1, 0.3",
        Knob.HEAD_UNITS: "0, 128",
        Knob.EPOCHS: "5, 10",
        Knob.IMAGE_SIZE: "96, 160",
        Knob.FINE_TUNE_LAYERS: "20, 54",
    }[knob]


def fixed_field(arch: str, knob: Knob, recipe, key: str):
    """The fixed value's field, as make_config takes it (None: the recipe's, no field)."""
    if knob in FIXED_NOTES:
        st.caption(FIXED_NOTES[knob].format(value=recipe.fine_tune_layers))
        return None
    if knob == Knob.AUGMENT:
        return augmentation_field(recipe, key=f"{key}_fixed", label_visibility="collapsed")
    if knob == Knob.IMAGE_SIZE:
        return image_size_field(recipe, key=f"{key}_fixed", label_visibility="collapsed")
    default = recipe.learning_rate if knob == Knob.LEARNING_RATE else None  # a head's: the model's own
    text = st.text_input(
        KNOB_LABELS[knob],
        "" if default is None else _text(default),
        key=f"{key}_fixed",
        label_visibility="collapsed",
        placeholder="the model's own" if default is None else None,
    )
    if not text.strip():
        return None  # the architecture's own head
    return parse_value(knob, text.strip())


def range_field(knob: Knob, default_space: KnobSpace | None, key: str) -> KnobSpace:
    low_default, high_default = (
        (default_space.low, default_space.high)
        if default_space is not None and default_space.values == ()
        else ("", "")
    )
    low_column, high_column = st.columns(2, vertical_alignment="bottom")
    low = low_column.text_input("from", _text(low_default), key=f"{key}_low")
    high = high_column.text_input("to", _text(high_default), key=f"{key}_high")
    log = False
    if knob == Knob.LEARNING_RATE:
        log = st.checkbox(
            "log scale",
            value=True,
            key=f"{key}_log",
            help="As many rates between 1e-4 and 1e-3 as between 1e-3 and 1e-2.",
        )
    low_value, high_value = parse_value(knob, low.strip()), parse_value(knob, high.strip())
    if not low_value < high_value:
        raise ValueError(f"The {KNOB_LABELS[knob].lower()} range must go from a lower to a higher value.")
    return KnobSpace(low=low_value, high=high_value, log=log)


def sweep_config(data_root: Path, arch: str, trials: int, epochs: int, cpus, fixed: dict, knobs: dict) -> TrainConfig:
    """The sweep's checked config; ValueError with a sentence for anything it refuses."""
    spec = SweepSpec(trials=trials, knobs=knobs)
    config = make_config(data_root, arch, epochs, cpus=float(cpus), search=spec, **fixed)
    check_knobs(config)  # as jobs.submit will: said before Start, not after
    return config


def describe(config: TrainConfig) -> None:
    """What the sweep will search, what a trial costs, and how many trials: before Start."""
    spec = config.search
    searched = "; ".join(
        f"{md(KNOB_LABELS[Knob(name)].lower())} {md(space.describe())}" for name, space in spec.knobs.items()
    )
    st.markdown(f"Searches {searched}.")
    st.info(COST_SENTENCES[config.sweep_cost()], icon=":material/timer:")
    total = spec.total_trials
    grid = (
        (
            f" ({spec.grid_size} grid combinations, each tried {spec.samples_per_grid_point} "
            f"time{'s' if spec.samples_per_grid_point != 1 else ''})"
        )
        if spec.grid_size > 1
        else ""
    )
    st.markdown(f"**{total} trials**{grid}, up to {config.cpus:g} at a time.")


def start_sweep(config: TrainConfig) -> None:
    try:
        run_dir = jobs.submit(config)
    except ValueError as error:
        st.error(md(error))
        return
    except OSError as error:  # a read-only or full PAWLAB_HOME, a busy queue
        st.error(cannot("start the sweep", error))
        return
    st.session_state[SHOWN_KEY] = run_dir.name
    st.session_state[FLASH_KEY] = f"Sweep {code(run_dir.name)} queued: its trials appear below as they start."
    st.rerun(scope="app")  # the runs table and the panels below show it


# --- watch and results ------------------------------------------------------------------------


def watch_sweeps() -> None:
    """The newest sweep, or the one chosen: live trials while it runs, its results when it ends."""
    sweeps = [s for s in list_runs() if s.is_sweep and not s.problem]
    if not sweeps:
        st.caption("No sweeps yet. Define one above and press **Start sweep**.")
        return
    st.divider()
    ids = [s.id for s in sweeps]  # newest first
    if st.session_state.get(SHOWN_KEY) not in ids:
        st.session_state[SHOWN_KEY] = ids[0]
    by_id = {s.id: s for s in sweeps}
    shown = st.selectbox("Sweep", ids, key=SHOWN_KEY, format_func=lambda i: f"{i} · {views.state_label(by_id[i])}")
    active = by_id[shown].state.active
    with st.container(key="sweep_panel"):
        st.fragment(sweep_panel, run_every=ACTIVE_REFRESH if active else None)(by_id[shown].path, active)


def sweep_panel(sweep_dir: str, was_active: bool) -> None:
    try:
        sweep = summarize(sweep_dir)
        search = read_config(sweep_dir).search
    except (RunFileError, OSError) as error:
        st.error(f"The sweep cannot be shown: {md(error)}")
        return
    if sweep.state.active != was_active:
        st.rerun(scope="app")  # it started polling, or stopped: the whole tab changes
    knob_names = list(search.knobs)
    st.caption(
        f"{md(views.arch_title(sweep.arch))} · {views.state_label(sweep)}"
        + (f" · driven on {md(sweep.where)}" if sweep.where else "")
    )
    result = None if sweep.state.active else read_sweep_result(sweep_dir)
    if sweep.state.active:
        live_trials(sweep, search.total_trials, knob_names)
        cancel_button(sweep)
    elif result is not None:
        results(sweep, result, knob_names, search.total_trials)
    else:
        if sweep.error:
            st.error(md(sweep.error))
        live_trials(sweep, search.total_trials, knob_names)


def trials_frame(rows: list[TrialResult], knob_names: list[str]) -> pd.DataFrame:
    """One row per trial: run, best val and test accuracy (in %), knob values, state, epochs.

    The accuracies come right after the run: in the tab's narrow column they are what
    shows without scrolling.
    """
    frame = [
        {
            "Run": row.run,
            "Best val accuracy": views.in_percent(row.best_val_accuracy),
            "Test accuracy": views.in_percent(row.test_accuracy),
            **{KNOB_LABELS[Knob(k)]: row.knobs.get(k) for k in knob_names},
            "State": views.STATE_LABELS.get(row.state, row.state),
            "Epochs": row.epochs,
        }
        for row in rows
    ]
    columns = [
        "Run",
        "Best val accuracy",
        "Test accuracy",
        *(KNOB_LABELS[Knob(k)] for k in knob_names),
        "State",
        "Epochs",
    ]
    return pd.DataFrame(frame, columns=columns)


def trials_table(rows: list[TrialResult], knob_names: list[str], key: str) -> None:
    config = {
        "Run": st.column_config.TextColumn(pinned=True),
        "Best val accuracy": st.column_config.NumberColumn(
            "Val accuracy", format="%.1f%%", help="The best epoch's validation accuracy."
        ),
        "Test accuracy": PERCENT,
        KNOB_LABELS[Knob.LEARNING_RATE]: st.column_config.NumberColumn(format="%.2e"),
        KNOB_LABELS[Knob.DROPOUT]: st.column_config.NumberColumn(format="%.2f"),
    }
    st.dataframe(trials_frame(rows, knob_names), key=key, hide_index=True, placeholder="–", column_config=config)


def live_trials(sweep: RunSummary, total: int, knob_names: list[str]) -> None:
    """The trials so far, from their folders: a table and their validation accuracy per epoch."""
    rows, curves = [], []
    for trial_dir in trials_of(sweep.path):
        try:
            row = TrialResult.from_run(trial_dir, knob_names)
        except (RunFileError, OSError):
            continue  # a trial being written, or damaged: the runs table lists its problem
        rows.append(row)
        curves.append((row.run, read_metrics(trial_dir)))
    finished = sum(not row.active for row in rows)
    if sweep.state == RunState.QUEUED:
        st.progress(0.0, text="Queued: waiting for a free training slot.")
    elif sweep.state == RunState.RUNNING:
        text = (
            f"{finished} of {total} trials finished, {len(rows) - finished} running"
            if rows
            else "Starting Ray and computing features…"
        )
        st.progress(min(1.0, finished / total), text=text)
    if not rows:
        return
    trials_table(rows, knob_names, key=f"sweep_trials_{sweep.id}")
    st.plotly_chart(figures.sweep_curves(curves), key=f"sweep_curves_{sweep.id}", config={"displayModeBar": False})


def cancel_button(sweep: RunSummary) -> None:
    if st.button("Cancel sweep", icon="⏹️", key=f"sweep_cancel_{sweep.id}"):
        try:
            state = jobs.cancel(sweep.path)
        except OSError as error:
            st.error(cannot("cancel the sweep", error))
            return
        st.toast("Cancelled." if state == RunState.CANCELLED else "Stopping the trials…")


def results(sweep: RunSummary, result: SweepResult, knob_names: list[str], total: int) -> None:
    """sweep.json: every trial, the parallel-coordinates plot, the best, train it again."""
    best = next((t for t in result.trials if t.run == result.best_run), None)
    if sweep.state == RunState.COMPLETED:
        ran = len(result.trials)
        st.success(
            f"{ran}{f' of {total}' if ran < total else ''} trials in "
            f"{views.format_duration(result.seconds)}" + (f" on Ray: {md(result.ray)}." if result.ray else ".")
        )
        if ran < total:  # a trial that failed before it had a run folder is not in sweep.json
            missing = total - ran
            st.caption(
                f"{missing} trial{'s' if missing > 1 else ''} failed before making a run folder; "
                f"the sweep's {code(LOG_FILE)} says why: {code(Path(sweep.path) / LOG_FILE)}"
            )
    else:
        st.warning(md(sweep.error or f"The sweep was {sweep.state} after {views.format_duration(result.seconds)}."))
    if best is not None:
        knobs = ", ".join(f"{md(KNOB_LABELS[Knob(k)].lower())} {md(_text(v))}" for k, v in best.knobs.items())
        st.markdown(
            f"Best: run {code(best.run)}, {views.percent(best.best_val_accuracy)} validation accuracy"
            + (f", {views.percent(best.test_accuracy)} on the test photos" if best.test_accuracy is not None else "")
            + f" ({knobs})."
        )
    # The best first: the table answers "which knobs worked".
    rows = sorted(
        result.trials,
        key=lambda row: -1 if row.best_val_accuracy is None else row.best_val_accuracy,
        reverse=True,
    )
    trials_table(rows, knob_names, key=f"sweep_results_{sweep.id}")
    reached = [(t.knobs, t.best_val_accuracy) for t in result.trials if t.best_val_accuracy is not None]
    if reached:
        st.plotly_chart(
            figures.sweep_parallel(knob_names, reached),
            key=f"sweep_parallel_{sweep.id}",
            config={"displayModeBar": False},
        )
        st.caption("One line per trial that finished an epoch; drag along an axis to pick a range.")
    if result.best_config is not None and st.button(
        "Train the best as a full run",
        icon="🏆",
        key=f"sweep_train_best_{sweep.id}",
        help="Queue a new run with the best trial's config: it shows in the runs table.",
    ):
        train_best(result)


def train_best(result: SweepResult) -> None:
    try:
        run_dir = jobs.submit(TrainConfig.from_dict(result.best_config))
    except (ValueError, TypeError) as error:  # sweep.json is a file: it may not hold what it should
        st.error(f"The best trial's config cannot be trained: {md(error)}")
        return
    except OSError as error:
        st.error(cannot("start the run", error))
        return
    st.session_state[FLASH_KEY] = f"Run {code(run_dir.name)} queued with the best trial's config."
    st.rerun(scope="app")
