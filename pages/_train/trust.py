"""Train page: how far to trust a finished run's answers (its trust.json).

At the end of a run the worker calibrates it (core.runs.trust): a
temperature that makes its probabilities honest, measured as the expected
calibration error before and after, the confidence below which it answers
"Not sure" (chosen for a target precision, its coverage and precision
cross-validated) and the trade-off between answering more and being right
more. Runs made before calibration have no trust.json and show none of this.
"""

from __future__ import annotations

import math
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from core.runs.store import RunSummary
from core.runs.trust import TRUST_FILE, RunTrust, read_trust

BEFORE_COLOUR, AFTER_COLOUR, DIAGONAL_COLOUR = "#9AA5B1", "#E4572E", "#BBBBBB"
CHART_CONFIG = {"displayModeBar": False}


def trust_section(run: RunSummary) -> None:
    """ECE before and after, the reliability diagram, the abstain threshold and its trade-off curve."""
    if not (Path(run.path) / TRUST_FILE).is_file():
        return  # an older run: never calibrated
    trust = read_trust(run.path)
    if trust.ece_after is None:
        return
    st.subheader("How far to trust its answers", anchor=False)
    columns = st.columns(4)
    columns[0].metric(
        "Calibration error before",
        f"{trust.ece_before:.1%}",
        help="Expected calibration error on the validation photos: how far the model's "
        "confidence is from how often it is right, on average.",
    )
    columns[1].metric(
        "Calibration error after",
        f"{trust.ece_after:.1%}",
        help=f"With the fitted temperature {trust.temperature:.2f}: probabilities are softmax(logits / temperature).",
    )
    columns[2].metric(
        "Answers from",
        f"{trust.confidence_threshold:.0%}",
        help="Below this calibrated confidence, Classify answers “Not sure”.",
    )
    columns[3].metric(
        "Answered (cross-validated)",
        _percent(trust.cv_coverage),
        help="Share of validation photos it answered at that threshold, each fold's "
        "threshold chosen on the other folds.",
    )
    st.caption(threshold_sentence(trust))
    left, right = st.columns(2)
    with left:
        st.plotly_chart(reliability_figure(trust), key=f"reliability_{run.id}", config=CHART_CONFIG)
    with right:
        if trust.trade_off:
            st.plotly_chart(trade_off_figure(trust), key=f"trade_off_{run.id}", config=CHART_CONFIG)


def _percent(value: float | None, style: str = "{:.0%}") -> str:
    return "–" if value is None else style.format(value)


def threshold_sentence(trust: RunTrust) -> str:
    target = _percent(trust.target_precision)
    return (
        f"Below {trust.confidence_threshold:.0%} confidence the model answers “Not sure”: chosen so that "
        f"{target} of its answers are right. Cross-validated on the validation photos it answered "
        f"{_percent(trust.cv_coverage)} of them and was right on {_percent(trust.cv_precision, '{:.1%}')} "
        "of those. "
        + (
            "It says “None of these” to photos far from every training photo "
            f"(distance over {trust.novelty_threshold:.3f})."
            if trust.novelty_threshold is not None
            else "It has no check for photos of something else (only models with a frozen ImageNet backbone have one)."
        )
    )


def reliability_figure(trust: RunTrust) -> go.Figure:
    """Accuracy against confidence per bin, before and after calibration, with the diagonal."""
    figure = go.Figure(
        go.Scatter(
            x=[0, 1],
            y=[0, 1],
            mode="lines",
            name="perfectly calibrated",
            line=dict(color=DIAGONAL_COLOUR, dash="dash"),
            hoverinfo="skip",
        )
    )
    for name, bins, colour in (
        ("before", trust.reliability_before, BEFORE_COLOUR),
        ("after", trust.reliability_after, AFTER_COLOUR),
    ):
        figure.add_trace(
            go.Scatter(
                x=[b["confidence"] for b in bins],
                y=[b["accuracy"] for b in bins],
                mode="lines+markers",
                name=name,
                line=dict(color=colour),
                customdata=[b["count"] for b in bins],
                marker=dict(size=[6 + 2 * math.sqrt(b["count"]) for b in bins]),
                hovertemplate="confidence %{x:.1%}, right %{y:.1%} (%{customdata} photos)<extra>" + name + "</extra>",
            )
        )
    figure.update_layout(
        title=dict(text="Reliability (validation photos)", font=dict(size=14)),
        height=330,
        margin=dict(l=0, r=10, t=40, b=30),
        legend=dict(orientation="h", y=-0.2),
        xaxis=dict(title="confidence", range=[0, 1.02], tickformat=".0%"),
        yaxis=dict(title="accuracy", range=[0, 1.02], tickformat=".0%"),
    )
    return figure


def trade_off_figure(trust: RunTrust) -> go.Figure:
    """Precision against coverage for every threshold; the run's threshold marked."""
    curve = sorted(trust.trade_off, key=lambda point: point["coverage"])
    figure = go.Figure(
        go.Scatter(
            x=[p["coverage"] for p in curve],
            y=[p["precision"] for p in curve],
            mode="lines",
            name="every threshold",
            line=dict(color=BEFORE_COLOUR, shape="hv"),
            customdata=[p["threshold"] for p in curve],
            hovertemplate="answers from %{customdata:.0%}: answered %{x:.1%}, right %{y:.1%}<extra></extra>",
        )
    )
    chosen = min(trust.trade_off, key=lambda point: abs(point["threshold"] - trust.confidence_threshold))
    figure.add_trace(
        go.Scatter(
            x=[chosen["coverage"]],
            y=[chosen["precision"]],
            mode="markers+text",
            name="chosen threshold",
            marker=dict(color=AFTER_COLOUR, size=12),
            text=[f"{trust.confidence_threshold:.0%}"],
            textposition="bottom left",
            hovertemplate="the run's threshold<extra></extra>",
        )
    )
    figure.update_layout(
        title=dict(text="Answer more, or be right more", font=dict(size=14)),
        height=330,
        margin=dict(l=0, r=10, t=40, b=30),
        legend=dict(orientation="h", y=-0.2),
        xaxis=dict(title="share of photos answered", range=[0, 1.02], tickformat=".0%"),
        yaxis=dict(
            title="right among them", tickformat=".0%", range=[min(0.5, *(p["precision"] for p in curve)) - 0.02, 1.02]
        ),
    )
    return figure
