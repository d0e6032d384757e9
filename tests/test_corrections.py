"""Corrections relabel or exclude photos for every scan, without touching the files."""

from __future__ import annotations

import threading

import pytest

from core.data.corrections import (
    EXCLUDED_REASON,
    add_correction,
    clear_corrections,
    corrections_file,
    load_corrections,
    undo_last,
)
from core.data.dataset import DatasetError
from core.data.splits import split_dataset


def where(splits, relative: str):
    """(split, class) of a photo in ``splits``, or None when it is not in any."""
    for split, samples in splits.as_dict().items():
        for sample in samples:
            if sample.path.endswith(relative):
                return split, sample.class_name
    return None


def test_a_relabel_moves_the_photo_to_its_class_and_leaves_the_file(tiny_dataset):
    photo = "train/circles/circles.train.3.jpg"
    before = (tiny_dataset / photo).read_bytes()
    add_correction(tiny_dataset, photo, "squares", classes=["circles", "squares"])

    _info, splits = split_dataset(tiny_dataset)
    assert where(splits, photo)[1] == "squares"
    assert (tiny_dataset / photo).read_bytes() == before  # the user's file is untouched
    assert sum(splits.counts()[split]["squares"] for split in ("train", "validation", "test")) == 19


def test_an_excluded_photo_is_listed_as_skipped_with_the_reason(tiny_dataset):
    photo = "validation/squares/squares.validation.1.jpg"
    add_correction(tiny_dataset, photo, None)
    info, splits = split_dataset(tiny_dataset)
    assert where(splits, photo) is None
    assert (photo, EXCLUDED_REASON) in info.skipped


def test_undo_takes_back_the_last_correction_only(tiny_dataset):
    first, second = "train/circles/circles.train.0.jpg", "train/circles/circles.train.1.jpg"
    add_correction(tiny_dataset, first, "squares", author="me")
    add_correction(tiny_dataset, second, None, author="me")
    undo_last(tiny_dataset, author="me")
    assert load_corrections(tiny_dataset).mapping == {first: "squares"}
    clear_corrections(tiny_dataset)
    assert load_corrections(tiny_dataset).mapping == {}


def test_a_run_snapshot_wins_over_later_corrections(tiny_dataset):
    photo = "train/circles/circles.train.2.jpg"
    snapshot = dict(load_corrections(tiny_dataset).mapping)  # taken when the run was queued
    add_correction(tiny_dataset, photo, "squares")
    _, queued = split_dataset(tiny_dataset, corrections=snapshot)
    _, now = split_dataset(tiny_dataset)
    assert where(queued, photo)[1] == "circles" and where(now, photo)[1] == "squares"


@pytest.mark.parametrize("forged", ["../outside.jpg", "/etc/passwd", "train/../../x.jpg", ""])
def test_paths_outside_the_dataset_are_refused(tiny_dataset, forged):
    with pytest.raises(DatasetError):
        add_correction(tiny_dataset, forged, None)
    assert not corrections_file(tiny_dataset).exists()


def test_unknown_classes_and_missing_photos_are_refused(tiny_dataset):
    with pytest.raises(DatasetError, match="not a class"):
        add_correction(tiny_dataset, "train/circles/circles.train.0.jpg", "triangles", classes=["circles", "squares"])
    with pytest.raises(DatasetError, match="no photo"):
        add_correction(tiny_dataset, "train/circles/nope.jpg", None)


def test_corrections_belong_to_one_dataset(tmp_path, tiny_dataset):
    from conftest import make_separable_dataset

    other = make_separable_dataset(tmp_path / "other")
    add_correction(tiny_dataset, "train/circles/circles.train.0.jpg", None)
    assert load_corrections(other).mapping == {}


def test_many_people_correcting_at_once_lose_nothing(tiny_dataset):
    photos = sorted(p.relative_to(tiny_dataset).as_posix() for p in tiny_dataset.glob("train/*/*.jpg"))

    def exclude(photo):
        add_correction(tiny_dataset, photo, None)

    threads = [threading.Thread(target=exclude, args=(photo,)) for photo in photos]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(load_corrections(tiny_dataset).mapping) == set(photos)


def test_a_damaged_corrections_file_means_no_corrections(tiny_dataset):
    path = corrections_file(tiny_dataset)
    path.parent.mkdir(parents=True)
    path.write_text("{ not json")
    assert load_corrections(tiny_dataset).mapping == {}
    info, _ = split_dataset(tiny_dataset)
    assert info.num_images == 36


def test_the_corrected_dataset_exports_as_a_zip(tmp_path, tiny_dataset):
    import zipfile

    from core.data.corrections import export_corrected_zip

    add_correction(tiny_dataset, "train/circles/circles.train.0.jpg", "squares")
    add_correction(tiny_dataset, "train/circles/circles.train.1.jpg", None)
    target = export_corrected_zip(tiny_dataset, tmp_path / "out" / "corrected.zip")
    names = zipfile.ZipFile(target).namelist()
    assert "train/squares/circles.train.0.jpg" in names
    assert not any(name.endswith("circles.train.1.jpg") for name in names)
    assert len(names) == 35 and len(set(names)) == 35

    # The zip is a dataset PawLab reads with the corrections built in.
    from core.data.acquire import import_zip

    root = import_zip(target, "corrected")
    _, splits = split_dataset(root)
    assert where(splits, "train/squares/circles.train.0.jpg")[1] == "squares"


def test_moving_a_photo_back_to_its_own_folder_is_no_correction(tiny_dataset):
    photo = "train/circles/circles.train.5.jpg"
    add_correction(tiny_dataset, photo, "squares")
    add_correction(tiny_dataset, photo, "circles")
    assert load_corrections(tiny_dataset).mapping == {}
