"""The app shell and the Home page (AppTest)."""

from __future__ import annotations

from conftest import REPO
from streamlit.testing.v1 import AppTest


def test_a_bad_setting_is_named_once_instead_of_every_page_failing(monkeypatch):
    monkeypatch.setenv("PAWLAB_MAX_CONCURRENT_RUNS", "lots")
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()

    assert not at.exception
    [error] = [e.value for e in at.error]
    assert "PAWLAB_MAX_CONCURRENT_RUNS" in error and "cannot start" in error


def test_home_without_a_dataset_says_how_to_get_one():
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()

    assert not at.exception
    assert any("Download cats vs dogs or upload a zip." in m.value for m in at.markdown)
    assert [link.proto.page for link in at.get("page_link")] == ["dataset", "review", "train", "classify"]


def test_abandoned_imports_are_swept_once_per_server_process(pawlab_home):
    import streamlit as st

    from core.config import get_settings

    datasets = get_settings().datasets_dir
    leftover = datasets / ".pets.import-abc123"  # an import whose process died
    (leftover / "cats").mkdir(parents=True)
    st.cache_resource.clear()  # a new server process
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()
    assert not at.exception
    assert not leftover.exists()

    (leftover / "cats").mkdir(parents=True)  # not swept again by the same process
    AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()
    assert leftover.exists()


def test_every_page_gets_the_apps_stylesheet_which_stills_loading_placeholders():
    """assets/app.css: a tab's loading placeholders do not shimmer (the browser redrew each
    tab about 40 times a second while one showed)."""
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()

    assert not at.exception
    [style] = [element.proto.body for element in at.get("html") if "stSkeleton" in element.proto.body]
    assert style.startswith("<style>")
    assert '[data-testid="stSkeleton"] *' in style and "animation: none !important" in style
