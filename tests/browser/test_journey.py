"""A newcomer's whole path through PawLab, in a real browser.

One Streamlit server (``streamlit run app.py`` on a free loopback port, with a
fresh PAWLAB_HOME) and one Chromium tab serve the three stories of this
module, in order, each building on the one before. Nothing in the app is
prepared or bypassed: everything happens through the pages.

1. Browse: Home, then Dataset from the sidebar. The page's Download button
   fetches the dataset (a zip of real photos on a loopback web server, named
   by PAWLAB_DATASET_URL) while a progress bar moves; thumbnails of cats and
   dogs; a class filter; the augmentation preview reacting to the rotation
   slider and the flip control.
2. Train: a small CNN (32 px, 2 epochs, 20 photos per class). The progress
   bar and the live chart move; a reload mid-run finds the run still live;
   the confusion matrix appears at the end. A second run is cancelled.
3. Classify: a transfer model (frozen ImageNet MobileNetV2 on cached features,
   5 epochs) is trained through the form, and its results show its calibration.
   A cat photo, a cup of coffee, a dog photo and a text file renamed .jpg,
   dropped at once: the pets answered with probabilities and Grad-CAM heatmaps,
   the coffee "None of these" with its reason, one error.

After every step (and on arriving at each page) the page must show no
Streamlit exception box, no Python traceback and no browser console error.
Every step saves a screenshot (the folder is printed; set PAWLAB_SCREENSHOTS
to choose it). With PAWLAB_REFRESH_README_SCREENSHOTS=1 the page screenshots
also replace assets/screenshot-{home,dataset,train,train-results,classify}.png
(1280x800, under 300 KB each); PAWLAB_REFRESH_README_SCREENSHOTS=home,dataset
replaces only those (the journey's model is tiny: screenshots of a real run
may be the better ones for Train and Classify).

    python -m pytest tests/browser/test_journey.py -q -s
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from browser._journey_data import (
    ZIP_NAME,
    build_dataset_zip,
    photo_to_drop,
    save_readme_screenshot,
    serve_slowly,
)

# The harness: the same server its function-scoped
# ``streamlit_app`` factory starts, here once for the whole module.
from browser.conftest import (
    REPO,
    VIEWPORT,
    AppPage,
    AppServer,
    screenshot_dir,
    start_app_server,
    wait_for_app,
)

pytestmark = pytest.mark.browser

PHOTOS_PER_FOLDER = 30  # per split and class: 60 train, 60 validation photos
EPOCHS = 2
TRAINING_PHOTOS_PER_CLASS = 20
# "1" refreshes every README screenshot; or name some: "home,dataset".
REFRESH_README = os.environ.get("PAWLAB_REFRESH_README_SCREENSHOTS", "").replace(" ", "")
SLOW = 120_000  # ms: TensorFlow's first import on a busy two-core machine
PATIENCE = 30_000  # ms: how long ``expect`` waits here (Playwright's default is 5 s)

# Epochs plotted in a panel's training curves (-1: no chart yet).
CHART_EPOCHS_JS = """(panel) => {
    const plot = panel.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot');
    if (!plot || !plot.data) return -1;
    return Math.max(0, ...plot.data.map(trace => (trace.x || []).length));
}"""
# True when every image in the element has loaded and decoded to real pixels.
IMAGES_LOADED_JS = "imgs => imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0)"


# --- One server and one tab for the whole journey ----------------------------------


@dataclass
class Journey:
    server: AppServer
    app: AppPage
    dataset_url: str
    zipped_photos: set[str]  # names of the photos in the dataset zip
    started: float = field(default_factory=time.monotonic)
    passed: set[str] = field(default_factory=set)  # stories done

    @property
    def page(self):
        return self.app.page

    def elapsed(self) -> str:
        return f"{time.monotonic() - self.started:6.1f} s"

    def go_to(self, url_path: str) -> None:
        """Click a page in the sidebar, as a person would; it must open without error."""
        self.page.locator(f'[data-testid="stSidebarNavLink"][href$="/{url_path}"]').click()
        self.page.wait_for_url(f"**/{url_path}")
        self.app.wait_for_app(SLOW)
        self.app.assert_no_errors()

    def step(self, name: str) -> Path:
        """End of a step: the page is idle and shows no error; keep a screenshot."""
        self.app.wait_for_app(SLOW)
        self.app.assert_no_errors()
        path = self.app.screenshot(f"journey-{name}")
        print(f"[{self.elapsed()}] {name}")
        return path

    def readme_screenshot(self, page_name: str, path: Path) -> None:
        if REFRESH_README == "1" or page_name in REFRESH_README.split(","):
            target = REPO / "assets" / f"screenshot-{page_name}.png"
            size = save_readme_screenshot(path, target)
            print(f"README screenshot: {target} ({size / 1000:.0f} KB)")

    def require(self, story: str) -> None:
        if story not in self.passed:
            pytest.skip(f"the {story} story did not pass, and this one continues from it")


@pytest.fixture(scope="module")
def journey(chromium, cats_and_dogs, keras_home, tmp_path_factory):
    work = tmp_path_factory.mktemp("journey")
    zip_path, zipped = build_dataset_zip(cats_and_dogs, work / ZIP_NAME, PHOTOS_PER_FOLDER)
    # The server's Keras writes to the test session's KERAS_HOME (never ~/.keras), which
    # holds the shared ImageNet weights the Classify story's transfer model needs.
    print(f"\nscreenshots: {screenshot_dir()}")
    # A page redraw can take seconds on a busy two-core CI machine.
    expect.set_options(timeout=PATIENCE)
    with serve_slowly(zip_path, seconds=3.0) as url:
        server = start_app_server(
            work / "pawlab_home", work, env={"PAWLAB_DATASET_URL": url, "KERAS_HOME": str(keras_home)}, timeout=90
        )
        context = chromium.new_context(viewport=VIEWPORT)
        page = context.new_page()
        page.set_default_timeout(PATIENCE)
        app = AppPage(page)
        page.on(
            "console",
            lambda message: (
                message.type == "error"
                and app.console_errors.append(f"{message.text} ({message.location.get('url', '')})")
            ),
        )
        page.on("pageerror", lambda error: app.console_errors.append(f"page error: {error}"))
        try:
            yield Journey(server, app, url, zipped)
        finally:
            context.close()
            server.stop()
            expect.set_options(timeout=5_000)  # Playwright's default, for other modules


@pytest.fixture(autouse=True)
def evidence_on_failure(journey, request):
    """A failing story leaves a full-page screenshot and the server's log."""
    yield
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        try:
            whole_page_screenshot(journey.app, f"FAILED-journey-{request.node.name}")
        except PlaywrightError as error:
            print(f"no failure screenshot: {error}")
        print(f"server log:\n{journey.server.log()}")


# --- Helpers for what a person looks at ---------------------------------------------------


def image_sources(locator) -> list[str]:
    return locator.evaluate_all("imgs => imgs.map(i => i.src)")


def wait_for_new_variants(page, previews, before: list[str], timeout: float = 60) -> list[str]:
    """The augmentation preview's images once the variants differ from ``before``."""
    deadline = time.monotonic() + timeout
    after = image_sources(previews)
    while after[1:] == before[1:] and time.monotonic() < deadline:
        page.wait_for_timeout(200)
        after = image_sources(previews)
    assert after[1:] != before[1:], "the augmented variants did not change"
    assert after[0] == before[0], "the original photo should not change"
    return after


def choose(page, label: str, option: str, tries: int = 3) -> None:
    """Pick ``option`` in the select box labelled ``label`` (again, if a rerun closed its list)."""
    for attempt in range(tries):
        page.get_by_role("combobox", name=label).click()
        try:
            page.get_by_role("option", name=option, exact=True).click(timeout=10_000)
            return
        except PlaywrightError:
            if attempt == tries - 1:
                raise
            page.keyboard.press("Escape")
            wait_for_app(page)


def panel_run_id(panel) -> str | None:
    match = re.search(r"Run (\S+) ·", panel.inner_text())
    return match.group(1) if match else None


def watch_run(page, panel, until: str, timeout: float) -> tuple[set[str], list[int]]:
    """Poll the live panel until it shows ``until``; returns the progress bar
    texts and the chart's epoch counts seen while the run was running."""
    progress_texts, chart_epochs = set(), []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            text = panel.inner_text(timeout=5_000)
            if until in text:
                return progress_texts, chart_epochs
            if "🏃 running" in text:
                bar = panel.get_by_test_id("stProgress")
                if bar.count():
                    progress_texts.add(bar.first.inner_text(timeout=5_000))
                chart_epochs.append(panel.evaluate(CHART_EPOCHS_JS))
        except PlaywrightError:
            pass  # the fragment redrew the panel while we read it
        page.wait_for_timeout(250)
    pytest.fail(f"The live panel did not show {until!r} within {timeout:.0f} s; it shows:\n{panel.inner_text()}")


# --- 1. Browse -------------------------------------------------------------------------------


def test_1_browse_the_downloaded_dataset(journey):
    page = journey.page

    # Home: what PawLab does, no dataset yet.
    page.goto(journey.server.url + "/")
    journey.app.wait_for_app(SLOW)
    expect(page.get_by_role("heading", name="PawLab")).to_be_visible()
    expect(page.get_by_text("Download cats vs dogs or upload a zip.")).to_be_visible()
    journey.readme_screenshot("home", journey.step("1-home"))

    # Dataset: nothing there yet; the Download tab names the (loopback) source.
    journey.go_to("dataset")
    expect(page.get_by_text("No dataset yet.")).to_be_visible()
    expect(page.get_by_text(journey.dataset_url, exact=True)).to_be_visible()
    journey.step("1-dataset-empty")

    # Download it, watching the progress bar until the dataset's tabs appear.
    page.get_by_role("button", name=re.compile("Download cats vs dogs")).click()
    bar = page.get_by_test_id("stProgress")
    browse_tab = page.get_by_role("tab", name=re.compile("Browse photos"))
    progress_texts: list[str] = []
    deadline = time.monotonic() + 90
    while not browse_tab.count() and time.monotonic() < deadline:
        try:
            text = bar.first.inner_text(timeout=1_000) if bar.count() else None
        except PlaywrightError:
            text = None  # redrawn while read
        if text and text not in progress_texts:
            progress_texts.append(text)
            if len([t for t in progress_texts if t.startswith("Downloading")]) == 2:
                journey.app.screenshot("journey-1-dataset-downloading")
        page.wait_for_timeout(100)
    journey.app.wait_for_app(SLOW)
    print(f"progress bar texts: {progress_texts}")
    downloading = [t for t in progress_texts if re.fullmatch(r"Downloading… \d+\.\d of \d+\.\d MB", t)]
    assert len(downloading) >= 2, f"the download progress bar did not move: {progress_texts}"
    expect(browse_tab).to_be_visible()

    # The overview of what arrived: the 120 photos of two classes.
    expect(page.get_by_role("combobox", name="Dataset")).to_have_value("cats_and_dogs_filtered")
    expect(
        page.get_by_test_id("stMetric").filter(has_text="Usable photos").get_by_test_id("stMetricValue")
    ).to_have_text(f"{4 * PHOTOS_PER_FOLDER}")
    expect(page.get_by_text("Classes: cats, dogs")).to_be_visible()
    journey.step("1-dataset-overview")

    # Browse: a page of real thumbnails of both classes.
    browse_tab.click()
    journey.app.wait_for_app()
    captions = page.get_by_test_id("stImageCaption")
    expect(captions).to_have_count(24)
    assert set(captions.all_inner_texts()) == {"cats", "dogs"}
    expect(page.get_by_text(f"{4 * PHOTOS_PER_FOLDER} photos", exact=True)).to_be_visible()
    thumbnails = page.locator(".st-key-thumbnails img")
    page.wait_for_function(f"() => ({IMAGES_LOADED_JS})([...document.querySelectorAll('.st-key-thumbnails img')])")
    assert thumbnails.count() == 24
    journey.readme_screenshot("dataset", journey.step("1-dataset-browse"))

    # Filter by class: without cats, only the 60 dogs are left.
    cats_pill = page.get_by_role("button", name="cats", exact=True)
    cats_pill.click()
    journey.app.wait_for_app()
    expect(page.get_by_text(f"{2 * PHOTOS_PER_FOLDER} photos", exact=True)).to_be_visible()
    expect(captions).to_have_count(24)
    assert set(captions.all_inner_texts()) == {"dogs"}
    journey.step("1-dataset-only-dogs")
    cats_pill.click()
    journey.app.wait_for_app()
    expect(page.get_by_text(f"{4 * PHOTOS_PER_FOLDER} photos", exact=True)).to_be_visible()

    # Augmentation preview: the photo and four variants (the first one loads TensorFlow).
    page.get_by_role("tab", name=re.compile("Augmentation preview")).click()
    previews = page.locator(".st-key-aug_preview img")
    expect(previews).to_have_count(5, timeout=SLOW)
    journey.app.wait_for_app(SLOW)
    expect(page.get_by_text("recommended: flip horizontal, rotation 0.1,")).to_be_visible()
    before = image_sources(previews)
    journey.step("1-dataset-augmentation")

    # More rotation: the description and the variants follow.
    rotation = page.get_by_test_id("stSlider").filter(has_text="Rotation").get_by_role("slider")
    rotation.focus()
    for _ in range(5):
        rotation.press("ArrowRight")
    journey.app.wait_for_app()
    expect(page.get_by_text("custom: flip horizontal, rotation 0.15")).to_be_visible()
    rotated = wait_for_new_variants(page, previews, before)
    journey.step("1-dataset-augmentation-rotation")

    # Vertical flips instead of horizontal ones.
    page.get_by_test_id("stRadio").filter(has_text="Random flip").get_by_text("vertical", exact=True).click()
    journey.app.wait_for_app()
    expect(page.get_by_text("custom: flip vertical, rotation 0.15")).to_be_visible()
    wait_for_new_variants(page, previews, rotated)
    journey.step("1-dataset-augmentation-flip")
    journey.passed.add("browse")


# --- 2. Train --------------------------------------------------------------------------------


def test_2_train_watch_reload_and_cancel(journey):
    journey.require("browse")
    page = journey.page
    journey.go_to("train")
    expect(page.get_by_text(re.compile(r"Dataset cats_and_dogs_filtered: 2 classes \(cats, dogs\)"))).to_be_visible()
    expect(page.get_by_text("No training runs yet")).to_be_visible()

    # A small configuration: the tutorial CNN at 32 px, 2 epochs, 20 photos per class.
    expect(page.get_by_role("combobox", name="Model")).to_have_value("Tutorial CNN")
    choose(page, "Image size", "32 × 32 px")
    journey.app.wait_for_app()
    page.get_by_role("spinbutton", name="Epochs", exact=True).fill(str(EPOCHS))
    choose(page, "Batch size", "8")
    page.get_by_label("Training photos per class", exact=True).fill(str(TRAINING_PHOTOS_PER_CLASS))
    journey.step("2-train-form")
    page.get_by_role("button", name=re.compile("Start training")).click()

    # The run starts: the live panel shows it running, with a progress bar.
    panel = page.locator(".st-key-train_live")
    expect(panel).to_contain_text("🏃 running", timeout=30_000)
    expect(panel.get_by_test_id("stProgress")).to_be_visible()
    run_id = panel_run_id(panel)
    assert run_id, panel.inner_text()
    first_progress = panel.get_by_test_id("stProgress").inner_text()
    first_chart = panel.evaluate(CHART_EPOCHS_JS)
    journey.step("2-train-running")

    # A reload (a new browser session) finds the same run still live.
    page.reload()
    journey.app.wait_for_app(SLOW)
    expect(panel).to_contain_text(f"Run {run_id}")
    expect(panel).to_contain_text("🏃 running")
    expect(panel.get_by_test_id("stProgress")).to_be_visible()
    journey.step("2-train-reloaded")
    print(f"[{journey.elapsed()}] reloaded; the panel shows: {panel.get_by_test_id('stProgress').inner_text()!r}")

    # Watch it to the end: the progress bar moves and the chart gains the epochs.
    progress_texts, chart_epochs = watch_run(page, panel, "✅ completed", timeout=240)
    progress_texts.add(first_progress)
    chart_epochs.insert(0, first_chart)
    print(
        f"[{journey.elapsed()}] completed; progress seen: {sorted(progress_texts)}; "
        f"chart epochs seen while running: {chart_epochs}"
    )
    assert len(progress_texts) >= 2, f"the progress bar did not move: {progress_texts}"
    assert 0 in chart_epochs, f"the chart never waited for its first epoch: {chart_epochs}"
    expect(panel.get_by_test_id("stMetricValue").first).to_have_text(f"{EPOCHS} / {EPOCHS}")
    page.wait_for_function(f"() => ({CHART_EPOCHS_JS})(document.querySelector('.st-key-train_live')) === {EPOCHS}")

    # Results: the confusion matrix counts every test photo once.
    results = page.locator(".st-key-train_results")
    expect(results.get_by_text("Confusion matrix")).to_be_visible(timeout=30_000)
    test_photos = int(
        results.get_by_test_id("stMetric").filter(has_text="Test photos").get_by_test_id("stMetricValue").inner_text()
    )
    matrix = results.get_by_test_id("stPlotlyChart").first
    expect(matrix.locator(".js-plotly-plot")).to_be_attached()
    cells = matrix.locator(".js-plotly-plot").evaluate("plot => plot.data[0].z")
    assert len(cells) == 2 and sum(map(sum, cells)) == test_photos > 0, (cells, test_photos)
    journey.step("2-train-completed")
    whole_page_screenshot(journey.app, "journey-2-train-completed-whole-page")
    train_screenshots(journey)

    # A second, longer run, cancelled while it runs.
    page.get_by_role("spinbutton", name="Epochs", exact=True).fill("50")
    page.get_by_role("button", name=re.compile("Start training")).click()
    expect(panel).not_to_contain_text(f"Run {run_id}", timeout=30_000)
    expect(panel).to_contain_text("🏃 running", timeout=30_000)
    second_id = panel_run_id(panel)
    journey.step("2-train-second-run")
    panel.get_by_role("button", name=re.compile("Cancel run")).click()
    expect(panel).to_contain_text("⏹️ cancelled", timeout=SLOW)
    expect(panel).to_contain_text(f"Run {second_id}")
    expect(panel.get_by_test_id("stAlertContainer")).to_contain_text("cancelled")
    expect(panel.get_by_role("button", name=re.compile("Cancel run"))).to_have_count(0)
    journey.step("2-train-cancelled")
    journey.passed.add("train")


def train_screenshots(journey: Journey) -> None:
    """A finished run as a person reviews it. Its curves (top of the page) and its
    confusion matrix (below the runs table) are more than 800 px apart: two views."""
    page = journey.page
    scroll_to_top_of(page, page.get_by_role("heading", name="Train", exact=False).first, margin=200)
    journey.readme_screenshot("train", journey.app.screenshot("journey-page-train"))
    scroll_to_top_of(page, page.locator(".st-key-train_results"))
    journey.readme_screenshot("train-results", journey.app.screenshot("journey-page-train-results"))


# --- 3. Classify -----------------------------------------------------------------------------

TRANSFER_TITLE = "MobileNetV2 + fine-tuning (ours)"
TRANSFER_EPOCHS = 5
STRANGER = "coffee"  # tests/_planted.py: a cup of coffee, neither cat nor dog


def train_a_transfer_model(journey: Journey) -> None:
    """A frozen ImageNet MobileNetV2 with a head on its cached features, no fine-tuning: the
    kind of model that can tell a photo of something else (its run has the unknown-photo check)."""
    page = journey.page
    journey.go_to("train")
    choose(page, "Model", TRANSFER_TITLE)
    journey.app.wait_for_app()
    choose(page, "Image size", "160 × 160 px")
    journey.app.wait_for_app()
    page.get_by_role("spinbutton", name="Epochs", exact=True).fill(str(TRANSFER_EPOCHS))
    page.get_by_label("Fine-tuning epochs", exact=True).fill("0")
    page.get_by_label("Training photos per class", exact=True).fill("0")  # all 30
    page.get_by_role("button", name=re.compile("Start training")).click()
    panel = page.locator(".st-key-train_live")
    expect(panel.get_by_role("heading", name=TRANSFER_TITLE)).to_be_visible(timeout=SLOW)
    watch_run(page, panel, "✅ completed", timeout=600)
    print(f"[{journey.elapsed()}] transfer run completed")
    # Its results say how far to trust it: the reliability diagram of its calibration.
    trust = page.get_by_role("heading", name="How far to trust its answers")
    expect(trust).to_be_visible(timeout=SLOW)
    reliability = page.locator(".st-key-train_results").get_by_test_id("stPlotlyChart").filter(has_text="Reliability")
    expect(reliability).to_have_count(1)
    journey.app.wait_for_app()
    scroll_to_top_of(page, trust)
    journey.step("3-train-transfer-trust")


def test_3_classify_a_drop_of_photos(journey, cats_and_dogs, tmp_path):
    journey.require("train")
    page = journey.page
    train_a_transfer_model(journey)
    cat = photo_to_drop(cats_and_dogs, "cats", journey.zipped_photos)
    dog = photo_to_drop(cats_and_dogs, "dogs", journey.zipped_photos)
    stranger = stranger_photo(tmp_path, STRANGER)
    broken = tmp_path / "holiday notes.jpg"
    broken.write_text("Pack the cat's food and the dog's lead.")

    # The completed runs are offered (the cancelled one is not); choose the transfer model.
    journey.go_to("classify")
    model = page.get_by_role("combobox", name="Model")
    expect(model).to_have_value(re.compile(r" · test accuracy \d+\.\d% · "), timeout=SLOW)
    model.click()
    options = page.get_by_role("option")
    assert sorted(o.split(" · ")[0] for o in options.all_inner_texts()) == [TRANSFER_TITLE, "Tutorial CNN"]
    options.filter(has_text=TRANSFER_TITLE).click()
    journey.app.wait_for_app(SLOW)
    expect(model).to_have_value(re.compile("^" + re.escape(TRANSFER_TITLE)))
    journey.step("3-classify-empty")

    # One drop of four files through the photo uploader's own file input.
    page.get_by_test_id("stFileUploader").filter(has_text="Drop photos here").locator(
        'input[type="file"]'
    ).set_input_files([str(cat), str(stranger), str(dog), str(broken)], timeout=SLOW)
    journey.app.wait_for_app(SLOW)

    # Three answers with their probabilities, and one clear error. The cup of coffee is
    # "None of these"; the pets get their class (or, honestly, "Not sure").
    answers = page.get_by_role("heading", name=re.compile(r"^((cats|dogs) — \d{1,3}\.\d%|Not sure|None of these)$"))
    expect(answers).to_have_count(3, timeout=SLOW)
    headings = [text.strip() for text in answers.all_inner_texts()]
    print(f"answers: {headings}")
    assert headings[1] == "None of these", headings
    assert all(re.fullmatch(r"(cats|dogs) — \d{1,3}\.\d%|Not sure", h) for h in headings[::2]), headings
    expect(page.get_by_test_id("stAlertContentInfo")).to_contain_text(
        re.compile(r"Looks like none of the training photos \(distance \d\.\d+ > \d\.\d+\)\. The closest class: ")
    )
    expect(
        page.get_by_test_id("stCaptionContainer").filter(has_text="Probabilities are calibrated (temperature")
    ).to_be_visible()
    # Each answer's class probabilities as bars ("cats · 96.6%"), most likely first.
    bars = page.get_by_test_id("stProgress")
    expect(bars).to_have_count(3 * 2)
    labels = [text.strip() for text in bars.all_inner_texts()]
    for photo_bars in (labels[i : i + 2] for i in range(0, len(labels), 2)):
        names_and_percents = [re.fullmatch(r"(cats|dogs) · (\d{1,3}\.\d)%", label) for label in photo_bars]
        assert all(names_and_percents), labels
        percents = [float(match.group(2)) for match in names_and_percents]
        assert percents == sorted(percents, reverse=True), labels
        assert sum(percents) == pytest.approx(100, abs=0.2), labels
    photos = page.get_by_test_id("stImage")
    expect(photos).to_have_count(3)
    assert [c.strip() for c in photos.get_by_test_id("stImageCaption").all_inner_texts()] == [
        cat.name,
        stranger.name,
        dog.name,
    ]
    expect(page.get_by_test_id("stAlertContentError")).to_have_count(1)
    expect(page.get_by_test_id("stAlertContentError")).to_contain_text("holiday notes.jpg is not an image file")
    # The drop's summary: a static (Markdown) table, one row per file in drop order.
    summary = page.locator('[data-testid="stMarkdown"] table')
    expect(summary).to_have_count(1)
    rows = summary.locator("tbody tr")
    expect(rows).to_have_count(4)
    assert [row.locator("td").first.inner_text().strip() for row in rows.all()] == [
        cat.name,
        stranger.name,
        dog.name,
        broken.name,
    ]
    journey.step("3-classify-predictions")

    # Grad-CAM: each pet photo is replaced by its heatmap overlay.
    images = photos.locator("img")
    for index in (0, 2):
        plain = images.nth(index).get_attribute("src")
        page.get_by_text("Grad-CAM heatmap").nth(index).click()
        journey.app.wait_for_app(SLOW)
        expect(images.nth(index)).not_to_have_attribute("src", plain, timeout=SLOW)
    page.wait_for_function(
        f"() => ({IMAGES_LOADED_JS})([...document.querySelectorAll('[data-testid=\"stImage\"] img')])"
    )
    journey.step("3-classify-heatmaps")
    whole_page_screenshot(journey.app, "journey-3-classify-whole-page")
    journey.readme_screenshot("classify", classify_screenshot(journey))
    journey.passed.add("classify")
    print(f"[{journey.elapsed()}] journey complete")


def stranger_photo(folder: Path, name: str) -> Path:
    """One of tests/_planted.py's photos of something else, as a PNG file to drop."""
    from _planted import stranger_photos
    from PIL import Image

    path = folder / f"{name}.png"
    Image.fromarray(stranger_photos()[name]).save(path)
    return path


def classify_screenshot(journey: Journey) -> Path:
    """After a drop: the summary of all files, then the first answer with its heatmap."""
    scroll_to_top_of(journey.page, journey.page.get_by_role("heading", name="Summary"))
    return journey.app.screenshot("journey-page-classify")


def scroll_to_top_of(page, locator, margin: int = 70) -> None:
    """Scroll so ``locator`` starts just below Streamlit's top bar.

    Streamlit scrolls its own main container, not the window."""
    locator.evaluate(
        """(element, margin) => {
        element.scrollIntoView({block: "start"});
        let box = element.parentElement;
        while (box && !["auto", "scroll"].includes(getComputedStyle(box).overflowY)) box = box.parentElement;
        if (box) box.scrollTop -= margin;
    }""",
        margin,
    )
    page.wait_for_timeout(300)  # let images in view finish drawing


def whole_page_screenshot(app: AppPage, name: str) -> Path:
    """All of a long page. Playwright's full_page sees only the viewport, because
    Streamlit scrolls inside its own container: grow the viewport instead."""
    page = app.page
    height = page.evaluate("""() => Math.max(...[...document.querySelectorAll('*')]
        .filter(e => ["auto", "scroll"].includes(getComputedStyle(e).overflowY))
        .map(e => e.scrollHeight), document.documentElement.scrollHeight)""")
    page.set_viewport_size({"width": VIEWPORT["width"], "height": min(int(height), 6000)})
    page.wait_for_timeout(500)  # charts redraw for the new size
    try:
        return app.screenshot(name)
    finally:
        page.set_viewport_size(VIEWPORT)
        page.wait_for_timeout(300)
