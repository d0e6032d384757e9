"""The Train page's Plotly figures, cached: one cached function per figure.

Building a figure takes a tenth of a second or more and the live panel
redraws every second, mostly with the same epochs: same data, same figure,
built once. Each function returns the figure as a dict (what st.plotly_chart
takes, and what st.cache_data can copy); the figures themselves are built
in pages/_train_views.py, without Streamlit.
"""

from __future__ import annotations

import streamlit as st

from pages import _train_views as views


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
