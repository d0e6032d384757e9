"""This session's dataset, on every page (AppTest): one browser session's choice is
its own, a new session opens what is there, and a value the browser sends is
checked on the server before it becomes a path.

Each AppTest is its own browser session in this one server process, as two
visitors of a shared PawLab server are.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import REPO, make_separable_dataset
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Selectbox

from core.config import get_settings
from core.data.acquire import COMPLETE_MARKER
from core.data.workspace import recent_uses

TIMEOUT = 60


def installed(source: Path, name: str) -> Path:
    """``source`` as the Dataset page's download or upload leaves it in PAWLAB_HOME/datasets."""
    root = get_settings().datasets_dir / name
    shutil.copytree(source, root)
    (root / COMPLETE_MARKER).write_text("{}\n")
    return root.resolve()


@pytest.fixture
def shapes_and_fruit(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """Three datasets on a shared server; "animals" is listed first, the select box's first option."""
    monkeypatch.delenv("PAWLAB_ALLOW_LOCAL_PATHS", raising=False)
    animals = make_separable_dataset(tmp_path / "src_animals", classes=("cats", "dogs"))
    shapes = make_separable_dataset(tmp_path / "src_shapes")
    fruit = make_separable_dataset(tmp_path / "src_fruit", classes=("apples", "pears"))
    installed(animals, "animals")
    return installed(shapes, "shapes"), installed(fruit, "fruit")


def open_page(page: str, at: AppTest | None = None) -> AppTest:
    """A new browser session (or ``at``'s) on ``page``."""
    if at is None:
        at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT).run()
    at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


def texts(at: AppTest) -> str:
    return "\n".join(e.value for kind in (at.markdown, at.caption, at.info, at.error, at.warning) for e in kind)


def train_dataset_line(at: AppTest) -> str:
    lines = [m.value for m in at.markdown if m.value.startswith("Dataset **")]
    assert lines, f"the Train page shows no dataset:\n{texts(at)}"
    return lines[0]


def test_two_sessions_each_train_on_their_own_choice(shapes_and_fruit):
    shapes, fruit = shapes_and_fruit
    alice, bob = open_page("dataset"), open_page("dataset")

    alice.selectbox(key="dataset_choice").set_value(str(shapes)).run()
    bob.selectbox(key="dataset_choice").set_value(str(fruit)).run()  # the last choice on the server
    assert "`circles`, `squares`" in texts(alice) and "`apples`, `pears`" in texts(bob)

    open_page("train", alice)
    open_page("train", bob)
    assert train_dataset_line(alice).startswith("Dataset **shapes**")
    assert train_dataset_line(bob).startswith("Dataset **fruit**")
    assert "circles, squares" in train_dataset_line(alice)
    open_page("home", alice)
    assert any("shapes" in m.value for m in alice.markdown) and not any("fruit" in m.value for m in alice.markdown)


def test_a_dataset_that_is_there_before_any_choice_is_the_one_used(shapes_and_fruit):
    """After `python -m core fetch`, or on a new server with datasets: nothing chosen yet."""
    shapes, _fruit = shapes_and_fruit
    for other in get_settings().datasets_dir.iterdir():
        if other != shapes:  # a single dataset: it could not even be chosen again in the select box
            shutil.rmtree(other)
    assert recent_uses() == []

    at = open_page("dataset")
    assert at.selectbox(key="dataset_choice").value == str(shapes)
    assert "**Classes:** `circles`, `squares`" in texts(at)  # not only "Add a dataset"

    train = open_page("train")  # another new session, straight to Train
    assert train_dataset_line(train).startswith("Dataset **shapes**")
    assert [b for b in train.button if b.label == "Start training"]


def test_a_new_session_opens_the_most_recently_used_dataset(shapes_and_fruit):
    shapes, _fruit = shapes_and_fruit
    first = open_page("dataset")
    first.selectbox(key="dataset_choice").set_value(str(shapes)).run()

    later = open_page("train")
    assert train_dataset_line(later).startswith("Dataset **shapes**")


@pytest.fixture
def forged_select_box(monkeypatch):
    """Make the test client send ``value`` for a select box, whatever its options:
    what a forged browser can do (Streamlit hands an unknown string through)."""
    forged: dict[str, str] = {}
    honest = Selectbox._widget_state

    def widget_state(self):
        state = honest.fget(self)
        if self.key in forged:
            state.string_value = forged[self.key]
        return state

    monkeypatch.setattr(Selectbox, "_widget_state", property(widget_state))
    return forged


def test_a_forged_select_box_value_never_becomes_the_sessions_dataset(shapes_and_fruit, tmp_path, forged_select_box):
    _shapes, _fruit = shapes_and_fruit
    outside = make_separable_dataset(tmp_path / "server_files", classes=("secret", "private"))
    at = open_page("dataset")
    before = at.selectbox(key="dataset_choice").value

    forged_select_box["dataset_choice"] = str(outside)
    at.run()
    forged_select_box.clear()

    assert not at.exception
    assert at.session_state["dataset_root"] == before  # the session keeps what it had
    assert any("not one of PawLab's datasets" in e.value for e in at.error)
    assert "secret" not in texts(at)
    assert str(outside) not in [str(use.path) for use in recent_uses()]  # nor does the server
    open_page("train", at)
    assert train_dataset_line(at).startswith(f"Dataset **{Path(before).name}**")
    assert "secret" not in texts(at)


def test_a_forged_name_with_dots_is_refused_too(shapes_and_fruit, forged_select_box):
    _shapes, fruit = shapes_and_fruit
    at = open_page("dataset")
    at.selectbox(key="dataset_choice").set_value(str(fruit)).run()
    before = at.session_state["dataset_root"]
    forged_select_box["dataset_choice"] = "../../etc"
    at.run()

    assert not at.exception
    assert at.error
    assert at.session_state["dataset_root"] == before
