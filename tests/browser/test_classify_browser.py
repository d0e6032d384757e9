"""The Classify page in a real browser: drop a real cat photo, read the answer.

A small cnn is trained first (in this process, through core.training) on a
few real cats and dogs, so the server finds a completed run in its
PAWLAB_HOME. The photo goes through the uploader's own file input, as a drop
does, together with a text file renamed .jpg that must get its own error.
"""

from __future__ import annotations

import re
import shutil
import time

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


@pytest.fixture
def cats_and_dogs_run(cats_and_dogs, tmp_path, pawlab_home):
    """A completed cnn run (32 px, 3 epochs) trained on 24 photos per class."""
    from core.runs import create_run, make_config
    from core.training import execute_run

    data = tmp_path / "cats_and_dogs_small"
    for split in ("train", "validation"):
        for name in ("cats", "dogs"):
            (data / split / name).mkdir(parents=True)
            for photo in sorted((cats_and_dogs / split / name).glob("*.jpg"))[:24 if split == "train" else 8]:
                shutil.copy(photo, data / split / name / photo.name)
    run_dir = create_run(make_config(data, "cnn", 3, batch_size=16, image_size=32), state="running")
    assert execute_run(run_dir) == "completed", (run_dir / "status.json").read_text()
    return run_dir


def test_drop_a_cat_photo_and_see_the_answer(cats_and_dogs_run, cats_and_dogs, tmp_path,
                                            streamlit_app, app_page):
    started = time.monotonic()
    cat = sorted((cats_and_dogs / "validation" / "cats").glob("*.jpg"))[-1]
    not_a_photo = tmp_path / "shopping list.jpg"
    not_a_photo.write_text("milk, eggs, cat food")

    server = streamlit_app()
    page = app_page.page
    app_page.open(server, "classify")
    expect(page.get_by_role("combobox", name="Model")).to_have_value(
        re.compile(r"^Tutorial CNN · test accuracy \d+\.\d% · "), timeout=60_000)

    # A drop: the drag-and-drop zone's file input receives both files. The
    # uploader appears once the model is loaded.
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
        [str(cat), str(not_a_photo)], timeout=90_000)
    app_page.wait_for_app(timeout=90_000)

    answer = page.get_by_role("heading", name=re.compile(r"^(cats|dogs) — \d{1,3}\.\d%$"))
    expect(answer).to_be_visible(timeout=60_000)
    # Plotly's script loads on first use: give the chart time to draw its bars.
    chart = page.get_by_test_id("stPlotlyChart")
    expect(chart).to_have_count(1, timeout=60_000)
    chart.scroll_into_view_if_needed()
    expect(chart.locator("text.bartext")).to_have_count(2, timeout=60_000)
    bar_labels = chart.locator("text.bartext").all_text_contents()
    assert len(bar_labels) == 2 and all(label.endswith("%") for label in bar_labels), bar_labels
    percentages = sorted(float(label.rstrip("%")) for label in bar_labels)
    assert sum(percentages) == pytest.approx(100, abs=0.2)
    expect(page.get_by_text(re.compile(r"⏱️ \d+ ms"))).to_be_visible()
    expect(page.get_by_test_id("stAlertContentError")).to_contain_text(
        "shopping list.jpg is not an image file")
    expect(page.get_by_test_id("stDataFrame")).to_be_visible()  # two files: a summary table
    app_page.assert_no_errors()

    # The Grad-CAM overlay replaces the photo by a coloured version of it.
    photo = page.get_by_test_id("stImage").locator("img").first
    plain_source = photo.get_attribute("src")
    page.get_by_text("Grad-CAM heatmap").click()
    app_page.wait_for_app(timeout=90_000)
    expect(photo).not_to_have_attribute("src", plain_source, timeout=60_000)
    app_page.assert_no_errors()
    app_page.screenshot("classify", full_page=True)
    print(f"browser test took {time.monotonic() - started:.1f} s")
