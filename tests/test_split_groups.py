"""Duplicates go to one split together (issue 19, part 4).

A pool of three classes (no split folders) with exact copies of some photos
under other names, JPEG and PNG, one copy filed under another class: the
file-name ranks alone would scatter them. PawLab's split keeps each group in
one split, stays stratified, and is the same on every run and in any folder;
the data doctor then finds no leak in it. Split folders the person made are
used as they are, so a copy across them is still reported, with the advice.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, make_separable_dataset
from PIL import Image
from streamlit.testing.v1 import AppTest

from core.config import get_settings
from core.data.acquire import COMPLETE_MARKER
from core.data.splits import (
    NOT_GROUPED,
    REPORT_FILE,
    NearDuplicates,
    Splits,
    review_dir,
    split_dataset,
)
from core.defaults import TEST_FRACTION, VALIDATION_FRACTION
from core.fileio import write_json
from core.review.doctor import LEAK_ADVICE, diagnose
from core.runs.recipes import TrainConfig
from core.runs.run_split import run_splits, split_for
from core.runs.store import read_split, write_split

CLASSES = ("circles", "squares", "stars")
PER_CLASS = 20
COPIED = 4  # photos of each class with copies: the first has two, the others one
THUMB_PX = 12  # stand-in embeddings: the photo shrunk to this many pixels a side


def pool_with_copies(root: Path) -> tuple[Path, list[set[str]]]:
    """The pool and its groups of identical files (absolute paths)."""
    make_separable_dataset(root, classes=CLASSES, splits=("",), per_class=PER_CLASS)
    groups = []
    for name in CLASSES:
        folder = root / name
        for photo in sorted(folder.glob("*.jpg"))[:3]:  # some PNGs among the JPEGs
            with Image.open(photo) as image:
                image.save(photo.with_suffix(".png"))
            photo.unlink()
        for index, photo in enumerate(sorted(folder.iterdir())[:COPIED]):
            group = {str(photo.resolve())}
            for n in range(2 if index == 0 else 1):
                copy = folder / f"again-{n}-{photo.name}"
                shutil.copyfile(photo, copy)
                group.add(str(copy.resolve()))
            groups.append(group)
    # The same bytes in two class folders (one of them is mislabelled): still one photo.
    photo = sorted((root / "circles").glob("*.jpg"))[-1]
    shutil.copyfile(photo, root / "squares" / "filed-twice.jpg")
    groups.append({str(photo.resolve()), str((root / "squares" / "filed-twice.jpg").resolve())})
    return root, groups


def add_near_copies(root: Path) -> set[tuple[str, str]]:
    """A re-encoded, slightly smaller copy of one photo per class: not the same bytes,
    so only the doctor's near-duplicate groups can keep it with its original."""
    pairs = set()
    for name in CLASSES:
        photo = root / name / f"{name}.all.{PER_CLASS - 1}.jpg"
        copy = photo.with_name(f"smaller-{photo.name}")
        with Image.open(photo) as image:
            image.resize((image.width * 9 // 10, image.height * 9 // 10)).save(copy, quality=80)
        pairs.add((str(photo.resolve()), str(copy.resolve())))
    return pairs


def save_report(root: Path, report: dict) -> None:
    review_dir(root).mkdir(parents=True, exist_ok=True)
    write_json(review_dir(root) / REPORT_FILE, report)


def save_report_made_elsewhere(root: Path, report: dict, reviewed_root: Path) -> None:
    """``report`` (made on ``reviewed_root``) as the doctor would have saved it for ``root``."""
    text = json.dumps(report).replace(json.dumps(str(reviewed_root))[1:-1], json.dumps(str(root))[1:-1])
    save_report(root, json.loads(text))


def split_of(splits: Splits) -> dict[str, str]:
    return {sample.path: str(split) for split, samples in splits.as_dict().items() for sample in samples}


def class_sizes(splits: Splits) -> dict[str, int]:
    return {name: sum(counts[name] for counts in splits.counts().values()) for name in splits.classes}


@pytest.fixture
def pool(tmp_path) -> tuple[Path, list[set[str]]]:
    return pool_with_copies(tmp_path / "pool")


def test_each_group_of_copies_is_in_one_split(pool):
    root, groups = pool
    _, splits = split_dataset(root)
    where = split_of(splits)
    assert all(path in where for group in groups for path in group)
    for group in groups:
        assert len({where[path] for path in group}) == 1, sorted(Path(path).name for path in group)
    assert "exact duplicates only" in splits.grouping


def test_the_split_stays_stratified_within_a_photo_or_two(pool):
    root, _ = pool
    _, splits = split_dataset(root)
    counts, sizes = splits.counts(), class_sizes(splits)
    for name, size in sizes.items():
        assert abs(counts["test"][name] - size * TEST_FRACTION) <= 2, (name, counts)
        assert abs(counts["validation"][name] - size * VALIDATION_FRACTION) <= 2, (name, counts)


def test_the_same_split_on_every_run_and_in_any_folder(pool, tmp_path):
    root, _ = pool
    record = split_dataset(root)[1].to_record()
    assert split_dataset(root, use_cache=False)[1].to_record() == record
    elsewhere = shutil.copytree(root, tmp_path / "somewhere" / "else")
    assert split_dataset(elsewhere)[1].to_record() == record


def test_near_duplicates_of_a_saved_report_are_kept_together(pool):
    root, _ = pool
    _, plain = split_dataset(root)
    # Two photos the plain split puts apart, saved by the doctor as near duplicates.
    test_photo, train_photo = plain.test[0].path, next(s.path for s in plain.train if "again" not in s.path)
    group = {"files": [{"file": test_photo, "split": "test"}, {"file": train_photo, "split": "train"}]}
    save_report(root, {"duplicates": [{**group, "score": 0.9, "exact": False}]})
    _, splits = split_dataset(root)
    where = split_of(splits)
    assert where[test_photo] == where[train_photo]
    assert "the data doctor's near-duplicate groups (report of " in splits.grouping
    # Given groups win over the saved report: the doctor splits with those it has just found.
    _, found_now = split_dataset(root, near_duplicates=NearDuplicates([], "this review"))
    assert found_now.to_record()["test"] == plain.to_record()["test"]


def test_split_json_records_the_grouping_and_an_old_one_still_loads(pool, tmp_path):
    root, _ = pool
    config = TrainConfig(str(root), "cnn", 1)
    splits = split_for(config)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_split(run_dir, splits.to_record())
    assert read_split(run_dir)["grouping"] == splits.grouping
    assert run_splits(run_dir, config) == splits

    old = {key: value for key, value in splits.to_record().items() if key != "grouping"}
    (run_dir / "split.json").write_text(json.dumps(old))
    again = run_splits(run_dir, config)
    assert again.grouping == NOT_GROUPED
    assert again.test == splits.test


# --- The data doctor on PawLab's split and on split folders the person made ---------------


def folders_with_a_copy(root: Path) -> tuple[Path, set[str]]:
    """train/ and validation/ folders made by hand, one train photo copied into validation/."""
    make_separable_dataset(root, classes=CLASSES, per_class=10)
    photo = sorted((root / "train" / "stars").glob("*.jpg"))[0]
    copy = root / "validation" / "stars" / "copied-by-hand.jpg"
    shutil.copyfile(photo, copy)
    return root, {str(photo.resolve()), str(copy.resolve())}


def thumbnail_embeddings(paths, image_size, progress=None, keys=None) -> np.ndarray:
    """Stand-in for MobileNetV2 (tests/test_doctor.py measures the real one): tiny
    thumbnails, near for a photo and its re-encoded copy, far for the others."""
    rows = []
    for path in paths:
        with Image.open(path) as image:
            rows.append(np.asarray(image.convert("RGB").resize((THUMB_PX, THUMB_PX)), np.float32).ravel() / 255)
    return np.stack(rows)


@pytest.fixture(scope="module")
def doctored(tmp_path_factory):
    work = tmp_path_factory.mktemp("split_groups")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PAWLAB_HOME", str(work / "home"))
        patch.setattr("core.review.doctor.embed_files", thumbnail_embeddings)
        pool, groups = pool_with_copies(work / "pool")
        near = add_near_copies(pool)
        folders, copy = folders_with_a_copy(work / "folders")
        reports = {
            "pool": (pool, groups, near, diagnose(pool)),
            "folders": (folders, copy, diagnose(folders)),
        }
        yield reports


def test_the_doctor_finds_no_leak_in_pawlabs_split(doctored):
    _, groups, near, report = doctored["pool"]
    found = [{member.file for member in group.files} for group in report.duplicates if group.exact]
    assert sorted(map(sorted, found)) == sorted(map(sorted, groups))
    found_near = [{member.file for member in group.files} for group in report.duplicates if not group.exact]
    assert all(any(set(pair) <= group for group in found_near) for pair in near)
    assert report.leaks == []
    assert report.leak_advice == ""


def test_training_splits_as_the_doctor_did_once_its_report_is_saved(doctored):
    root, _, _, report = doctored["pool"]
    save_report(root, report.to_dict())
    _, splits = split_dataset(root)
    where = split_of(splits)
    for group in report.duplicates:
        assert all(where[member.file] == member.split for member in group.files)
    assert splits.counts() == report.class_balance
    assert "near-duplicate groups (report of " in splits.grouping


def test_a_copy_across_split_folders_made_by_hand_is_still_a_leak(doctored):
    _, copy, report = doctored["folders"]
    leaks = [{member.file for member in group.files} for group in report.leaks]
    assert copy in leaks
    assert report.leak_advice == LEAK_ADVICE
    assert "split folders you made" in report.leak_advice


def test_the_review_page_says_how_to_fix_a_leak_across_folders_made_by_hand(doctored, monkeypatch):
    source, _, report = doctored["folders"]
    monkeypatch.delenv("PAWLAB_ALLOW_LOCAL_PATHS", raising=False)
    root = get_settings().datasets_dir / "shapes"
    shutil.copytree(source, root)
    (root / COMPLETE_MARKER).write_text("{}\n")  # imported: a new session opens it
    save_report_made_elsewhere(root.resolve(), report.to_dict(), source)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    at.switch_page("pages/review.py").run()
    assert not at.exception, at.exception
    warnings = " ".join(warning.value for warning in at.warning)
    assert f"{len(report.leaks)} duplicate group" in warnings
    assert LEAK_ADVICE in warnings
