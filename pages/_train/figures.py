"""The Train page's Plotly figures, cached: one cached function per figure.

Building a figure takes a tenth of a second or more and the live panel
redraws every second, mostly with the same epochs: same data, same figure,
built once. Each function returns the figure as a dict (what st.plotly_chart
takes, and what st.cache_data can copy); the figures themselves are built
in pages/_train/views.py, without Streamlit.
"""

from __future__ import annotations

import html
import math

import plotly.graph_objects as go
import streamlit as st

from pages._train import views


@st.cache_data(show_spinner=False, max_entries=128)
def curves(metrics: list[dict], epochs_total: int) -> dict:
    return views.curves_figure(metrics, epochs_total).to_dict()


@st.cache_data(show_spinner=False, max_entries=32)
def overlay(runs: list[tuple[str, list[dict]]]) -> dict:
    return views.overlay_figure(runs).to_dict()


@st.cache_data(show_spinner=False, max_entries=32)
def comparison(panels: list[tuple[str, list[dict], float | None]], epochs: int) -> dict:
    return views.comparison_figure(panels, epochs).to_dict()


@st.cache_data(show_spinner=False, max_entries=32)
def confusion(classes: list[str], matrix: list[list[int]]) -> dict:
    return views.confusion_figure(classes, matrix).to_dict()


# --- the Sweep tab's figures (pages/_train/sweep.py) ---------------------------------------
# Built here, each a small function of plain data, cached like the ones above.


def _knob_dimension(label: str, values: list) -> dict:
    """One parallel-coordinates axis: numbers as they are (a learning rate on a log scale),
    names (augmentations) as evenly spaced ticks."""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        if label == "learning rate" and all(v > 0 for v in values):
            low, high = math.floor(math.log10(min(values))), math.ceil(math.log10(max(values)))
            ticks = list(range(low, max(high, low + 1) + 1))
            return dict(
                label=label,
                values=[math.log10(v) for v in values],
                tickvals=ticks,
                ticktext=[f"1e{t}" for t in ticks],
                range=[ticks[0], ticks[-1]],
            )
        whole = all(float(v).is_integer() for v in values)
        return dict(label=label, values=values, tickformat="d" if whole else ".2~f")
    names = sorted({str(v) for v in values})
    return dict(
        label=label,
        values=[names.index(str(v)) for v in values],
        tickvals=list(range(len(names))),
        ticktext=[html.escape(n) for n in names],
    )


def _sweep_parallel_figure(knobs: list[str], rows: list[tuple[dict, float]]) -> go.Figure:
    """One axis per knob plus best validation accuracy; one line per trial, coloured by accuracy.

    ``rows``: (knob values, best validation accuracy) of each trial that reached an epoch.
    """
    accuracies = [accuracy for _, accuracy in rows]
    dimensions = [_knob_dimension(knob.replace("_", " "), [values.get(knob) for values, _ in rows]) for knob in knobs]
    dimensions.append(dict(label="best val accuracy", values=accuracies, tickformat=".0%"))
    figure = go.Figure(
        go.Parcoords(
            line=dict(
                color=accuracies, colorscale="Viridis", showscale=True, colorbar=dict(tickformat=".0%", thickness=12)
            ),
            dimensions=dimensions,
            labelangle=0,
            labelside="top",
            labelfont=dict(size=13),
            tickfont=dict(size=11),
            rangefont=dict(size=10, color="grey"),
        )
    )
    figure.update_layout(height=380, margin=dict(l=50, r=40, t=60, b=30))
    return figure


@st.cache_data(show_spinner=False, max_entries=32)
def sweep_curves(trials: list[tuple[str, list[dict]]]) -> dict:
    return views.validation_figure(trials, height=320, waiting="Waiting for the first epoch of a trial…").to_dict()


@st.cache_data(show_spinner=False, max_entries=32)
def sweep_parallel(knobs: list[str], rows: list[tuple[dict, float]]) -> dict:
    return _sweep_parallel_figure(knobs, rows).to_dict()
