"""The app shell and the Home page (AppTest)."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from conftest import REPO


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
    assert [link.proto.page for link in at.get("page_link")] == ["dataset", "train", "classify"]
