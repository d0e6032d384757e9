"""Photos plus a labels file, the way Kaggle and Hugging Face ship them.

A Kaggle-style download of three shapes (not cats and dogs): ``train/`` of
loose photos in mixed formats named by id, and ``labels.csv`` (``id,shape``)
with rows for photos that are not there, photos without a row, ids without
their extension and ids that say ``.jpg`` for a ``.png``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from core.data.dataset import DatasetError, scan_dataset
from core.data.importing import import_labelled
from core.data.label_file import LabelColumns, plan_labels
from core.data.maker import is_editable
from tests._own_photos import loose_photos

ROOT = Path(__file__).resolve().parents[1]


def kaggle_download(folder: Path) -> dict[str, str]:
    """``folder/train/*.{jpg,png,webp}`` and ``folder/labels.csv``; returns {file: shape} of every photo."""
    truth = loose_photos(folder / "train", {"circle": 9, "square": 6, "stripe": 3})
    names = sorted(truth)
    rows = ["id,shape"]
    for index, name in enumerate(names[:-2]):  # the last two photos have no row
        stem = name.rsplit(".", 1)[0]
        written = {0: stem, 1: f"{stem}.jpg", 2: name}[index % 3]  # no extension, a wrong one, the right one
        rows.append(f"{written},{truth[name]}")
    rows += [f"{90000 + n},circle" for n in range(100)]  # the competition's other photos
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return truth


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "core", *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def as_zip(folder: Path, target: Path) -> Path:
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, Path("download") / path.relative_to(folder))
    return target


def test_kaggle_habits_are_matched_and_columns_guessed(tmp_path):
    truth = kaggle_download(tmp_path / "kaggle")
    photos = [f"train/{name}" for name in sorted(truth)]

    plan = plan_labels(photos, (tmp_path / "kaggle" / "labels.csv").read_text())

    assert plan.columns == LabelColumns("id", "shape")
    assert plan.rows_without_file == 100
    assert plan.files_without_row == 2
    assert sorted(plan.unlabeled) == photos[-2:]
    assert plan.labels == {photo: truth[photo.split("/")[1]] for photo in photos[:-2]}


def test_hugging_face_metadata_with_extra_columns():
    photos = ["images/a.png", "images/b.jpg", "images/c.jpg"]
    csv_text = "file_name,label,caption\nimages/a.png,circle,a red one\nimages/b.jpg,square,blue\nc.jpg,circle,x\n"

    plan = plan_labels(photos, csv_text)

    assert plan.columns == LabelColumns("file_name", "label")
    assert plan.counts() == {"circle": 2, "square": 1}


def test_a_csv_with_no_column_naming_the_photos_says_so():
    with pytest.raises(DatasetError, match="No column of the labels file names the photos"):
        plan_labels(["a.jpg"], "name,kind\nzebra,x\nlion,y\n")
    with pytest.raises(DatasetError, match="at least two columns"):
        plan_labels(["a.jpg"], "just one\na.jpg\n")
    with pytest.raises(DatasetError, match="no column 'breed'"):
        plan_labels(["a.jpg"], "id,label\na,x\n", LabelColumns("id", "breed"))


def test_a_label_column_of_ten_thousand_values_is_an_id_column():
    photos = [f"{n}.jpg" for n in range(10_000)]
    csv_text = "id,uuid\n" + "".join(f"{n},u{n}\n" for n in range(10_000))
    with pytest.raises(DatasetError, match="10,000 different values"):
        plan_labels(photos, csv_text)


def test_disagreeing_rows_and_labels_that_cannot_be_classes_leave_photos_unlabelled():
    photos = ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"]
    csv_text = 'id,label\na,cat\na,dog\nb,cat\nc,../../etc\nd,"x\ny"\ne,?!\nb,cat\n'

    plan = plan_labels(photos, csv_text)

    assert plan.labels == {"b.jpg": "cat"}
    assert plan.conflicts == ["a.jpg"]
    assert sorted(plan.unlabeled) == ["a.jpg", "c.jpg", "d.jpg", "e.jpg"]
    notes = " ".join(plan.notes())
    assert "disagree" in notes and "path separator" in notes and "control character" in notes


def test_import_of_a_zip_with_labels_makes_an_editable_dataset(tmp_path):
    truth = kaggle_download(tmp_path / "kaggle")
    source = as_zip(tmp_path / "kaggle", tmp_path / "shapes.zip")

    summary = import_labelled(source, "shapes")

    root = Path(summary.dataset)
    assert is_editable(root)
    expected = {"circle": 0, "square": 0, "stripe": 0}
    for name in sorted(truth)[:-2]:
        expected[truth[name]] += 1
    assert summary.counts == expected
    assert summary.unlabeled == 2 and summary.files_without_row == 2 and summary.rows_without_file == 100
    info = scan_dataset(root)
    assert len(info.unlabeled) == 2
    # Photos keep their own names, so the CSV's ids still name them.
    assert {Path(sample.path).name for sample in info.splits["all"]} == set(sorted(truth)[:-2])
    with pytest.raises(FileExistsError):
        import_labelled(source, "shapes")


def test_cli_import_prints_the_summary_last(tmp_path):
    kaggle_download(tmp_path / "kaggle")
    (tmp_path / "kaggle" / "labels.csv").rename(tmp_path / "my labels.csv")

    result = run_cli(
        "import", str(tmp_path / "kaggle"), "--name", "cli shapes", "--labels", str(tmp_path / "my labels.csv")
    )

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(summary) >= {
        "dataset",
        "classes",
        "counts",
        "unlabeled",
        "rows_without_file",
        "files_without_row",
        "skipped",
    }
    assert summary["classes"] == ["circle", "square", "stripe"] and summary["unlabeled"] == 2

    bad = run_cli(
        "import",
        str(tmp_path / "kaggle"),
        "--name",
        "x",
        "--labels",
        str(tmp_path / "my labels.csv"),
        "--file-column",
        "id",
        "--label-column",
        "nope",
    )
    assert bad.returncode == 2 and "no column 'nope'" in json.loads(bad.stdout)["error"]


def test_loose_photos_without_labels_become_unlabelled_and_class_folders_import_as_they_are(tmp_path):
    loose_photos(tmp_path / "roll", {"circle": 2, "square": 2})
    summary = import_labelled(tmp_path / "roll", "camera roll")
    assert summary.unlabeled == 4 and summary.classes == []
    assert is_editable(summary.dataset)

    for shape in ("circle", "square"):
        loose_photos(tmp_path / "folders" / shape, {shape: 2}, start_seed=10 if shape == "square" else 0)
    plain = import_labelled(tmp_path / "folders", "folders")
    assert plain.counts == {"circle": 2, "square": 2}
    assert not is_editable(plain.dataset)  # not made here: fixes stay corrections
