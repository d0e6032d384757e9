"""A session's dataset is its own; a new session opens the most recently used one;
a value from the browser is checked on the server."""

from __future__ import annotations

import json

import pytest
from conftest import make_separable_dataset

from core.config import get_settings
from core.data.acquire import COMPLETE_MARKER
from core.data.dataset import DatasetError
from core.data.workspace import (
    DATASET_KEY,
    choose_dataset,
    default_dataset,
    list_datasets,
    recent_uses,
    remember_use,
    resolve_choice,
    session_dataset,
)


def installed(name: str, complete: bool = True):
    """A dataset as acquire.py leaves it under PAWLAB_HOME/datasets."""
    root = make_separable_dataset(get_settings().datasets_dir / name, per_class=2, size=16)
    if complete:
        (root / COMPLETE_MARKER).write_text("{}\n")
    return root.resolve()


@pytest.fixture
def no_local_paths(monkeypatch):
    monkeypatch.delenv("PAWLAB_ALLOW_LOCAL_PATHS", raising=False)


@pytest.fixture
def local_paths(monkeypatch):
    monkeypatch.setenv("PAWLAB_ALLOW_LOCAL_PATHS", "1")


def test_two_sessions_keep_their_own_dataset(no_local_paths):
    cats, pets = installed("cats"), installed("pets")
    alice, bob = {}, {}
    assert choose_dataset(alice, str(cats)) == cats
    assert choose_dataset(bob, "pets") == pets  # a name works as well as a path
    assert session_dataset(alice) == cats and alice[DATASET_KEY] == str(cats)
    assert session_dataset(bob) == pets
    choose_dataset(alice, str(cats))  # alice uses hers again: bob's stays
    assert session_dataset(bob) == pets


def test_a_new_session_opens_the_most_recently_used_dataset(no_local_paths):
    first, second = installed("a_first"), installed("b_second")
    assert default_dataset() == first  # nothing used yet: the first listed
    assert session_dataset({}) == first
    choose_dataset({}, str(second))
    assert default_dataset() == second
    newcomer = {}
    assert session_dataset(newcomer) == second and newcomer[DATASET_KEY] == str(second)
    choose_dataset({}, str(first))
    assert session_dataset({}) == first and session_dataset(newcomer) == second
    assert [use.path for use in recent_uses()] == [first, second]
    assert recent_uses()[0].used_at >= recent_uses()[1].used_at > 0


def test_a_session_whose_dataset_is_gone_or_forged_gets_the_default(no_local_paths):
    kept = installed("kept")
    assert session_dataset({DATASET_KEY: "/etc"}) == kept
    assert session_dataset({DATASET_KEY: str(kept.parent / "deleted")}) == kept
    empty = {DATASET_KEY: "/etc"}
    kept.joinpath(COMPLETE_MARKER).unlink()
    assert session_dataset(empty) is None and DATASET_KEY not in empty


def test_list_datasets_shows_local_folders_only_when_allowed(tmp_path, monkeypatch):
    managed = installed("pets")
    installed("half_imported", complete=False)
    local = make_separable_dataset(tmp_path / "local", per_class=2, size=16).resolve()
    monkeypatch.setenv("PAWLAB_ALLOW_LOCAL_PATHS", "1")
    assert choose_dataset({}, str(local)) == local
    assert list_datasets() == [managed, local]
    assert default_dataset() == local
    monkeypatch.delenv("PAWLAB_ALLOW_LOCAL_PATHS")
    assert list_datasets() == [managed]
    assert default_dataset() == managed


@pytest.mark.parametrize("value", ["/etc", "/", "", "   "])
def test_resolve_choice_refuses_folders_outside_the_datasets(no_local_paths, value):
    installed("pets")
    with pytest.raises((DatasetError, PermissionError)) as refusal:
        resolve_choice(value)
    message = str(refusal.value)
    assert message.endswith(".") and "\n" not in message


def test_resolve_choice_refuses_dot_dot(no_local_paths):
    pets = installed("pets")
    for value in (f"{pets}/../pets", "../pets", f"{pets}/train/../../pets"):
        with pytest.raises(DatasetError, match=r"'\.\.'"):
            resolve_choice(value)


def test_resolve_choice_refuses_a_symlink_out_of_the_datasets(no_local_paths, tmp_path):
    outside = make_separable_dataset(tmp_path / "outside", per_class=2, size=16)
    (outside / COMPLETE_MARKER).write_text("{}\n")  # even one that looks complete
    installed("pets")
    link = get_settings().datasets_dir / "sneaky"
    link.symlink_to(outside)
    (get_settings().datasets_dir / "etc").symlink_to("/etc")
    for value in (str(link), "sneaky", "etc"):
        with pytest.raises(PermissionError, match="switched off"):
            resolve_choice(value)
    assert link not in list_datasets() and outside.resolve() not in list_datasets()


def test_resolve_choice_refuses_incomplete_and_nested_folders(no_local_paths):
    pets = installed("pets")
    installed("half", complete=False)
    with pytest.raises(DatasetError, match="no complete dataset named 'half'"):
        resolve_choice("half")
    with pytest.raises(DatasetError, match="inside a dataset"):
        resolve_choice(str(pets / "train"))


def test_local_folder_needs_the_switch(tmp_path, monkeypatch):
    local = make_separable_dataset(tmp_path / "mine" / "wrapped", per_class=2, size=16)
    monkeypatch.delenv("PAWLAB_ALLOW_LOCAL_PATHS", raising=False)
    with pytest.raises(PermissionError, match="PAWLAB_ALLOW_LOCAL_PATHS=1"):
        resolve_choice(str(local))
    with pytest.raises(PermissionError):
        choose_dataset({}, str(local))
    assert recent_uses() == []  # a refused choice is not remembered
    monkeypatch.setenv("PAWLAB_ALLOW_LOCAL_PATHS", "1")
    assert resolve_choice(str(tmp_path / "mine")) == local.resolve()  # wrapper unwrapped
    with pytest.raises(DatasetError, match="no photos"):
        resolve_choice("/etc")


def test_older_workspace_file_still_works(pawlab_home, tmp_path):
    old = make_separable_dataset(tmp_path / "old", per_class=2, size=16)
    pawlab_home.mkdir(parents=True, exist_ok=True)
    (pawlab_home / "workspace.json").write_text(json.dumps({"dataset": str(old)}))
    assert [use.path for use in recent_uses()] == [old]
    newer = make_separable_dataset(tmp_path / "newer", per_class=2, size=16)
    remember_use(newer)
    assert [use.path for use in recent_uses()] == [newer.resolve(), old]


def test_recent_uses_are_bounded(no_local_paths, tmp_path):
    from core.data.workspace import MAX_RECENT

    for index in range(MAX_RECENT + 5):
        remember_use(tmp_path / f"d{index}")
    uses = recent_uses()
    assert len(uses) == MAX_RECENT and uses[0].path == (tmp_path / f"d{MAX_RECENT + 4}").resolve()
