"""Train page: the runs table, which run the page is about, deleting runs.

Every run is listed, a damaged one (files that cannot be read) with its
problem, so one broken folder never hides the others or stops the page.
"""

from __future__ import annotations

import hashlib

import streamlit as st

from core.runs import store  # by module: tests replace its functions
from core.runs.store import RunState, RunSummary, read_metrics
from pages._common.errors import cannot
from pages._common.text import code, md
from pages._train import figures, views

PERCENT = st.column_config.NumberColumn(format="%.1f%%")


def runs_table_key(summaries: list[RunSummary]) -> str:
    # A new or deleted run changes the key, so a row selection never points
    # at a different run than the one that was clicked.
    digest = hashlib.sha1("\n".join(s.id for s in summaries).encode(), usedforsecurity=False).hexdigest()[:12]
    return f"runs_table_{digest}"


def selected_runs(summaries: list[RunSummary]) -> list[RunSummary]:
    """Rows selected in the runs table (its state from the last interaction)."""
    state = st.session_state.get(runs_table_key(summaries))
    rows = state["selection"]["rows"] if state else []
    return [summaries[row] for row in rows if 0 <= row < len(summaries)]


def focused_run(summaries: list[RunSummary]) -> RunSummary | None:
    """The run the live panel and the results show, derived from disk:
    the one selected in the table, else the newest running one, else the
    newest queued one, else the newest readable run."""
    selected = selected_runs(summaries)
    if len(selected) == 1:
        return selected[0]
    for state in (RunState.RUNNING, RunState.QUEUED):
        for summary in summaries:  # newest first
            if summary.state == state:
                return summary
    readable = [s for s in summaries if not s.problem]
    return readable[0] if readable else None


def runs_signature(summaries: list[RunSummary]) -> tuple:
    return tuple((s.id, s.state, s.problem) for s in summaries)


def runs_table(summaries: list[RunSummary]) -> list[RunSummary]:
    """The table of all runs; returns the selected ones."""
    event = st.dataframe(
        views.runs_frame(summaries),
        key=runs_table_key(summaries),
        on_select="rerun",
        selection_mode="multi-row",
        hide_index=True,
        placeholder="–",
        column_config={
            "Run": st.column_config.TextColumn(width="medium"),
            "Model": st.column_config.TextColumn(width="medium"),
            "Status": st.column_config.TextColumn(width="medium"),
            "Best val accuracy": PERCENT,
            "Test accuracy": PERCENT,
            "Problem": st.column_config.TextColumn(width="large"),
        },
    )
    selected = [summaries[row] for row in event.selection.rows if 0 <= row < len(summaries)]
    readable = [s for s in selected if not s.problem]
    if len(readable) >= 2:
        curves = [(f"{s.arch} · {s.id}", read_metrics(s.path)) for s in readable]
        st.plotly_chart(figures.overlay(curves), key="runs_overlay")
    elif not selected:
        st.caption(
            "Select a run to see it above and its results below; select several to compare their validation accuracy."
        )
    if selected:
        delete_dialog(selected)
    return selected


def delete_dialog(selected: list[RunSummary]) -> None:
    with st.popover(f"Delete {len(selected)} selected run{'s' if len(selected) > 1 else ''}", icon="🗑️"):
        active = [s for s in selected if s.active]
        if active:
            st.warning("Cancel queued or running runs before deleting them: " + ", ".join(code(s.id) for s in active))
            return
        st.write("This removes the runs' folders: their models, metrics and logs. It cannot be undone.")
        st.markdown(
            "\n".join(f"- {code(s.id)} ({views.arch_title(s.arch) if s.arch else 'damaged'})" for s in selected)
        )
        if st.button("Delete for good", type="primary", key="train_delete_confirm"):
            for summary in selected:
                try:
                    store.delete_run(summary.path)
                except OSError as error:
                    st.error(cannot(f"delete run {summary.id}", error))
                    return
                except ValueError as error:
                    st.error(md(error))
                    return
            st.rerun()
