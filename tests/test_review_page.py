"""The Review page (Streamlit AppTest): a saved doctor report, its ranked photos, and
corrections (relabel, exclude, undo, export) that never touch the user's files.

The doctor runs once per module, for real (ImageNet features of 37 small
photos: seconds), on a dataset with two planted problems: a circle filed under
squares, and a copy of a training photo among the validation photos (a leak).
Each test gets its own copy of the dataset and of the saved report.
"""

from __future__ import annotations

import errno
import io
import json
import shutil
import zipfile
from pathlib import Path

import pytest
from conftest import REPO, make_separable_dataset
from streamlit.testing.v1 import AppTest

from core.config import get_settings
from core.data import corrections
from core.data.acquire import COMPLETE_MARKER
from core.fileio import FileLock, write_json
from core.review import runner
from core.review.runner import review_dir, run_and_save

PLANTED = "train/squares/planted.jpg"  # a circle, filed under squares
COPY = "validation/circles/copy.jpg"  # a copy of train/circles/circles.train.1.jpg
LEAKS_TAB = ":material/call_split: Leaks across splits"
OUTLIERS_TAB = ":material/scatter_plot: Unusual photos"


def planted_dataset(root: Path) -> Path:
    make_separable_dataset(root, per_class=12)
    shutil.move(root / "train" / "circles" / "circles.train.0.jpg", root / PLANTED)
    shutil.copy(root / "train" / "circles" / "circles.train.1.jpg", root / COPY)
    return root


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory, keras_home) -> tuple[Path, dict]:
    """The planted dataset and the doctor's report on it, made once."""
    work = tmp_path_factory.mktemp("reviewed")
    source = planted_dataset(work / "shapes")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PAWLAB_HOME", str(work / "home"))
        patch.setenv("KERAS_HOME", str(keras_home))
        report = run_and_save(source)
    return source.resolve(), report.to_dict()


def save_report(root: Path, report: dict, reviewed_root: Path) -> None:
    """``report`` (made on ``reviewed_root``) as the doctor would have saved it for ``root``."""
    text = json.dumps(report).replace(json.dumps(str(reviewed_root))[1:-1], json.dumps(str(root))[1:-1])
    review_dir(root).mkdir(parents=True, exist_ok=True)
    write_json(review_dir(root) / runner.REPORT_FILE, json.loads(text))


@pytest.fixture
def dataset(reviewed, monkeypatch) -> Path:
    """This test's copy, imported (a new session opens it), with the report saved."""
    source, report = reviewed
    monkeypatch.delenv("PAWLAB_ALLOW_LOCAL_PATHS", raising=False)
    root = get_settings().datasets_dir / "shapes"
    shutil.copytree(source, root)
    (root / COMPLETE_MARKER).write_text("{}\n")
    save_report(root.resolve(), report, source)
    return root.resolve()


def open_page(page: str = "pages/review.py", tab: str | None = None) -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    at.switch_page(page)
    if tab:
        at.session_state["review_tab"] = tab
    at.run()
    assert not at.exception, at.exception
    return at


def texts(at: AppTest) -> str:
    return "\n".join(
        e.value for kind in ("markdown", "caption", "info", "error", "warning", "success") for e in at.get(kind)
    )


def button(at: AppTest, label: str, nth: int = 0):
    matches = [b for b in at.button if b.label == label]
    assert len(matches) > nth, f"no button {label!r} in {[b.label for b in at.button]}"
    return matches[nth]


def badges(at: AppTest) -> list[str]:
    return [b.proto.body for b in at.get("markdown") if "badge" in b.proto.body] + [
        str(b.proto) for b in at.get("badge")
    ]


def test_the_page_shows_the_saved_report(dataset, reviewed):
    _, report = reviewed
    at = open_page()

    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Suspected label errors"] == str(len(report["label_issues"]))
    assert metrics["Leaks across splits"] == "1" and metrics["Duplicate groups"] == "1"
    assert metrics["Unusual photos"] == str(sum(o["flagged"] for o in report["outliers"]))
    # The planted mislabel heads the label issues, with what the model suggests.
    assert report["label_issues"][0]["file"].endswith(PLANTED)
    assert "**squares** → circles?" in texts(at)
    assert any(c.value.startswith("planted.jpg · train · label quality 0.") for c in at.caption)
    assert "makes the test score a lie" in "\n".join(w.value for w in at.warning)
    assert any("Last review just now" in c.value for c in at.caption)
    assert next(b.label for b in at.button) == "Review again"
    balance = json.loads(next(c for c in at.get("plotly_chart") if "review_balance" in c.proto.id).proto.spec)
    assert {t["name"]: t["y"] for t in balance["data"]} == {
        split: [counts["circles"], counts["squares"]] for split, counts in report["class_balance"].items()
    }
    assert len(at.image) == len(report["label_issues"])  # only the open tab is drawn

    at = open_page(tab=LEAKS_TAB)  # the copy, side by side with its original
    assert "2 photos in" in texts(at) and "leak" in texts(at)
    assert len(at.image) == 2


def test_relabel_exclude_and_undo(dataset):
    at = open_page()
    button(at, "Move to circles").click().run()

    assert not at.exception
    assert corrections.load_corrections(dataset).mapping == {PLANTED: "circles"}
    assert (dataset / PLANTED).is_file()  # the user's file stays where it was
    assert "1 correction: 1 relabelled, 0 excluded" in texts(at)
    assert any("Moved to circles" in b for b in badges(at))  # shown on the photo, not gone
    assert not [b for b in at.button if b.label == "Move to circles"]
    assert any("planted.jpg moved to circles" in t.value for t in at.toast)

    at.session_state["review_tab"] = LEAKS_TAB
    at.run()
    button(at, "Exclude", nth=1).click().run()  # the copy (the group lists it second)
    mapping = corrections.load_corrections(dataset).mapping
    assert mapping[COPY] is None and len(mapping) == 2
    assert "2 corrections: 1 relabelled, 1 excluded" in texts(at)
    assert any("Excluded" in b for b in badges(at))

    button(at, "Undo the last correction").click().run()
    assert corrections.load_corrections(dataset).mapping == {PLANTED: "circles"}
    assert "1 correction: 1 relabelled, 0 excluded" in texts(at)
    assert not any("Excluded" in b for b in badges(at))


def test_counts_show_on_the_dataset_and_train_pages(dataset):
    corrections.add_correction(dataset, PLANTED, "circles")
    corrections.add_correction(dataset, COPY, None)

    dataset_page = open_page("pages/dataset.py")
    assert "2 corrections: 1 relabelled, 1 excluded" in texts(dataset_page)
    assert [m.value for m in dataset_page.metric][1] == "36"  # 37 files, one excluded
    train_page = open_page("pages/train.py")
    assert "2 corrections: 1 relabelled, 1 excluded" in texts(train_page)


def test_export_downloads_the_corrected_dataset_as_a_zip(dataset, deferred_downloads):
    corrections.add_correction(dataset, PLANTED, "circles")
    corrections.add_correction(dataset, COPY, None)
    at = open_page()
    button(at, "Export the corrected dataset").click().run()

    assert not at.exception and not at.error
    assert next(d.label for d in at.get("download_button")).startswith("Download shapes-corrected.zip (")
    names = zipfile.ZipFile(io.BytesIO(deferred_downloads["shapes-corrected.zip"]())).namelist()
    assert "train/circles/planted.jpg" in names
    assert not [n for n in names if n.endswith("copy.jpg")] and len(names) == 36
    assert (dataset / COPY).is_file()


def forged_report(dataset: Path, reviewed, **issue) -> None:
    source, report = reviewed
    report = json.loads(json.dumps(report))
    report["label_issues"][0].update(issue)
    save_report(dataset, report, source)


def test_a_forged_file_or_class_is_refused_with_a_message(dataset, reviewed, tmp_path):
    outside = tmp_path / "secret.jpg"
    shutil.copy(dataset / PLANTED, outside)
    forged_report(dataset, reviewed, file=str(outside))
    at = open_page()
    button(at, "Exclude").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == ["secret.jpg is not a photo of this dataset."]
    assert corrections.load_corrections(dataset).mapping == {}

    forged_report(dataset, reviewed, suggested="[owls](http://evil.example)")
    at = open_page()
    button(at, "Move to \\[owls\\](http\\://evil.example)").click().run()
    assert not at.exception
    assert any("is not a class of this dataset" in e.value and "\\[owls\\]" in e.value for e in at.error)
    assert corrections.load_corrections(dataset).mapping == {}


def test_a_read_only_home_is_one_sentence(dataset, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(get_settings().home))

    monkeypatch.setattr(corrections, "add_correction", read_only)
    at = open_page()
    button(at, "Move to circles").click().run()
    assert not at.exception
    [error] = [e.value for e in at.error]
    assert error.startswith("Could not save the correction: the folder PawLab writes to is read-only")


def test_review_progress_then_report(tiny_dataset, monkeypatch):
    monkeypatch.delenv("PAWLAB_ALLOW_LOCAL_PATHS", raising=False)
    root = get_settings().datasets_dir / "tiny"
    shutil.copytree(tiny_dataset, root)
    (root / COMPLETE_MARKER).write_text("{}\n")
    started = []
    monkeypatch.setattr(runner, "start_review", lambda path: started.append(Path(path)) or True)

    at = open_page()
    assert not at.metric and "never" not in texts(at)
    button(at, "Review this dataset").click().run()
    assert started == [root.resolve()]
    assert "Starting the data doctor" in at.progress[0].proto.text  # before the child takes over

    folder = review_dir(root)
    with FileLock(folder / runner.LOCK_FILE, timeout=0):  # the doctor at work
        write_json(folder / runner.PROGRESS_FILE, {"stage": "features", "done": 12, "total": 30})
        at.run()
        assert at.progress[0].value == 40 and "12 of 30 photos" in at.progress[0].proto.text
        assert not [b for b in at.button if b.key == "review_start"]
    (folder / runner.ERROR_FILE).write_text("The review failed: out of memory [see](http://x)\n")
    at.run()
    assert any("out of memory \\[see\\]" in e.value and "log.txt" in e.value for e in at.error)
    assert button(at, "Review this dataset")
