"""A person's own photos, in a real browser: make a dataset from drops and camera
snapshots (Chromium's fake camera), train it, classify with it; import a zip with a
labels.csv; label 20 unlabelled photos from PawLab's suggestions.

Three shapes in mixed formats (tests/_own_photos.py), not cats and dogs.
Screenshots: own-photos-*.png in $PAWLAB_SCREENSHOTS.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest

from browser.conftest import CHROMIUM, CHROMIUM_ARGS, VIEWPORT, AppPage
from browser.test_journey import choose
from tests._own_photos import loose_photos

pytestmark = pytest.mark.browser
SLOW = 120_000
# Chromium's fake camera (a moving test pattern) and no permission prompt.
CAMERA_ARGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


@pytest.fixture(scope="module")
def camera_browser(chromium):
    """A second Chromium with a fake camera, from the suite's Playwright (one per process)."""
    browser = chromium.browser_type.launch(executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, *CAMERA_ARGS])
    yield browser
    browser.close()


@pytest.fixture
def camera_page(camera_browser):
    context = camera_browser.new_context(viewport=VIEWPORT, permissions=["camera"])
    page = context.new_page()
    page.set_default_timeout(30_000)
    app = AppPage(page)
    page.on("console", lambda m: m.type == "error" and app.console_errors.append(m.text))
    yield app
    context.close()


def expect():
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect


def uploader(page, label: str):
    return page.get_by_test_id("stFileUploader").filter(has_text=label).locator('input[type="file"]')


def open_tab(app: AppPage, name: str) -> None:
    app.page.get_by_role("tab", name=re.compile(name)).click()
    app.wait_for_app(SLOW)


def metric(page, label: str) -> str:
    return page.get_by_test_id("stMetric").filter(has_text=label).get_by_test_id("stMetricValue").inner_text()


def take_snapshot(app: AppPage, removable, expected: int, tries: int = 4) -> None:
    """Click Take Photo until the snapshot is added (a click before the camera's stream is live takes nothing)."""
    page = app.page
    for _ in range(tries):
        page.locator("video").first.wait_for(state="visible", timeout=SLOW)
        page.wait_for_timeout(500)
        page.get_by_role("button", name=re.compile("Take Photo", re.IGNORECASE)).click(timeout=SLOW)
        app.wait_for_app(SLOW)
        try:
            expect()(removable).to_have_count(expected, timeout=15_000)
            return
        except AssertionError:
            continue
    expect()(removable).to_have_count(expected)


def test_make_train_and_classify_from_drops_and_camera_snapshots(streamlit_app, camera_page, tmp_path):
    photos = tmp_path / "photos"
    truth = loose_photos(photos, {"circle": 8, "square": 8})
    circles = [str(photos / name) for name, shape in truth.items() if shape == "circle"]
    squares = [str(photos / name) for name, shape in truth.items() if shape == "square"]
    server = streamlit_app()
    app, page = camera_page, camera_page.page
    app.open(server, "dataset")

    open_tab(app, "New dataset")
    page.get_by_placeholder("garden_birds").fill("my shapes")
    page.get_by_label("Classes, comma-separated").fill("circle, square")
    page.get_by_label("Classes, comma-separated").press("Enter")
    app.wait_for_app()
    page.get_by_role("button", name="Create dataset").click()
    app.wait_for_app(SLOW)
    open_tab(app, "Add photos")

    uploader(page, "Drop photos").set_input_files(circles[:6], timeout=SLOW)
    app.wait_for_app(SLOW)
    expect()(page.get_by_text("Added 6 photo(s).")).to_be_visible(timeout=SLOW)
    app.screenshot("own-photos-1-dropped")

    page.get_by_test_id("stRadio").get_by_text("square", exact=True).click()
    app.wait_for_app()
    removable = page.get_by_role("button", name="Remove", exact=True)
    for taken in range(1, 4):
        take_snapshot(app, removable, 6 + taken)
    app.screenshot("own-photos-2-snapshots")
    uploader(page, "Drop photos").set_input_files(squares[:6], timeout=SLOW)
    app.wait_for_app(SLOW)
    expect()(page.get_by_test_id("stMetric").filter(has_text="square").get_by_test_id("stMetricValue")).to_have_text(
        "9", timeout=SLOW
    )
    assert metric(page, "circle") == "6"

    # Train the tutorial CNN, tiny, and classify a photo it never saw.
    app.open(server, "train")
    choose(page, "Image size", "32 × 32 px")
    app.wait_for_app()
    page.get_by_role("spinbutton", name="Epochs", exact=True).fill(
        "2", timeout=SLOW
    )  # the Train page's first run imports TensorFlow: slow while another worker trains
    page.get_by_role("button", name=re.compile("Start training")).click()
    panel = page.locator(".st-key-train_live")
    expect()(panel).to_contain_text("completed", timeout=240_000)
    app.screenshot("own-photos-3-trained")

    app.open(server, "classify")
    uploader(page, "Drop photos here").set_input_files([circles[-1]], timeout=SLOW)
    app.wait_for_app(SLOW)
    answer = page.get_by_role("heading", name=re.compile(r"^((circle|square) — \d{1,3}\.\d%|Not sure)$"))
    expect()(answer).to_have_count(1, timeout=SLOW)
    app.screenshot("own-photos-4-classified")
    app.assert_no_errors()


def kaggle_zip(folder: Path) -> Path:
    """Six labelled photos per shape and 20 without a row: what the Label view gets."""
    truth = loose_photos(folder / "train", {"circle": 16, "square": 16})
    names = sorted(truth)
    labelled: list[str] = []
    per_shape = {"circle": 0, "square": 0}
    for name in names:
        if per_shape[truth[name]] < 6:
            labelled.append(name)
            per_shape[truth[name]] += 1
    rows = ["id,shape"] + [f"{name.rsplit('.', 1)[0]},{truth[name]}" for name in labelled]
    target = folder / "shapes.zip"
    with zipfile.ZipFile(target, "w") as archive:
        for name in names:
            archive.write(folder / "train" / name, f"train/{name}")
        archive.writestr("labels.csv", "\n".join(rows) + "\n")
    return target


def test_import_a_zip_with_labels_and_label_twenty_photos_from_suggestions(
    streamlit_app, camera_page, tmp_path, keras_home
):
    archive = kaggle_zip(tmp_path)
    server = streamlit_app(env={"KERAS_HOME": str(keras_home)})
    app, page = camera_page, camera_page.page
    app.open(server, "dataset")

    open_tab(app, "Zip \\+ labels")
    uploader(page, "A zip of photos").set_input_files([str(archive)], timeout=SLOW)
    app.wait_for_app(SLOW)
    expect()(page.get_by_text(re.compile(r"2 classes.*12 labelled photos; 20 left unlabelled"))).to_be_visible()
    app.screenshot("own-photos-5-import-preview")
    page.get_by_role("button", name="Import").click()
    app.wait_for_app(SLOW)

    open_tab(app, "Label")
    cards = page.get_by_role("button", name=re.compile(r"^(Accept (circle|square)|Exclude)$"))
    expect()(cards.first).to_be_visible(timeout=SLOW)
    app.screenshot("own-photos-6-label-view", full_page=True)
    # Down to "at least 50% sure" (the slider's Home key): every photo is suggested, none is a stranger.
    page.get_by_role("slider").first.press("Home")
    app.wait_for_app(SLOW)
    accept_all = page.get_by_role("button", name=re.compile(r"^Accept \d+$"))
    expect()(accept_all).to_have_text("Accept 20", timeout=SLOW)
    for left in (19, 18):  # two one-click accepts, then every confident one at once
        cards.first.click()
        app.wait_for_app(SLOW)
        expect()(accept_all).to_have_text(f"Accept {left}", timeout=SLOW)
    accept_all.click()
    app.wait_for_app(SLOW)
    expect()(page.get_by_text("Labelled 18 photo(s), excluded 0.")).to_be_visible(timeout=SLOW)
    expect()(page.get_by_text("Every photo has a class.")).to_be_visible()
    app.screenshot("own-photos-7-labelled", full_page=True)
    app.assert_no_errors()
