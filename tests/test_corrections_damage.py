"""Hostile corrections files (issue 21): damage is one sentence and the damaged file is
kept aside, unreadable entries are skipped one by one, Undo takes back this session's own
change, and the history stays bounded however many changes are made."""

from __future__ import annotations

import json
import shutil
import threading
import time

import pytest
from conftest import REPO
from streamlit.testing.v1 import AppTest

from core.config import get_settings
from core.data import corrections
from core.data.acquire import COMPLETE_MARKER
from core.data.corrections import (
    HISTORY_LIMIT,
    add_correction,
    corrections_file,
    load_corrections,
    undo_last,
)
from core.data.splits import split_dataset

FIRST = "train/circles/circles.train.0.jpg"
SECOND = "train/circles/circles.train.1.jpg"
THIRD = "train/squares/squares.train.0.jpg"


def write_raw(root, text: str) -> None:
    path = corrections_file(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def kept_aside(root) -> list:
    path = corrections_file(root)
    return sorted(path.parent.glob(f"{path.stem}.damaged-*.json"))


# --- A damaged file ------------------------------------------------------------------


def test_a_damaged_file_is_one_sentence_and_is_kept_aside_before_the_next_change(tiny_dataset):
    add_correction(tiny_dataset, FIRST, "squares")
    add_correction(tiny_dataset, SECOND, None)
    path = corrections_file(tiny_dataset)
    text = path.read_text()
    damaged = text[:-2]  # two bytes removed: the closing brace and newline
    path.write_text(damaged)

    loaded = load_corrections(tiny_dataset)
    assert loaded.mapping == {}
    assert loaded.problem is not None and "damaged" in loaded.problem
    assert loaded.problem.count(". ") == 0 and loaded.problem.endswith(".")  # one sentence

    add_correction(tiny_dataset, THIRD, "circles")
    [aside] = kept_aside(tiny_dataset)
    assert aside.read_text() == damaged  # the earlier corrections are still on disk, as they were
    now = load_corrections(tiny_dataset)
    assert now.mapping == {THIRD: "circles"}
    assert now.problem is None and aside.name in (now.notice or "")


def test_a_second_damaged_file_never_overwrites_the_first_one_kept_aside(tiny_dataset):
    for text in ("{ not json", "[1, 2"):
        write_raw(tiny_dataset, text)
        add_correction(tiny_dataset, FIRST, None)
    assert sorted(path.read_text() for path in kept_aside(tiny_dataset)) == ["[1, 2", "{ not json"]


def test_many_people_correcting_a_damaged_file_at_once_keep_it_aside_once(tiny_dataset):
    write_raw(tiny_dataset, "{ not json")
    photos = sorted(p.relative_to(tiny_dataset).as_posix() for p in tiny_dataset.glob("train/*/*.jpg"))
    threads = [threading.Thread(target=add_correction, args=(tiny_dataset, photo, None)) for photo in photos]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [path.read_text() for path in kept_aside(tiny_dataset)] == ["{ not json"]
    assert set(load_corrections(tiny_dataset).mapping) == set(photos)


@pytest.mark.parametrize(
    "record",
    [{"history": None}, {"history": "train/circles/circles.train.0.jpg"}, [], {"history": [], "base": [1]}],
)
def test_a_file_of_the_wrong_shape_is_damage_not_a_crash(tiny_dataset, record):
    write_raw(tiny_dataset, json.dumps(record))
    loaded = load_corrections(tiny_dataset)
    assert loaded.mapping == {} and "damaged" in (loaded.problem or "")
    info, _ = split_dataset(tiny_dataset)  # what the Dataset page and training do
    assert info.num_images == 36


def test_unreadable_entries_are_skipped_one_by_one_and_kept_aside_on_the_next_change(tiny_dataset):
    good = {"file": FIRST, "label": "squares", "time": 1.0}
    record = {
        "history": [
            good,
            {"file": SECOND, "label": ["squares"]},  # a list label
            {"file": 7, "label": None},
            "not an entry",
            {"file": THIRD, "label": None, "time": "yesterday"},
            {"label": "circles"},
        ]
    }
    write_raw(tiny_dataset, json.dumps(record))
    loaded = load_corrections(tiny_dataset)
    assert loaded.mapping == {FIRST: "squares"}
    assert len(loaded.skipped) == 5 and loaded.problem is None
    assert "5" in (loaded.notice or "")
    info, _ = split_dataset(tiny_dataset)
    assert info.num_images == 36

    add_correction(tiny_dataset, SECOND, None)
    [aside] = kept_aside(tiny_dataset)
    assert json.loads(aside.read_text()) == record  # the skipped entries are not lost
    assert load_corrections(tiny_dataset).mapping == {FIRST: "squares", SECOND: None}


def test_a_missing_file_is_no_problem(tiny_dataset):
    loaded = load_corrections(tiny_dataset)
    assert loaded.mapping == {} and loaded.problem is None and loaded.notice is None


# --- Undo is this session's own ----------------------------------------------------------


def test_undo_takes_back_this_sessions_change_not_another_visitors(tiny_dataset):
    add_correction(tiny_dataset, FIRST, "squares", author="alice")
    add_correction(tiny_dataset, SECOND, None, author="bob")
    undo_last(tiny_dataset, author="alice")
    assert load_corrections(tiny_dataset).mapping == {SECOND: None}
    undo_last(tiny_dataset, author="alice")  # alice has nothing left to undo: nothing happens
    assert load_corrections(tiny_dataset).mapping == {SECOND: None}
    undo_last(tiny_dataset, author="bob")
    assert load_corrections(tiny_dataset).mapping == {}


def test_undo_brings_back_the_word_said_before(tiny_dataset):
    add_correction(tiny_dataset, FIRST, "squares", author="alice")
    add_correction(tiny_dataset, FIRST, None, author="alice")
    undo_last(tiny_dataset, author="alice")
    assert load_corrections(tiny_dataset).mapping == {FIRST: "squares"}


# --- A bounded history --------------------------------------------------------------------


def test_many_changes_keep_the_file_bounded_and_the_current_state(tiny_dataset, monkeypatch):
    limit = 40  # the real limit's 1,000 changes take half a minute of fsyncs
    monkeypatch.setattr(corrections, "HISTORY_LIMIT", limit)
    photos = sorted(p.relative_to(tiny_dataset).as_posix() for p in tiny_dataset.glob("*/*/*.jpg"))
    expected: dict[str, str | None] = {}
    for n in range(limit + 30):
        photo = photos[n % len(photos)]
        label = None if n % 3 else ("squares" if "/circles/" in photo else "circles")
        add_correction(tiny_dataset, photo, label, author="alice")
        expected[photo] = label
    loaded = load_corrections(tiny_dataset)
    assert loaded.mapping == expected
    assert len(loaded.history) == limit
    assert len(json.loads(corrections_file(tiny_dataset).read_text())["history"]) == limit

    add_correction(tiny_dataset, FIRST, "squares" if expected[FIRST] is None else None, author="alice")
    undo_last(tiny_dataset, author="alice")  # within the kept history: back to the state before
    assert load_corrections(tiny_dataset).mapping == expected


def test_a_long_history_from_before_is_compacted_on_the_next_change(tiny_dataset):
    history = [{"file": FIRST, "label": None, "time": float(n)} for n in range(5 * HISTORY_LIMIT)]
    history.append({"file": SECOND, "label": "squares", "time": 1e9})
    write_raw(tiny_dataset, json.dumps({"history": history}))
    add_correction(tiny_dataset, THIRD, "circles")
    loaded = load_corrections(tiny_dataset)
    assert loaded.mapping == {FIRST: None, SECOND: "squares", THIRD: "circles"}
    assert len(loaded.history) <= HISTORY_LIMIT
    started = time.perf_counter()
    add_correction(tiny_dataset, THIRD, None)
    assert time.perf_counter() - started < 1.0


# --- The pages -----------------------------------------------------------------------------


@pytest.fixture
def opened(tiny_dataset, monkeypatch):
    """tiny_dataset imported, so that a new session opens it."""
    monkeypatch.delenv("PAWLAB_ALLOW_LOCAL_PATHS", raising=False)
    root = get_settings().datasets_dir / "tiny"
    shutil.copytree(tiny_dataset, root)
    (root / COMPLETE_MARKER).write_text("{}\n")
    return root.resolve()


def page_text(at: AppTest) -> str:
    return "\n".join(
        e.value for kind in ("markdown", "caption", "info", "error", "warning", "success") for e in at.get(kind)
    )


def test_the_dataset_page_says_the_file_is_damaged_instead_of_crashing(opened):
    write_raw(opened, json.dumps({"history": [{"file": FIRST, "label": ["squares"]}, None]}))
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    at.switch_page("pages/dataset.py").run()
    assert not at.exception, at.exception
    assert "could not be read" in page_text(at)

    write_raw(opened, json.dumps({"history": None}))
    at.run()
    assert not at.exception, at.exception
    assert "damaged" in page_text(at)


def bar_script(root: str) -> None:
    from pathlib import Path

    from pages._common.corrections import corrections_bar

    corrections_bar(Path(root))


def bar(root) -> AppTest:
    return AppTest.from_function(bar_script, args=(str(root),), default_timeout=30).run()


def test_the_undo_button_undoes_this_sessions_change_only(opened):
    alice, bob = bar(opened), bar(opened)
    alice_id = alice.session_state[corrections_author_key()]
    bob_id = bob.session_state[corrections_author_key()]
    assert alice_id != bob_id
    add_correction(opened, FIRST, "squares", author=alice_id)
    add_correction(opened, SECOND, None, author=bob_id)
    alice.run()
    [undo] = [b for b in alice.button if b.label == "Undo the last correction"]
    assert FIRST in (undo.help or "")
    undo.click().run()
    assert not alice.exception
    assert load_corrections(opened).mapping == {SECOND: None}  # bob's stays
    alice.run()
    assert next(b for b in alice.button if b.label == "Undo the last correction").disabled


def test_the_bar_shows_the_damage_sentence(opened):
    write_raw(opened, "{ not json")
    at = bar(opened)
    assert not at.exception
    assert any("damaged" in w.value for w in at.warning)

    add_correction(opened, FIRST, None)  # keeps the damaged file aside
    at.run()
    assert not at.warning
    assert any(kept_aside(opened)[0].name in c.value for c in at.caption)


def corrections_author_key() -> str:
    from pages._common.corrections import AUTHOR_KEY

    return AUTHOR_KEY
