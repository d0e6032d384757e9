"""Review in a real browser: find the planted mislabel, fix it, train with the fix.

A small dataset of real cats and dogs (24 per class to train on, 12 per class
for validation and test) with two planted problems: a cat filed under dogs,
and a copy of a training photo among the validation photos. A person opens
the Review page, runs the review (the real data doctor, in its own process),
finds the cat among the suspected label errors, moves it to cats, and goes to
Train: the page counts the correction, and the run started there records it
in its config. The photos on disk are never touched.

With PAWLAB_REFRESH_README_SCREENSHOTS=1 (or a list naming "review") the
Review page's screenshot replaces assets/screenshot-review.png.

    python -m pytest tests/browser/test_review_browser.py -q -s
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect

from browser._journey_data import save_readme_screenshot
from browser.conftest import REPO
from core.data.acquire import COMPLETE_MARKER
from core.data.corrections import load_corrections

pytestmark = pytest.mark.browser

TRAIN, VALIDATION = 24, 12  # photos per class
PLANTED_CAT = "cat.104.jpg"  # filed under train/dogs
LEAKED = "dog.105.jpg"  # a training dog, copied into validation/dogs
SLOW = 240_000  # ms: the doctor's first TensorFlow import and features on a busy two-core machine
REFRESH_README = os.environ.get("PAWLAB_REFRESH_README_SCREENSHOTS", "").replace(" ", "")


def pets_with_problems(cats_and_dogs: Path, root: Path) -> Path:
    for split, count in (("train", TRAIN), ("validation", VALIDATION)):
        for name in ("cats", "dogs"):
            (root / split / name).mkdir(parents=True)
            for photo in sorted((cats_and_dogs / split / name).glob("*.jpg"))[:count]:
                shutil.copy(photo, root / split / name / photo.name)
    shutil.move(root / "train" / "cats" / PLANTED_CAT, root / "train" / "dogs" / PLANTED_CAT)
    shutil.copy(root / "train" / "dogs" / LEAKED, root / "validation" / "dogs" / f"copy-of-{LEAKED}")
    (root / COMPLETE_MARKER).write_text("{}\n")  # as an upload leaves it: a new session opens it
    return root


def scroll_to_top_of(page, locator, margin: int = 70) -> None:
    """Scroll Streamlit's main container so ``locator`` starts just below the top bar."""
    locator.evaluate(
        """(element, margin) => {
        element.scrollIntoView({block: "start"});
        let box = element.parentElement;
        while (box && !["auto", "scroll"].includes(getComputedStyle(box).overflowY)) box = box.parentElement;
        if (box) box.scrollTop -= margin;
    }""",
        margin,
    )
    page.wait_for_timeout(300)


def choose(page, label: str, option: str) -> None:
    page.get_by_role("combobox", name=label).click()
    page.get_by_role("option", name=option, exact=True).click()


def test_review_fix_the_planted_mislabel_and_train_with_it(
    streamlit_app, app_page, cats_and_dogs, pawlab_home, keras_home
):
    expect.set_options(timeout=30_000)
    root = pets_with_problems(cats_and_dogs, pawlab_home / "datasets" / "pets").resolve()
    server = streamlit_app(env={"KERAS_HOME": str(keras_home)})
    page = app_page.page
    app_page.open(server, "review")
    expect(page.get_by_text(re.compile(r"Dataset pets: 73 photos of 2 classes"))).to_be_visible()
    app_page.assert_no_errors()

    # Run the review: a progress bar, then the report.
    page.get_by_role("button", name="Review this dataset").click()
    expect(page.get_by_test_id("stProgress")).to_be_visible()
    app_page.screenshot("review-running")
    expect(page.get_by_text("Suspected label errors")).to_be_visible(timeout=SLOW)
    app_page.wait_for_app()
    app_page.assert_no_errors()
    expect(page.get_by_text(re.compile(r"Last review just now"))).to_be_visible()
    expect(page.get_by_text(re.compile("makes the test score a lie")).first).to_be_visible()

    # The planted cat is among the suspected label errors, with "cats" suggested.
    card = page.locator('[class*="st-key-card_labels_"]').filter(has_text=PLANTED_CAT)
    expect(card).to_have_count(1)
    expect(card).to_contain_text("dogs → cats?")
    card.get_by_role("button", name="Move to cats").click()
    app_page.wait_for_app()
    expect(card).to_contain_text("Moved to cats")
    expect(page.get_by_text("1 correction: 1 relabelled, 0 excluded")).to_be_visible()
    assert load_corrections(root).mapping == {f"train/dogs/{PLANTED_CAT}": "cats"}
    assert (root / "train" / "dogs" / PLANTED_CAT).is_file()  # never moved on disk
    app_page.assert_no_errors()
    expect(page.get_by_test_id("stToast")).to_have_count(0, timeout=15_000)  # let the toast go
    scroll_to_top_of(page, page.get_by_test_id("stMetric").first, margin=60)
    shot = app_page.screenshot("review-corrected")
    if REFRESH_README == "1" or "review" in REFRESH_README.split(","):
        target = REPO / "assets" / "screenshot-review.png"
        print(f"README screenshot: {target} ({save_readme_screenshot(shot, target) / 1000:.0f} KB)")

    # The leak: the copy shown beside its original, each with its split.
    page.get_by_role("tab", name=re.compile("Leaks across splits")).click()
    app_page.wait_for_app()
    group = page.locator('[class*="st-key-review_group_leaks_0"]')
    expect(group).to_contain_text("leak")
    expect(group.locator("img")).to_have_count(2)
    app_page.screenshot("review-leaks")

    # Train: the correction is counted, and the run records it in its config.
    page.locator('[data-testid="stSidebarNavLink"][href$="/train"]').click()
    app_page.wait_for_app()
    expect(page.get_by_text("1 correction: 1 relabelled, 0 excluded")).to_be_visible()
    choose(page, "Image size", "32 × 32 px")
    app_page.wait_for_app()
    page.get_by_role("spinbutton", name="Epochs", exact=True).fill("1")
    choose(page, "Batch size", "8")
    page.get_by_role("button", name=re.compile("Start training")).click()
    results = page.locator(".st-key-train_results")
    expect(results.get_by_text("Confusion matrix")).to_be_visible(timeout=SLOW)
    app_page.wait_for_app()
    results.get_by_text("Model", exact=True).click()
    expect(results.get_by_text("Corrections: 1 relabelled, 0 excluded")).to_be_visible()
    app_page.assert_no_errors()
    app_page.screenshot("review-train-config")


def test_review_the_real_cats_and_dogs(
    streamlit_app, app_page, cats_and_dogs, pawlab_home, keras_home, seed_photo_embeddings
):
    """The doctor on the 3000 unmodified photos of cats_and_dogs_filtered, as a person sees it.

    Its embeddings come from the test run's one pass over the shared photos
    (seed_photo_embeddings); the review still runs out of process from the click.

    With PAWLAB_REFRESH_README_SCREENSHOTS naming "review-real", the label issues
    and the unusual photos replace assets/screenshot-review-real*.png.
    """
    expect.set_options(timeout=30_000)
    root = pawlab_home / "datasets" / "cats_and_dogs_filtered"
    shutil.copytree(cats_and_dogs, root)
    (root / COMPLETE_MARKER).write_text("{}\n")
    seed_photo_embeddings(pawlab_home)
    server = streamlit_app(env={"KERAS_HOME": str(keras_home)})
    page = app_page.page
    app_page.open(server, "review")
    expect(page.get_by_text(re.compile(r"Dataset cats_and_dogs_filtered: 3,000 photos of 2 classes"))).to_be_visible()
    page.get_by_role("button", name="Review this dataset").click()
    expect(page.get_by_text("Suspected label errors")).to_be_visible(timeout=SLOW)
    app_page.wait_for_app()
    app_page.assert_no_errors()

    # What it finds in the real photos (README, "The data doctor"): a beagle filed under cats
    # heads the label issues, a Yahoo! Mail logo the unusual photos, one duplicate pair, no leak.
    first_card = page.locator('[class*="st-key-card_labels_"]').first
    expect(first_card).to_contain_text("cat.4085.jpg")
    expect(first_card).to_contain_text("cats → dogs?")
    refresh = REFRESH_README == "1" or "review-real" in REFRESH_README.split(",")
    shot = app_page.screenshot("review-real-labels")
    if refresh:
        save_readme_screenshot(shot, REPO / "assets" / "screenshot-review-real.png")
    page.get_by_role("tab", name=re.compile("Unusual photos")).click()
    app_page.wait_for_app()
    expect(page.locator('[class*="st-key-card_outliers_"]').first).to_contain_text("dog.4367.jpg")
    scroll_to_top_of(page, page.get_by_role("tab", name=re.compile("Unusual photos")), margin=60)
    shot = app_page.screenshot("review-real-outliers")
    if refresh:
        save_readme_screenshot(shot, REPO / "assets" / "screenshot-review-real-outliers.png")
    page.get_by_role("tab", name=re.compile("Duplicates")).click()
    app_page.wait_for_app()
    group = page.locator('[class*="st-key-review_group_duplicates_0"]')
    expect(group).to_contain_text("dog.74.jpg")
    expect(group).to_contain_text("dog.180.jpg")
    page.get_by_role("tab", name=re.compile("Leaks across splits")).click()
    app_page.wait_for_app()
    expect(page.get_by_text("No photo appears in more than one split.")).to_be_visible()
    app_page.assert_no_errors()
