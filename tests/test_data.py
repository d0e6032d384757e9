"""Scanning, bad files, splits and the tf.data pipeline."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, make_separable_dataset
from PIL import Image, ImageFile

from core.data.dataset import DatasetError, scan_dataset
from core.data.images import ImageError, load_resized, open_rgb
from core.data.splits import SplitRule, Splits, _rank, make_splits, split_dataset, subset

# --- Decoding: every mode becomes RGB, bad files get a sentence -------------


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "I;16"])
def test_any_mode_becomes_rgb(tmp_path, mode):
    image = (
        Image.new("RGB", (40, 30), (200, 100, 50)).convert(mode)
        if mode != "I;16"
        else Image.fromarray(np.full((30, 40), 40000, dtype=np.uint16))
    )
    path = tmp_path / ("img.jpg" if mode in ("L", "CMYK") else "img.png")
    image.save(path)
    pixels = load_resized(path, 16)
    assert pixels.shape == (16, 16, 3) and pixels.dtype == np.uint8
    assert pixels.max() > 0


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (60, 20), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    image.save(tmp_path / "rotated.jpg", exif=exif)
    assert open_rgb(tmp_path / "rotated.jpg").size == (20, 60)


def test_animated_gif_uses_first_frame(tmp_path):
    frames = [Image.new("RGB", (20, 20), colour) for colour in ("red", "blue")]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    pixel = open_rgb(tmp_path / "anim.gif").getpixel((5, 5))
    assert pixel[0] > 200 and pixel[2] < 50


def test_bad_files_raise_a_readable_error(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not a photo")
    Image.new("RGB", (200, 200), "green").save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    for name, words in [("empty.jpg", "empty"), ("text.jpg", "not an image"), ("truncated.jpg", "truncated")]:
        with pytest.raises(ImageError, match=words):
            open_rgb(tmp_path / name)


def test_decompression_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    monkeypatch.setenv("PAWLAB_MAX_IMAGE_PIXELS", "10000")
    Image.new("L", (200, 200)).save(tmp_path / "big.png")
    Image.new("L", (50, 50)).save(tmp_path / "small.png")
    decoded = []
    real_load = ImageFile.ImageFile.load

    def spy_load(image):
        decoded.append(image.size)
        return real_load(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy_load)
    with pytest.raises(ImageError, match="pixel limit"):
        open_rgb(tmp_path / "big.png")
    assert decoded == []  # refused on the header alone
    open_rgb(tmp_path / "small.png")
    assert (50, 50) in decoded  # the spy does see a decode


# --- Scanning -----------------------------------------------------------------


def test_scan_real_dataset(cats_and_dogs):
    info = scan_dataset(cats_and_dogs)
    assert info.classes == ["cats", "dogs"]
    assert info.counts() == {"train": {"cats": 1000, "dogs": 1000}, "validation": {"cats": 500, "dogs": 500}}
    assert info.skipped == []


def test_scan_skips_and_reports_bad_files(tmp_path):
    root = make_separable_dataset(tmp_path / "data", per_class=4)
    cats = root / "train" / "circles"
    (cats / "zero.jpg").write_bytes(b"")
    (cats / "notes.txt").write_text("hello")
    (cats / "fake.jpg").write_text("<html>")
    good = (cats / "circles.train.0.jpg").read_bytes()
    (cats / "cut.jpg").write_bytes(good[: len(good) // 3])
    Image.new("RGBA", (30, 30), (0, 0, 255, 128)).save(cats / "alpha.webp")
    Image.new("RGB", (30, 30), "orange").convert("P").save(cats / "palette.bmp")

    info = scan_dataset(root)
    reasons = dict(info.skipped)
    assert set(reasons) == {f"train/circles/{n}" for n in ("zero.jpg", "notes.txt", "fake.jpg", "cut.jpg")}
    assert "empty" in reasons["train/circles/zero.jpg"]
    assert "unsupported" in reasons["train/circles/notes.txt"]
    assert "truncated" in reasons["train/circles/cut.jpg"]
    # WebP with alpha and palette BMP are fine photos.
    assert info.counts()["train"]["circles"] == 4 + 2


def test_scan_flat_layout_and_errors(tmp_path):
    root = make_separable_dataset(tmp_path / "flat", classes=("a", "b", "c"), splits=("",), per_class=5)
    info = scan_dataset(root)
    assert info.classes == ["a", "b", "c"] and list(info.splits) == ["all"]
    with pytest.raises(DatasetError, match="No class folders"):
        (tmp_path / "nothing").mkdir()
        scan_dataset(tmp_path / "nothing")


def test_scan_unwraps_single_wrapper_folder(tmp_path):
    make_separable_dataset(tmp_path / "wrapper" / "cats_and_dogs_filtered", per_class=3)
    info = scan_dataset(tmp_path / "wrapper")
    assert set(info.splits) == {"train", "validation"}


def test_cli_data_prints_json_summary(tiny_dataset):
    result = subprocess.run(
        [sys.executable, "-m", "core", "data", "--root", str(tiny_dataset)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    summary = json.loads(result.stdout)
    assert summary["classes"] == ["circles", "squares"]
    assert summary["counts"]["train"] == {"circles": 12, "squares": 12}
    assert summary["splits"]["test"] == {"circles": 1, "squares": 1}


# --- Splits ---------------------------------------------------------------------


def _names(samples):
    return {Path(s.path).name for s in samples}


def test_splits_are_disjoint_stratified_and_stable(cats_and_dogs, tmp_path):
    splits = make_splits(scan_dataset(cats_and_dogs))
    train, val, test = (_names(s) for s in (splits.train, splits.validation, splits.test))
    assert not (train & val) and not (train & test) and not (val & test)
    assert splits.counts()["test"] == {"cats": 100, "dogs": 100}
    assert splits.counts()["validation"] == {"cats": 400, "dogs": 400}
    # Another seed gives another, equally stratified, test set.
    other = make_splits(scan_dataset(cats_and_dogs), seed=7)
    assert _names(other.test) != test and other.counts()["test"] == {"cats": 100, "dogs": 100}


@pytest.mark.parametrize("splits", [("train", "validation"), ("",), ("train", "test")])
def test_same_split_wherever_the_folder_lives(tmp_path, splits):
    original = make_separable_dataset(tmp_path / "here" / "pets", splits=splits, per_class=40)
    copy = tmp_path / "elsewhere" / "renamed"
    shutil.copytree(original, copy)  # a real second folder: no symlink for resolve() to undo
    first, again = make_splits(scan_dataset(original)), make_splits(scan_dataset(copy))
    assert first.root != again.root
    for name in ("train", "validation", "test"):
        assert _relative(getattr(again, name), copy) == _relative(getattr(first, name), original)


def test_pool_split_is_stratified_and_subsets_are_stable(tmp_path):
    root = make_separable_dataset(tmp_path / "pool", splits=("",), per_class=50)
    first = make_splits(scan_dataset(root))
    assert first.counts() == {
        "train": {"circles": 30, "squares": 30},
        "validation": {"circles": 10, "squares": 10},
        "test": {"circles": 10, "squares": 10},
    }
    assert len(_names(first.train) | _names(first.validation) | _names(first.test)) == 100
    subset_names = _names(subset(first.train, 5))
    assert len(subset_names) == 10 and subset_names == _names(subset(first.train, 5))


def test_without_duplicates_the_split_is_the_lowest_ranks_of_each_class(tmp_path):
    """Keeping duplicates together moves no photo of a dataset without any: runs made before
    it split the same photos (the shared cats and dogs has no exact copy)."""
    root = make_separable_dataset(tmp_path / "pool", classes=("a", "b", "c"), splits=("",), per_class=23)
    splits = make_splits(scan_dataset(root), seed=3)

    def lowest_ranks(samples, fraction):  # the split before groups, written out again
        taken = []
        for name in ("a", "b", "c"):
            ranked = sorted((s for s in samples if s.class_name == name), key=lambda s: _rank(s, 3))
            taken += ranked[: round(len(ranked) * fraction)]
        return _names(taken), [s for s in samples if s not in taken]

    pool = splits.train + splits.validation + splits.test
    test, rest = lowest_ranks(pool, 0.2)
    validation, _ = lowest_ranks(rest, 0.25)
    assert (_names(splits.test), _names(splits.validation)) == (test, validation)
    assert splits.grouping.startswith("exact duplicates only")


# --- Split records: a run rebuilds its exact split later ---------------------------


def test_split_record_round_trips_through_json(tiny_dataset):
    info, splits = split_dataset(tiny_dataset, seed=5)
    assert splits == make_splits(scan_dataset(tiny_dataset), seed=5)
    record = json.loads(json.dumps(splits.to_record()))
    assert record["classes"] == ["circles", "squares"]
    assert ["train/circles/circles.train.0.jpg", "circles"] in record["train"]
    assert Splits.from_record(record, info.root) == splits
    # The folder as a run's config may name it: relative, or through a symlink.
    link = tiny_dataset.parent / "link"
    link.symlink_to(tiny_dataset)
    assert Splits.from_record(record, link) == splits


def test_split_record_survives_changes_to_the_folder(tiny_dataset, tmp_path, monkeypatch):
    info, splits = split_dataset(tiny_dataset)
    record = splits.to_record()
    moved = tmp_path / "moved"
    shutil.copytree(info.root, moved)
    shutil.copy(moved / "train" / "circles" / "circles.train.0.jpg", moved / "train" / "circles" / "new.jpg")
    (moved / "validation" / "squares" / "squares.validation.0.jpg").unlink()
    # No scan and no decode: rebuilding from a record must not look at the photos.
    monkeypatch.setattr("core.data.dataset.check_image", lambda path: pytest.fail("decoded"))
    rebuilt = Splits.from_record(record, moved)
    assert rebuilt.counts() == splits.counts()
    assert rebuilt.to_record() == record
    assert all(s.path.startswith(str(moved)) for s in rebuilt.train + rebuilt.validation + rebuilt.test)


@pytest.mark.parametrize(
    "damage",
    [
        lambda r: r.pop("test"),
        lambda r: r["train"].append(["../../etc/passwd", "circles"]),
        lambda r: r["train"].append(["/etc/passwd", "circles"]),
        lambda r: r["train"].append(["train/x.jpg", "ferrets"]),
        lambda r: r["validation"].append("not a pair"),
    ],
)
def test_damaged_split_record_is_refused(tiny_dataset, damage):
    record = split_dataset(tiny_dataset)[1].to_record()
    damage(record)
    with pytest.raises(DatasetError, match="recorded split"):
        Splits.from_record(record, tiny_dataset)


def test_split_rule_is_named_for_each_layout(tmp_path):
    rules = {}
    for name, splits in [
        ("pool", ("",)),
        ("tv", ("train", "validation")),
        ("tt", ("train", "testing")),
        ("tvt", ("train", "valid", "test")),
        ("t", ("train",)),
    ]:
        root = make_separable_dataset(tmp_path / name, splits=splits, per_class=4)
        rules[name] = SplitRule.of(scan_dataset(root))
    assert rules == {
        "pool": SplitRule.POOL,
        "tv": SplitRule.TEST_FROM_VALIDATION,
        "tt": SplitRule.VALIDATION_FROM_TRAIN,
        "tvt": SplitRule.FOLDERS,
        "t": SplitRule.POOL,
    }
    assert "test/ is the test set" in SplitRule.VALIDATION_FROM_TRAIN.explain()


def test_split_folders_without_train_are_refused(tmp_path):
    root = make_separable_dataset(tmp_path / "d", splits=("validation", "test"), per_class=4)
    with pytest.raises(DatasetError, match="no train/ folder"):
        scan_dataset(root)


def test_a_second_folder_for_the_same_split_is_skipped_with_a_reason(tmp_path):
    root = make_separable_dataset(tmp_path / "d", splits=("train", "test", "testing"), per_class=4)
    info = scan_dataset(root)
    assert info.counts()["test"] == {"circles": 2, "squares": 2}
    reasons = dict(info.skipped)
    assert len(reasons) == 4 and all("second test folder" in r for r in reasons.values())


# --- Pipeline -------------------------------------------------------------------


def test_pipeline_shapes_dtypes_and_determinism(tiny_dataset):
    from core.data.augment import PRESETS
    from core.data.pipeline import make_dataset

    splits = make_splits(scan_dataset(tiny_dataset))
    evaluation = make_dataset(splits.validation, 32, 4, training=False)
    images, labels = next(iter(evaluation))
    assert images.shape == (4, 32, 32, 3) and images.dtype.name == "float32"
    assert labels.dtype.name == "int32"
    # Evaluation keeps file order and matches the inference decode exactly.
    expected = load_resized(splits.validation[0].path, 32)
    np.testing.assert_array_equal(images[0].numpy().astype(np.uint8), expected)
    assert list(np.concatenate([y for _, y in evaluation])) == [s.label for s in splits.validation]

    def epoch_labels(dataset):
        return [tuple(y.numpy()) for _, y in dataset]

    training = make_dataset(splits.train, 32, 8, training=True, seed=3, augment=PRESETS["recommended"])
    first, second = epoch_labels(training), epoch_labels(training)
    assert first != second  # reshuffled every epoch...
    again = make_dataset(splits.train, 32, 8, training=True, seed=3, augment=PRESETS["recommended"])
    assert epoch_labels(again) == first  # ...but the same for the same seed
    augmented = next(iter(training))[0].numpy()
    assert augmented.min() >= 0 and augmented.max() <= 255.0 + 1e-3


# --- Layouts: every split folder a person may name, and nothing lost ------------


def _relative(samples, root):
    return {str(Path(s.path).relative_to(root)) for s in samples}


@pytest.mark.parametrize("test_folder", ["test", "testing"])
def test_own_test_folder_is_the_test_set_and_validation_comes_from_train(tmp_path, test_folder):
    root = make_separable_dataset(tmp_path / "d", splits=("train", test_folder), per_class=10)
    info = scan_dataset(root.resolve())
    assert info.skipped == []
    assert info.counts() == {"train": {"circles": 10, "squares": 10}, "test": {"circles": 5, "squares": 5}}
    splits = make_splits(info)
    assert _relative(splits.test, info.root) == {
        f"{test_folder}/{c}/{c}.{test_folder}.{n}.jpg" for c in ("circles", "squares") for n in range(5)
    }
    # validation: 20% of train/ per class; train: the rest of train/
    assert splits.counts()["validation"] == {"circles": 2, "squares": 2}
    assert splits.counts()["train"] == {"circles": 8, "squares": 8}
    assert all(name.startswith("train/") for name in _relative(splits.validation, info.root))


def test_train_validation_test_folders_are_used_as_they_are(tmp_path):
    root = make_separable_dataset(tmp_path / "d", splits=("train", "val", "testing"), per_class=6)
    splits = make_splits(scan_dataset(root))
    assert splits.counts() == {
        "train": {"circles": 6, "squares": 6},
        "validation": {"circles": 3, "squares": 3},
        "test": {"circles": 3, "squares": 3},
    }


def test_photos_outside_the_split_folders_are_listed_as_skipped(tmp_path):
    root = make_separable_dataset(tmp_path / "d", splits=("train", "validation", "extra"), per_class=4)
    (root / "README.txt").write_text("about these photos")
    info = scan_dataset(root)
    skipped = dict(info.skipped)
    assert {f"extra/{c}/{c}.extra.{n}.jpg" for c in ("circles", "squares") for n in range(2)} <= set(skipped)
    assert "README.txt" in skipped
    assert all(
        "extra/" in reason or "train/" in reason for name, reason in skipped.items() if name.startswith("extra/")
    )
    used = sum(len(samples) for samples in info.splits.values())
    photos = len(list(root.rglob("*.jpg")))
    assert used + sum(name.endswith(".jpg") for name in skipped) == photos
