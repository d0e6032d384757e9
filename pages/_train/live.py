"""Train page: the live panel, the focused run as it trains.

An ``st.fragment`` that re-reads the run files every two seconds while
something trains (slowly otherwise, to notice runs started elsewhere), so
only this panel redraws. Every redraw re-renders the chart in the browser:
watching a 10-epoch run cost 0.25 cores at one second, 0.22 at two, and a
60-epoch run 0.19 at two (benchmarks/bench_watch.py, 2026-12-03). When a run starts, finishes or appears, the whole page reruns:
the runs table and the results depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from core.runs import jobs
from core.runs.store import (
    LOG_FILE,
    MODEL_FILE,
    Phase,
    RunFileError,
    RunState,
    RunStatus,
    RunSummary,
    list_runs,
    read_metrics,
    read_status,
)
from pages._common.errors import cannot
from pages._common.text import code, md
from pages._train import figures, views
from pages._train.runs import focused_run, runs_signature

# The live panel re-reads the run files this often (seconds).
ACTIVE_REFRESH, IDLE_REFRESH = 2.0, 10.0
SIGNATURE_KEY = "train_signature"  # the runs the last full page run drew
CANCEL_ANSWER_KEY = "train_cancel_answer"  # what the last Cancel click did (CancelAnswer)


def show_live_panel(summaries: list[RunSummary]) -> None:
    """Draw the panel; ``summaries`` are the runs the rest of the page shows."""
    st.session_state[SIGNATURE_KEY] = runs_signature(summaries)
    active = any(s.active for s in summaries)
    with st.container(key="train_live"):
        st.fragment(live_panel, run_every=ACTIVE_REFRESH if active else IDLE_REFRESH)()


def live_panel() -> None:
    keep_the_queue_moving()
    summaries = list_runs()
    if runs_signature(summaries) != st.session_state.get(SIGNATURE_KEY):
        # A run started, finished or appeared: the table and results need the whole page.
        st.rerun(scope="app")
    run = focused_run(summaries)
    if run is None:
        st.info("No training runs yet. Choose a model and press **Start training**.")
        return
    try:
        if run.problem:
            raise RunFileError(run.problem)
        status = read_status(run.path)
    except (RunFileError, OSError) as error:
        st.error(f"Run {code(run.id)} cannot be shown: {md(error)}")
        return
    metrics = read_metrics(run.path)
    _heading(run, status, metrics)
    _state_message(run, status, metrics, summaries)
    epochs_total = status.epochs_total or run.epochs_total
    st.plotly_chart(figures.curves(metrics, epochs_total), key=f"curves_{run.id}", config={"displayModeBar": False})
    if status.state.active:
        st.button("Cancel run", icon="⏹️", key=f"cancel_{run.id}", on_click=cancel_run, args=(run.path,))
    answer = st.session_state.pop(CANCEL_ANSWER_KEY, None)
    if answer is not None:
        (st.error if answer.failed else st.toast)(answer.text)


@dataclass(frozen=True)
class CancelAnswer:
    text: str
    failed: bool = False


def cancel_run(run_path: str) -> None:
    """The Cancel button's callback. It runs before the panel redraws: a redraw that
    finds the runs changed reruns the whole page before reaching the button, and a
    click read from the button's value there was lost (the run went on to the end)."""
    try:
        new_state = jobs.cancel(run_path)
    except OSError as error:
        st.session_state[CANCEL_ANSWER_KEY] = CancelAnswer(cannot("cancel the run", error), failed=True)
        return
    text = "Cancelled." if new_state == RunState.CANCELLED else "Stopping after the current batch…"
    st.session_state[CANCEL_ANSWER_KEY] = CancelAnswer(text)


def keep_the_queue_moving() -> None:
    """Every poll: a run whose worker died is marked interrupted and the queue behind it
    starts (core.runs.jobs.tick, cheap when nothing changed), so a queue never stalls."""
    try:
        jobs.tick()
    except OSError as error:  # LockTimeout, RunsFolderError: say it, poll again next time
        st.error(cannot("move the training queue on", error))


def _heading(run: RunSummary, status: RunStatus, metrics: list[dict]) -> None:
    """Model, run, size, state and speed; then epoch, validation accuracy and time left."""
    latest = metrics[-1] if metrics else {}
    speed = latest.get("images_per_second")
    st.subheader(views.arch_title(run.arch))
    st.caption(
        f"Run {code(run.id)} · {run.image_size} px · {views.STATE_LABELS[status.state]}"
        + (f" · {speed:,.0f} images/s" if speed else "")
    )
    columns = st.columns(3)
    columns[0].metric("Epoch", f"{status.epoch or len(metrics)} / {status.epochs_total or run.epochs_total}")
    last_two = [m.get("val_accuracy") for m in metrics[-2:]]
    change = last_two[1] - last_two[0] if len(last_two) == 2 and None not in last_two else None
    columns[1].metric(
        "Validation accuracy",
        views.percent(latest.get("val_accuracy")),
        delta=f"{100 * change:+.1f} points" if change else None,
        help="After the last finished epoch; the delta is the change from the epoch before.",
    )
    eta = views.eta_seconds(status, metrics)
    columns[2].metric(
        "Time left",
        f"≈ {views.format_duration(eta)}" if eta is not None else "–",
        help="From the epochs finished so far. Early stopping can end the run sooner; "
        "fine-tuning epochs take longer than the ones before.",
    )


def _state_message(run: RunSummary, status: RunStatus, metrics: list[dict], summaries: list[RunSummary]) -> None:
    """A progress bar while queued or running, else how the run ended."""
    state = status.state
    if state == RunState.QUEUED:
        ahead = views.queue_position(run.id, summaries)
        waiting = (
            f"{ahead} queued run{'s' if ahead != 1 else ''} and any running ones" if ahead else "a free training slot"
        )
        st.progress(0.0, text=f"Queued: waiting for {waiting}.")
    elif state == RunState.RUNNING:
        st.progress(views.batch_fraction(status), text=_progress_text(status))
    elif state == RunState.COMPLETED:
        st.success(
            f"Completed in {views.format_duration(run.duration)}: best validation accuracy "
            f"{views.percent(run.best_val_accuracy)}, test accuracy {views.percent(run.test_accuracy)}."
        )
    elif state == RunState.FAILED:
        st.error(md(status.error or "The run failed."))
        st.caption(f"The full traceback is in the run's {code(LOG_FILE)}: {code(Path(run.path) / LOG_FILE)}")
    else:  # cancelled, interrupted
        kept = " The best model so far is kept." if (Path(run.path) / MODEL_FILE).exists() else ""
        st.warning(md(status.error or f"The run was {state} after {len(metrics)} epochs.") + kept)


def _progress_text(status: RunStatus) -> str:
    phase = views.PHASE_LABELS.get(status.phase, "Starting: loading TensorFlow and the photos")
    if not status.batches_total:
        return phase
    unit = "feature batch" if status.phase == Phase.FEATURES else "batch"
    return f"{phase} · {unit} {status.batch} / {status.batches_total}"
