"""The Train page in a real browser: start a small run and watch it train.

A tiny generated dataset is remembered as the current dataset in the
server's PAWLAB_HOME. The person picks the tutorial CNN at 32 px, 3 epochs,
presses Start, and the live panel follows the worker process: the progress
bar's text moves, the accuracy chart gains points, and when the run
completes the results appear with the confusion matrix.
"""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from tests.conftest import make_separable_dataset

pytestmark = pytest.mark.browser

EPOCHS = 3

# One consistent look at the live panel (it redraws every second): its text,
# the progress bar's text, and how many epochs its chart plots (-1: no chart).
PANEL_SNAPSHOT_JS = """(panel) => {
    const bar = panel.querySelector('[data-testid="stProgress"]');
    const plot = panel.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot');
    const epochs = plot && plot.data ? Math.max(0, ...plot.data.map(t => (t.x || []).length)) : -1;
    return {text: panel.innerText, progress: bar ? bar.innerText : null, epochs: epochs};
}"""


def choose(page, label: str, option: str) -> None:
    """Pick ``option`` in the selectbox labelled ``label``."""
    page.get_by_role("combobox", name=label).click()
    page.get_by_role("option", name=option, exact=True).click()


def test_train_a_small_cnn_and_watch_it_learn(tmp_path, pawlab_home, streamlit_app, app_page):
    started = time.monotonic()
    from core.workspace import remember_dataset

    remember_dataset(make_separable_dataset(tmp_path / "shapes", per_class=40, size=48))
    server = streamlit_app()
    page = app_page.page
    app_page.open(server, "train")
    expect(page.get_by_text("No training runs yet")).to_be_visible()
    app_page.assert_no_errors()
    print(f"page open at {time.monotonic() - started:.1f} s")

    # The form: the tutorial CNN (first model), 32 px photos, 3 epochs, batches of 8.
    expect(page.get_by_role("combobox", name="Model")).to_have_value("Tutorial CNN", timeout=30_000)
    choose(page, "Image size", "32 × 32 px")
    app_page.wait_for_app()
    page.get_by_label("Epochs").fill(str(EPOCHS))
    choose(page, "Batch size", "8")
    page.get_by_role("button", name=re.compile("Start training")).click()
    print(f"started at {time.monotonic() - started:.1f} s")

    # Watch the live panel until the run completes, noting what it showed.
    panel = page.locator(".st-key-train_live")
    progress_texts, chart_epochs_while_running = set(), []
    deadline = time.monotonic() + 75
    while time.monotonic() < deadline:
        snapshot = panel.evaluate(PANEL_SNAPSHOT_JS)
        if "✅ completed" in snapshot["text"]:
            break
        if "🏃 running" in snapshot["text"]:
            if snapshot["progress"]:
                progress_texts.add(snapshot["progress"])
            chart_epochs_while_running.append(snapshot["epochs"])
        page.wait_for_timeout(250)
    else:
        pytest.fail(f"The run did not complete in time; the panel shows:\n{panel.inner_text()}\n"
                    f"server log:\n{server.log()}")
    print(f"completed at {time.monotonic() - started:.1f} s; progress seen: {sorted(progress_texts)}; "
          f"chart epochs seen while running: {chart_epochs_while_running}")

    # The progress bar moved on, and the chart grew from no epoch to all of them.
    assert len(progress_texts) >= 2, progress_texts
    assert 0 in chart_epochs_while_running, chart_epochs_while_running
    assert chart_epochs_while_running == sorted(chart_epochs_while_running)  # it only ever grows
    expect(panel.get_by_test_id("stMetricValue").first).to_have_text(f"{EPOCHS} / {EPOCHS}")
    page.wait_for_function(
        f"() => ({PANEL_SNAPSHOT_JS})(document.querySelector('.st-key-train_live')).epochs === {EPOCHS}")

    # Results: the confusion matrix of the test photos, the runs table.
    results = page.locator(".st-key-train_results")
    expect(results.get_by_text("Confusion matrix")).to_be_visible(timeout=30_000)
    heatmap = results.get_by_test_id("stPlotlyChart").first
    expect(heatmap.locator("g.hm").first).to_be_attached()
    cells = [int(t) for t in heatmap.locator("text").all_text_contents() if t.strip().isdigit()]
    assert sum(cells) == 8, cells  # every test photo (4 per class) counted once
    expect(page.locator('[class*="st-key-runs_table_"]')).to_be_visible()
    app_page.wait_for_app()
    app_page.assert_no_errors()
    app_page.screenshot("train")
    print(f"browser test took {time.monotonic() - started:.1f} s")
