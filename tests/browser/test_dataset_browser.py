"""The Dataset page in a real browser, on the real cats-and-dogs photos.

A person opens a folder on the server, browses thumbnails of both classes,
and turns the rotation slider in the augmentation preview: the augmented
photos must change.
"""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def preview_sources(page) -> list[str]:
    return page.locator(".st-key-aug_preview img").evaluate_all("imgs => imgs.map(i => i.src)")


def test_browse_and_preview_augmentation(streamlit_app, app_page, cats_and_dogs, warm_scan_cache, pawlab_home):
    warm_scan_cache(cats_and_dogs, pawlab_home)  # shared with other browser tests
    started = time.monotonic()
    server = streamlit_app(env={"PAWLAB_ALLOW_LOCAL_PATHS": "1"})
    page = app_page.page
    print(f"server at {time.monotonic() - started:.1f} s")
    app_page.open(server, "dataset")
    print(f"page at {time.monotonic() - started:.1f} s")

    # No dataset yet: the "Add a dataset" expander is open. Open the shared folder.
    page.get_by_role("tab", name="Folder on the server").click()
    page.get_by_role("textbox", name="Folder path").fill(str(cats_and_dogs))
    page.get_by_role("textbox", name="Folder path").press("Enter")
    app_page.wait_for_app()
    page.get_by_role("button", name="Open folder").click()
    app_page.wait_for_app()

    # Overview: the split the Train page uses, counted.
    expect(page.get_by_text("Photos per split").first).to_be_visible(timeout=60_000)
    expect(page.get_by_test_id("stMetricValue").nth(1)).to_have_text("3,000")
    app_page.assert_no_errors()
    app_page.screenshot("dataset-overview")
    print(f"overview at {time.monotonic() - started:.1f} s")

    # Browse: thumbnails captioned with both class names.
    page.get_by_role("tab", name="Browse photos").click()
    app_page.wait_for_app()
    captions = page.get_by_test_id("stImageCaption")
    expect(captions.first).to_be_visible()
    caption_texts = set(captions.all_inner_texts())
    assert {"cats", "dogs"} <= caption_texts, caption_texts
    assert captions.count() == 24  # one page
    app_page.assert_no_errors()
    app_page.screenshot("dataset-browse")
    print(f"browse at {time.monotonic() - started:.1f} s")

    # Augmentation preview: the first render loads TensorFlow.
    page.get_by_role("tab", name="Augmentation preview").click()
    app_page.wait_for_app()
    expect(page.locator(".st-key-aug_preview img")).to_have_count(5, timeout=60_000)  # original + 4
    before = preview_sources(page)
    print(f"preview at {time.monotonic() - started:.1f} s")

    rotation = page.get_by_test_id("stSlider").filter(has_text="Rotation").get_by_role("slider")
    value_before = rotation.get_attribute("aria-valuenow")
    rotation.focus()
    for _ in range(5):
        rotation.press("ArrowRight")
    app_page.wait_for_app()
    expect(rotation).not_to_have_attribute("aria-valuenow", value_before)
    expect(page.get_by_text("rotation 0.1")).to_be_visible()  # the config description follows

    deadline = time.monotonic() + 30
    while preview_sources(page)[1:] == before[1:] and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    after = preview_sources(page)
    assert after[0] == before[0], "the original photo should not change"
    assert after[1:] != before[1:], "the augmented variants did not change"
    app_page.wait_for_app()
    app_page.assert_no_errors()
    app_page.screenshot("dataset-augmentation")
    print(f"browser test took {time.monotonic() - started:.1f} s")
