"""A person's own photos in: datasets made in PawLab, and the scan of such folders.

Three shapes in mixed formats (tests/_own_photos.py), not cats and dogs.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image

from core.config import get_settings
from core.data.dataset import DatasetError, scan_dataset
from core.data.maker import (
    UNLABELED_FOLDER,
    add_class,
    add_photos,
    check_class_name,
    is_editable,
    move_photo,
    new_dataset,
    remove_class,
    remove_photo,
    rename_class,
)
from tests._own_photos import shape_photo

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "core", *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def dataset_folder(tmp_path) -> Path:
    """A folder for a dataset, apart from PAWLAB_HOME (which is inside tmp_path)."""
    return tmp_path / "dataset"


@pytest.fixture
def shapes() -> Path:
    return new_dataset("my shapes", ["circle", "square", "stripe"])


# --- The scan ---------------------------------------------------------------------


def test_unlabeled_photos_are_counted_but_never_in_a_split(dataset_folder):
    for shape in ("circle", "square"):
        (dataset_folder / shape).mkdir(parents=True)
        for seed in range(3):
            (dataset_folder / shape / f"{seed}.png").write_bytes(shape_photo(shape, seed, "PNG"))
    (dataset_folder / "Unlabelled").mkdir()
    for seed in range(4):
        (dataset_folder / "Unlabelled" / f"u{seed}.jpg").write_bytes(shape_photo("stripe", seed))
    (dataset_folder / "Unlabelled" / "broken.jpg").write_bytes(b"not a photo")

    info = scan_dataset(dataset_folder)

    assert info.classes == ["circle", "square"]
    assert len(info.unlabeled) == 4
    assert all("Unlabelled" not in sample.path for samples in info.splits.values() for sample in samples)
    assert [name for name, _ in info.skipped] == ["Unlabelled/broken.jpg"]
    assert info.summary()["unlabeled"] == 4


def test_unlabeled_folder_next_to_split_folders_is_not_an_unused_folder(dataset_folder):
    for split in ("train", "validation"):
        for shape in ("circle", "square"):
            (dataset_folder / split / shape).mkdir(parents=True)
            (dataset_folder / split / shape / "a.jpg").write_bytes(shape_photo(shape, hash(split) % 100))
    (dataset_folder / "unlabeled").mkdir()
    (dataset_folder / "unlabeled" / "x.jpg").write_bytes(shape_photo("stripe", 1))

    info = scan_dataset(dataset_folder)

    assert len(info.unlabeled) == 1 and info.skipped == []


def test_a_class_folder_with_a_line_break_is_refused_with_its_name(dataset_folder):
    # A class "dogs\ncats" would be two lines of labels.txt for one output.
    for name in ("circle", "dogs\ncats"):
        (dataset_folder / name).mkdir(parents=True)
        (dataset_folder / name / "a.jpg").write_bytes(shape_photo("circle", len(name)))

    with pytest.raises(DatasetError, match=r"'dogs\\ncats'.*control character"):
        scan_dataset(dataset_folder)


def test_a_file_name_with_a_control_character_is_skipped_with_the_reason(dataset_folder):
    for shape in ("circle", "square"):
        (dataset_folder / shape).mkdir(parents=True)
        (dataset_folder / shape / "ok.jpg").write_bytes(shape_photo(shape, 0))
    (dataset_folder / "circle" / "bad\tname.jpg").write_bytes(shape_photo("circle", 5))

    info = scan_dataset(dataset_folder)

    assert info.skipped == [
        ("circle/bad\tname.jpg", "its name cannot be used: it holds a control character (a line break, a tab...)")
    ]


def test_copies_share_a_content_key_and_an_added_photo_costs_one_decode(dataset_folder, monkeypatch):
    from core.data import dataset

    for shape in ("circle", "square"):
        (dataset_folder / shape).mkdir(parents=True)
        for seed in range(5):
            (dataset_folder / shape / f"{seed}.jpg").write_bytes(shape_photo(shape, seed))
    (dataset_folder / "square" / "copy.jpg").write_bytes((dataset_folder / "circle" / "0.jpg").read_bytes())
    first = scan_dataset(dataset_folder)
    keys = first.content_keys
    assert keys[str(dataset_folder / "square" / "copy.jpg")] == keys[str(dataset_folder / "circle" / "0.jpg")]
    assert len(set(keys.values())) == 10

    decoded = []
    real_check = dataset.check_image
    monkeypatch.setattr(dataset, "check_image", lambda path: decoded.append(path) or real_check(path))
    (dataset_folder / "circle" / "new.png").write_bytes(shape_photo("circle", 99, "PNG"))
    again = scan_dataset(dataset_folder)

    assert decoded == [dataset_folder / "circle" / "new.png"]
    assert again.num_images == first.num_images + 1


# --- Class names --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("?!...", "a letter or a digit"),
        ("cats\ndogs", "control character"),
        ("a/b", "path separator"),
        ("..\\x", "path separator"),
        ("train", "differently"),
        ("unlabeled", "differently"),
        ("x" * 65, "at most 64"),
    ],
)
def test_class_names_that_cannot_be_one_are_refused_with_why(name, why):
    with pytest.raises(DatasetError, match=why):
        check_class_name(name)


def test_a_class_name_is_trimmed_and_may_hold_spaces_and_accents():
    assert check_class_name("  Blue tit é ") == "Blue tit é"


# --- Making a dataset --------------------------------------------------------------


def test_a_new_dataset_is_editable_and_scans_with_its_classes(shapes):
    assert shapes == (get_settings().datasets_dir / "my_shapes").resolve()
    assert is_editable(shapes)
    with pytest.raises(FileExistsError):
        new_dataset("my shapes", ["a", "b"])
    with pytest.raises(DatasetError, match="named twice"):
        new_dataset("other", ["Cat", "cat"])
    assert not (get_settings().datasets_dir / "other").exists()


def test_photos_are_checked_on_arrival_and_a_copy_is_refused_with_where_it_is(shapes):
    circle = shape_photo("circle", 1)
    report = add_photos(
        shapes,
        "circle",
        [
            ("IMG 0001.jpg", circle),
            ("snap.jpg", shape_photo("circle", 2, "PNG")),  # a PNG named .jpg
            ("again.jpg", circle),
            ("notes.txt", b"hello"),
            ("cut.jpg", circle[: len(circle) // 2]),
        ],
    )

    assert len(report.added) == 2
    assert report.added[0].startswith("circle/IMG_0001_") and report.added[0].endswith(".jpg")
    assert report.added[1].endswith(".png")
    reasons = {entry.name: entry.reason for entry in report.skipped}
    assert reasons["again.jpg"] == f"it is already in the dataset, as {report.added[0]}"
    assert "unsupported file type" in reasons["notes.txt"]
    assert "truncated" in reasons["cut.jpg"] or "decoded" in reasons["cut.jpg"]

    # The same photo dropped on another class later is refused too, naming where it is.
    later = add_photos(shapes, "square", [("dup.jpg", circle)])
    assert later.added == [] and report.added[0] in later.skipped[0].reason
    info = scan_dataset(shapes)
    assert info.counts()["all"] == {"circle": 2, "square": 0, "stripe": 0}


def test_a_drop_over_the_quota_is_refused_whole_and_adds_nothing(shapes, monkeypatch):
    monkeypatch.setenv("PAWLAB_MAX_DROP_PHOTOS", "3")
    photos = [(f"{n}.jpg", shape_photo("square", n)) for n in range(4)]

    with pytest.raises(DatasetError, match="at most 3 at a time"):
        add_photos(shapes, "square", photos)
    assert list((shapes / "square").iterdir()) == []


def test_rename_and_remove_classes_lose_no_photo(shapes):
    add_photos(shapes, "stripe", [(f"{n}.jpg", shape_photo("stripe", n)) for n in range(3)])
    assert rename_class(shapes, "stripe", "Stripes") == "Stripes"
    add_class(shapes, "triangle")
    with pytest.raises(DatasetError, match="named twice"):
        rename_class(shapes, "circle", "stripes")

    moved = remove_class(shapes, "Stripes")

    assert len(moved) == 3 and all(path.startswith(f"{UNLABELED_FOLDER}/") for path in moved)
    info = scan_dataset(shapes)
    assert info.classes == ["circle", "square", "triangle"] and len(info.unlabeled) == 3

    labelled = move_photo(shapes, moved[0], "triangle")
    assert labelled.startswith("triangle/") and (shapes / labelled).is_file()
    remove_photo(shapes, moved[1])
    info = scan_dataset(shapes)
    assert info.counts()["all"]["triangle"] == 1 and len(info.unlabeled) == 1


@pytest.mark.parametrize("relative", ["../x.jpg", "/etc/passwd", "circle/../../x.jpg", "circle/none.jpg"])
def test_a_photo_path_from_outside_is_refused(shapes, relative):
    with pytest.raises(DatasetError):
        move_photo(shapes, relative, "square")


def test_datasets_pawlab_did_not_make_stay_as_they_are(tiny_dataset):
    from core.data.acquire import COMPLETE_MARKER

    imported = get_settings().datasets_dir / "tiny"
    imported.parent.mkdir(parents=True, exist_ok=True)
    import shutil

    shutil.copytree(tiny_dataset, imported)
    (imported / COMPLETE_MARKER).write_text('{"source": "upload:tiny.zip"}\n')

    with pytest.raises(DatasetError, match="not made in PawLab"):
        add_photos(imported, "circles", [("a.jpg", shape_photo("circle", 1))])
    with pytest.raises(DatasetError, match="not made in PawLab"):
        remove_class(imported, "circles")


def test_sessions_adding_at_once_keep_every_photo(shapes):
    errors = []

    def add(start: int) -> None:
        try:
            add_photos(shapes, "square", [(f"{n}.jpg", shape_photo("square", n)) for n in range(start, start + 5)])
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=add, args=(start,)) for start in (0, 100, 200, 300)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(list((shapes / "square").iterdir())) == 20


# --- The command line ------------------------------------------------------------


def test_cli_makes_a_dataset_and_adds_photos_with_reasons(tmp_path):
    for n in range(3):
        Image.open(io.BytesIO(shape_photo("circle", n))).save(tmp_path / f"c{n}.jpg")
    (tmp_path / "c0-copy.jpg").write_bytes((tmp_path / "c0.jpg").read_bytes())

    made = run_cli("dataset", "new", "cli shapes", "--classes", "circle,square")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["classes"] == ["circle", "square"]

    added = run_cli(
        "dataset", "add", "cli shapes", "--class", "circle", *(str(p) for p in sorted(tmp_path.glob("*.jpg")))
    )
    assert added.returncode == 0, added.stderr
    report = json.loads(added.stdout.strip().splitlines()[-1])
    assert len(report["added"]) == 3
    assert report["skipped"][0]["name"] in ("c0-copy.jpg", "c0.jpg") and "already" in report["skipped"][0]["reason"]

    bad = run_cli("dataset", "new", "x", "--classes", "ok,a/b")
    assert bad.returncode == 2 and "path separator" in json.loads(bad.stdout)["error"]
    missing = run_cli("dataset", "add", "nope", "--class", "circle", str(tmp_path / "c1.jpg"))
    assert missing.returncode == 2 and "error" in json.loads(missing.stdout)


def test_a_correction_gives_an_unlabelled_photo_of_a_read_only_dataset_its_class(dataset_folder):
    from core.data.corrections import add_correction
    from core.data.splits import split_dataset

    for split in ("train", "validation"):
        for shape in ("circle", "square"):
            (dataset_folder / split / shape).mkdir(parents=True)
            for seed in range(4):
                (dataset_folder / split / shape / f"{seed}.jpg").write_bytes(shape_photo(shape, seed + len(split)))
    (dataset_folder / "unlabeled").mkdir()
    for seed in range(3):
        (dataset_folder / "unlabeled" / f"u{seed}.png").write_bytes(shape_photo("circle", 50 + seed, "PNG"))

    add_correction(dataset_folder, dataset_folder / "unlabeled" / "u0.png", "circle")
    add_correction(dataset_folder, dataset_folder / "unlabeled" / "u1.png", None)
    info, splits = split_dataset(dataset_folder)

    labelled = {Path(s.path).name: s.class_name for s in splits.train if "unlabeled" in s.path}
    assert labelled == {"u0.png": "circle"}
    assert [Path(path).name for path in info.unlabeled] == ["u2.png"]
    assert ("unlabeled/u1.png", "excluded by a correction") in info.skipped or any(
        name == "unlabeled/u1.png" for name, _ in info.skipped
    )
