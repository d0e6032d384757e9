"""What the Train page shows, as plain data: tables, Plotly figures, times.

No Streamlit here, so each piece can be read (and tested) on its own; the
page (pages/train.py) decides where things go. Everything is built from the
files a run folder holds (core.runs.store), never from TensorFlow.
"""

from __future__ import annotations

import html
import math
import statistics
import time

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.models.zoo import ARCHITECTURES, Family
from core.runs.recipes import TrainConfig
from core.runs.store import Evaluation, Phase, RunFacts, RunState, RunStatus, RunSummary

STATE_LABELS = {
    RunState.QUEUED: "⏳ queued",
    RunState.RUNNING: "🏃 running",
    RunState.COMPLETED: "✅ completed",
    RunState.FAILED: "❌ failed",
    RunState.CANCELLED: "⏹️ cancelled",
    RunState.INTERRUPTED: "⚠️ interrupted",
    RunState.STOPPED: "✂️ stopped early",
}
DAMAGED_LABEL = "🩹 damaged"  # a run whose files cannot be read (RunSummary.problem)
PHASE_LABELS = {
    Phase.FEATURES: "Computing ImageNet features (once, then cached)",
    Phase.TRAIN: "Training",
    Phase.FINE_TUNE: "Fine-tuning the top of the base",
    Phase.EVALUATE: "Calibrating and evaluating the best model on the validation and test photos",
}
TRAIN_COLOUR, VALIDATION_COLOUR = "#1f77b4", "#E4572E"


def arch_title(arch: str) -> str:
    spec = ARCHITECTURES.get(arch)
    return spec.title if spec else arch


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "–"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def in_percent(value: float | None) -> float | None:
    """0.6938 -> 69.4, for table columns formatted as "%.1f%%"."""
    return None if value is None else round(100 * value, 1)


# --- progress --------------------------------------------------------------------------


def state_label(summary: RunSummary) -> str:
    if summary.problem:
        return DAMAGED_LABEL
    return STATE_LABELS.get(summary.state, str(summary.state))


def batch_fraction(status: RunStatus) -> float:
    return min(1.0, status.batch / status.batches_total) if status.batches_total else 0.0


def eta_seconds(status: RunStatus, metrics: list[dict], now: float | None = None) -> float | None:
    """Time left, roughly: the current epoch's rest plus the remaining epochs.

    An epoch's cost is the median of the finished epochs of the current phase
    (fine-tuning epochs cost more than head-only ones), or, before the first
    one ends, extrapolated from the batches done so far. Early stopping can
    end a run sooner.
    """
    if status.state != RunState.RUNNING or status.phase not in (Phase.TRAIN, Phase.FINE_TUNE):
        return None
    if not status.epoch or not status.epochs_total:
        return None
    now = time.time() if now is None else now
    fraction = batch_fraction(status)
    same_phase = [m["seconds"] for m in metrics if m.get("phase") == status.phase and m.get("seconds")]
    if same_phase:
        per_epoch = statistics.median(same_phase)
    elif fraction >= 0.05:
        # No finished epoch of this phase yet: extrapolate from the batches done.
        epoch_start = max([m.get("time") or 0 for m in metrics] + [status.started or now])
        per_epoch = max(0.0, now - epoch_start) / fraction
    else:
        return None
    return per_epoch * (1 - fraction) + max(0, status.epochs_total - status.epoch) * per_epoch


def queue_position(run_id: str, summaries: list[RunSummary]) -> int:
    """How many queued runs start before this one (they start oldest first)."""
    queued = sorted((s for s in summaries if s.state == RunState.QUEUED), key=lambda s: (s.created, s.id))
    ids = [s.id for s in queued]
    return ids.index(run_id) if run_id in ids else 0


# --- tables ---------------------------------------------------------------------------------

RUN_COLUMNS = ["Run", "Model", "Status", "Epochs", "Size", "Best val accuracy", "Test accuracy", "Duration", "Where"]


def model_label(s: RunSummary) -> str:
    """The model column: a sweep and a sweep's trials say so first (the column is narrow;
    a trial's details name its sweep)."""
    if s.is_sweep:
        return f"Sweep · {arch_title(s.arch)}"
    return ("Trial · " if s.sweep else "") + arch_title(s.arch)


def _run_row(s: RunSummary) -> dict:
    if s.problem:  # nothing else of a damaged run can be trusted
        return {"Run": s.id, "Status": DAMAGED_LABEL, "Problem": s.problem}
    return {
        "Run": s.id,
        "Model": model_label(s),
        "Status": state_label(s),
        "Epochs": f"{s.epochs}/{s.epochs_total}",
        "Size": f"{s.image_size} px",
        "Best val accuracy": in_percent(s.best_val_accuracy),
        "Test accuracy": in_percent(s.test_accuracy),
        "Duration": format_duration(s.duration),
        "Where": s.where,
    }


def runs_frame(summaries: list[RunSummary]) -> pd.DataFrame:
    """One row per run, newest first, as the runs table shows it (accuracies in %).

    A "Problem" column appears when a run's files are damaged.
    """
    # The run id starts with its date and time: no separate "started" column.
    columns = RUN_COLUMNS + (["Problem"] if any(s.problem for s in summaries) else [])
    return pd.DataFrame([_run_row(s) for s in summaries], columns=columns)


def per_class_frame(evaluation: Evaluation) -> pd.DataFrame:
    """Precision, recall and F1 (in %) and the number of test photos, per class."""
    rows = [
        {
            "Class": name,
            "Precision": in_percent(scores.precision),
            "Recall": in_percent(scores.recall),
            "F1": in_percent(scores.f1),
            "Test photos": scores.support,
        }
        for name, scores in evaluation.per_class.items()
    ]
    return pd.DataFrame(rows, columns=["Class", "Precision", "Recall", "F1", "Test photos"])


def _epochs_line(config: TrainConfig) -> str:
    if not config.fine_tune_epochs:
        return f"Epochs: {config.epochs}"
    return (
        f"Epochs: {config.epochs} + {config.fine_tune_epochs} fine-tuning (top "
        f"{config.fine_tune_layers} base layers, learning rate {config.fine_tune_learning_rate:g})"
    )


def config_lines(config: TrainConfig, facts: RunFacts) -> list[str]:
    """The run's recipe, then what training found out, one fact per line (plain text)."""
    spec = ARCHITECTURES.get(config.arch)
    lines = [
        f"Model: {arch_title(config.arch)} ({config.arch})",
        f"  {spec.description}" if spec else "",
        f"Classes: {', '.join(facts.classes) or 'not known yet'}",
        f"Images: {config.image_size}x{config.image_size} px, batch {config.batch_size}",
        _epochs_line(config),
        f"Learning rate: {config.describe_optimizer()}",
        "Answers: each photo averaged with its mirror image" if config.test_time_flip else "",
        f"Head: dropout {config.head.dropout:g}, "
        + (f"{config.head.hidden_units} hidden units" if config.head.hidden_units else "linear")
        if spec and spec.family is Family.TRANSFER
        else "",
        f"Augmentation: {config.augment.name} ({config.augment.describe()})",
        f"Early stopping: after {config.patience} epochs without improvement"
        if config.patience
        else "Early stopping: off (the best epoch's model is kept anyway)",
        f"Training subset: {config.subset} photos per class" if config.subset else "Training subset: all photos",
        f"Split: seed {config.seed}, {config.test_fraction:.0%} test, {config.validation_fraction:.0%} validation",
    ]
    if config.sweep:
        lines.append(f"Trial of sweep {config.sweep}")
    if config.cpus != 1 or config.gpus or config.ray_resources:
        asked = [f"{config.cpus:g} CPUs"] + ([f"{config.gpus:g} GPUs"] if config.gpus else [])
        asked += [f"{amount:g} {name}" for name, amount in config.ray_resources.items()]
        lines.append("Resources: " + ", ".join(asked))
    if config.corrections:  # the dataset's corrections when the run was submitted
        excluded = sum(label is None for label in config.corrections.values())
        lines.append(f"Corrections: {len(config.corrections) - excluded} relabelled, {excluded} excluded")
    if facts.split_counts:
        counts = ", ".join(f"{split} {sum(per_class.values())}" for split, per_class in facts.split_counts.items())
        lines.append(f"Photos per split: {counts}")
    if facts.mode:
        lines.append(f"Mode: {facts.mode.replace('_', ' ')}" + (f", {facts.strategy}" if facts.strategy else ""))
    if facts.versions:
        lines.append("Versions: " + ", ".join(f"{k} {v}" for k, v in sorted(facts.versions.items())))
    return [line for line in lines if line]


# --- figures --------------------------------------------------------------------------------


def _fine_tune_start(metrics: list[dict]) -> float | None:
    for record in metrics:
        if record.get("phase") == "fine_tune":
            return record["epoch"] - 0.5
    return None


def curves_figure(metrics: list[dict], epochs_total: int = 0) -> go.Figure:
    """Accuracy and loss per epoch, training vs validation, side by side."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=("Accuracy", "Loss"), horizontal_spacing=0.1)
    epochs = [m["epoch"] for m in metrics]
    for column, metric in ((1, "accuracy"), (2, "loss")):
        for prefix, name, colour in (("", "training", TRAIN_COLOUR), ("val_", "validation", VALIDATION_COLOUR)):
            figure.add_trace(
                go.Scatter(
                    x=epochs,
                    y=[m.get(prefix + metric) for m in metrics],
                    name=name,
                    mode="lines+markers",
                    line=dict(color=colour),
                    legendgroup=name,
                    showlegend=column == 1,
                ),
                row=1,
                col=column,
            )
    fine_tune = _fine_tune_start(metrics)
    if fine_tune is not None:
        for column in (1, 2):
            figure.add_vline(x=fine_tune, line_dash="dot", line_color="grey", row=1, col=column)
        figure.add_annotation(
            x=fine_tune,
            y=1.0,
            yref="y domain",
            text="fine-tuning",
            showarrow=False,
            xanchor="left",
            font=dict(color="grey"),
            row=1,
            col=1,
        )
    figure.update_xaxes(
        title_text="epoch",
        range=[0.5, max(epochs_total, len(epochs), 1) + 0.5],
        dtick=max(1, math.ceil(max(epochs_total, len(epochs), 1) / 10)),
    )
    figure.update_yaxes(range=[0, 1.02], tickformat=".0%", row=1, col=1)
    figure.update_yaxes(rangemode="tozero", row=1, col=2)
    figure.update_layout(height=320, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.25))
    if not metrics:
        figure.add_annotation(
            text="Waiting for the first epoch…",
            showarrow=False,
            xref="paper",
            yref="paper",
            x=0.5,
            y=0.5,
            font=dict(size=16, color="grey"),
        )
    return figure


def overlay_figure(runs: list[tuple[str, list[dict]]]) -> go.Figure:
    """Validation accuracy of several runs on one chart."""
    return validation_figure(runs, height=360)


def validation_figure(runs: list[tuple[str, list[dict]]], height: int, waiting: str = "") -> go.Figure:
    """Validation accuracy per epoch, one line per run (the runs table's overlay and a sweep's trials)."""
    figure = go.Figure()
    for label, metrics in runs:
        figure.add_trace(
            go.Scatter(
                x=[m.get("epoch") for m in metrics],
                y=[m.get("val_accuracy") for m in metrics],
                name=html.escape(label),
                mode="lines+markers",
            )
        )
    most = max((len(metrics) for _, metrics in runs), default=0)
    figure.update_layout(
        height=height,
        margin=dict(l=10, r=10, t=30, b=10),
        xaxis=dict(title="epoch", dtick=1, range=[0.5, max(most, 1) + 0.5]),
        yaxis=dict(title="validation accuracy", tickformat=".0%", range=[0, 1.02]),
        legend=dict(orientation="h", y=-0.25, font=dict(size=10)),
    )
    if waiting and not any(metrics for _, metrics in runs):
        figure.add_annotation(
            text=waiting, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5, font=dict(size=14, color="grey")
        )
    return figure


def comparison_figure(panels: list[tuple[str, list[dict], float | None]], epochs: int) -> go.Figure:
    """One small panel per model: training and validation accuracy over ``epochs``,
    and the tutorial's reported validation accuracy as a dashed line."""
    figure = make_subplots(
        rows=1,
        cols=len(panels),
        subplot_titles=[title for title, _, _ in panels],
        shared_yaxes=True,
        horizontal_spacing=0.03,
    )
    for column, (_, metrics, reported) in enumerate(panels, start=1):
        finished = [m["epoch"] for m in metrics]
        for prefix, name, colour in (("", "training", TRAIN_COLOUR), ("val_", "validation", VALIDATION_COLOUR)):
            figure.add_trace(
                go.Scatter(
                    x=finished,
                    y=[m.get(prefix + "accuracy") for m in metrics],
                    name=name,
                    mode="lines",
                    line=dict(color=colour),
                    legendgroup=name,
                    showlegend=column == 1,
                ),
                row=1,
                col=column,
            )
        if reported is not None:
            figure.add_hline(
                y=reported,
                line_dash="dash",
                line_color="grey",
                row=1,
                col=column,
                annotation_text=f"tutorial {reported:.0%}",
                annotation_position="bottom right",
            )
    figure.update_yaxes(range=[0.4, 1.02], tickformat=".0%")
    figure.update_xaxes(title_text="epoch", range=[0.5, epochs + 0.5])
    figure.update_layout(height=300, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.3))
    return figure


def confusion_figure(classes: list[str], matrix: list[list[int]]) -> go.Figure:
    """Rows: true class, columns: predicted class; the diagonal is what the model got right."""
    # Plotly reads labels as HTML (<a href> included): class names are folder names.
    classes = [html.escape(name) for name in classes]
    figure = go.Figure(
        go.Heatmap(
            z=matrix,
            x=classes,
            y=classes,
            colorscale="Oranges",
            texttemplate="%{z}",
            hovertemplate="true %{y}, predicted %{x}: %{z} photos<extra></extra>",
            showscale=False,
        )
    )
    figure.update_layout(
        height=120 + 60 * len(classes),
        margin=dict(l=10, r=10, t=30, b=10),
        xaxis=dict(title="predicted", side="top", type="category"),
        yaxis=dict(title="true", autorange="reversed", type="category"),
    )
    return figure
