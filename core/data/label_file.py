"""Reading a labels file: which photo is which class, the way public datasets write it.

Kaggle ships ``train/`` plus ``labels.csv`` (``id,breed``); Hugging Face's
imagefolder ships ``metadata.csv`` (``file_name,label``). Both are matched
to the photos the same forgiving way, because that is how people write
them: an id with or without its extension, an id that says ``.jpg`` for a
file saved as ``.png``, rows for photos that are not there (a CSV for the
whole competition beside a sample of its photos), photos without a row::

    plan = plan_labels(photo_paths, csv_text)          # columns guessed
    plan = plan_labels(photo_paths, csv_text, LabelColumns("id", "breed"))
    plan.labels      # {photo path: class}
    plan.unlabeled   # photos without a usable row: offered for labelling later

Pure: no files are read or written here (core.data.importing does that),
so the Dataset page can show the guess before anything is copied.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from core.data.dataset import DatasetError
from core.data.layout import is_image_name
from core.data.maker import MAX_CLASSES, check_class_name

# Labels files found at the root of a source, in the order they are looked for.
LABEL_FILE_NAMES = ("labels.csv", "metadata.csv")
# Column names that say "this is the class" (compared lower-cased).
LABEL_COLUMN_NAMES = ("label", "labels", "class", "class_name", "category", "breed", "species", "target", "y")
# The CSV text read at most: 11,000 Kaggle rows are well under 1 MB.
MAX_CSV_BYTES = 50_000_000


@dataclass(frozen=True)
class LabelColumns:
    file: str  # the column naming each photo
    label: str  # the column holding its class


@dataclass
class LabelPlan:
    columns: LabelColumns
    header: list[str]
    labels: dict[str, str] = field(default_factory=dict)  # photo path -> class
    unlabeled: list[str] = field(default_factory=list)  # photos without a usable row
    rows_without_file: int = 0
    files_without_row: int = 0
    # Photos whose rows disagree, and labels that cannot be class names: each photo stays unlabelled.
    conflicts: list[str] = field(default_factory=list)
    bad_labels: dict[str, str] = field(default_factory=dict)  # label -> why it cannot be a class
    ambiguous: list[str] = field(default_factory=list)  # ids matching several photos

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.labels.values()))

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(self.classes, 0)
        for class_name in self.labels.values():
            counts[class_name] += 1
        return counts

    def notes(self) -> list[str]:
        """Sentences for what did not fit, for the page and the CLI."""
        notes = []
        if self.conflicts:
            notes.append(
                f"{len(self.conflicts)} photo(s) have rows that disagree (e.g. {self.conflicts[0]}); "
                "they are left unlabelled."
            )
        for label, reason in sorted(self.bad_labels.items())[:5]:
            notes.append(f"The label {label!r} cannot be a class ({reason}); its photos are left unlabelled.")
        if self.ambiguous:
            notes.append(
                f"{len(self.ambiguous)} id(s) match several photos (e.g. {self.ambiguous[0]!r}); "
                "write the folder in the id to tell them apart."
            )
        return notes


def read_rows(csv_text: str) -> tuple[list[str], list[dict[str, str]]]:
    """The header and rows of a CSV, its delimiter sniffed; DatasetError if it has no columns."""
    text = csv_text.lstrip("\ufeff")  # Excel's byte-order mark
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(io.StringIO(text), dialect=dialect)
    header = [name.strip() for name in reader.fieldnames or [] if name and name.strip()]
    if len(header) < 2:
        raise DatasetError("The labels file needs at least two columns: one naming the photo, one its class.")
    rows = [
        {key.strip(): (value or "").strip() for key, value in row.items() if isinstance(key, str)} for row in reader
    ]
    return header, rows


class _PhotoFinder:
    """Finds the photo a CSV id names: by path, by file name, or by name without extension."""

    def __init__(self, photo_paths: Sequence[str]):
        self.by_path = {path.lower(): path for path in photo_paths}
        self.by_name: dict[str, list[str]] = defaultdict(list)
        self.by_stem: dict[str, list[str]] = defaultdict(list)
        for path in photo_paths:
            name = PurePosixPath(path).name.lower()
            self.by_name[name].append(path)
            self.by_stem[PurePosixPath(name).stem].append(path)

    def find(self, identifier: str) -> list[str]:
        """Every photo ``identifier`` may name (one, when it is clear)."""
        text = identifier.strip().replace("\\", "/").lstrip("./").lower()
        if not text:
            return []
        if text in self.by_path:
            return [self.by_path[text]]
        name = PurePosixPath(text).name
        if name in self.by_name:
            return self.by_name[name]
        # "1a2b" or "1a2b.jpg" for a file saved as 1a2b.png: match on the name without its suffix.
        stem = PurePosixPath(name).stem if is_image_name(name) else name
        return self.by_stem.get(stem, [])


def _match_rate(finder: _PhotoFinder, rows: list[dict[str, str]], column: str) -> float:
    sample = rows[:2000]  # enough to tell an id column apart, and quick for 100k rows
    found = sum(1 for row in sample if finder.find(row.get(column, "")))
    return found / max(1, len(sample))


def guess_columns(header: list[str], rows: list[dict[str, str]], finder: _PhotoFinder) -> LabelColumns:
    """The column whose values name the most photos, and the class column beside it."""
    rates = {column: _match_rate(finder, rows, column) for column in header}
    file_column = max(header, key=lambda column: rates[column])
    if rates[file_column] == 0:
        raise DatasetError(
            f"No column of the labels file names the photos (columns: {', '.join(header)}). "
            "Its values should be file names, with or without the extension."
        )
    others = [column for column in header if column != file_column]
    named = [column for column in others if column.lower() in LABEL_COLUMN_NAMES]
    if named:
        return LabelColumns(file_column, named[0])

    def distinct(column: str) -> int:
        return len({row.get(column, "") for row in rows} - {""})

    useful = [column for column in others if 2 <= distinct(column) <= MAX_CLASSES]
    label_column = min(useful or others, key=distinct)
    return LabelColumns(file_column, label_column)


def _check_columns(columns: LabelColumns, header: list[str], rows: list[dict[str, str]]) -> None:
    for column in (columns.file, columns.label):
        if column not in header:
            raise DatasetError(f"The labels file has no column {column!r}; its columns are {', '.join(header)}.")
    if columns.file == columns.label:
        raise DatasetError("The photo column and the label column must be two different columns.")
    distinct = {row.get(columns.label, "") for row in rows} - {""}
    if len(distinct) > MAX_CLASSES:
        raise DatasetError(
            f"The column {columns.label!r} has {len(distinct):,} different values; a dataset has at most "
            f"{MAX_CLASSES} classes. Is it an id column? Choose the column that holds the classes."
        )


def plan_labels(
    photo_paths: Sequence[str],
    csv_text: str,
    columns: LabelColumns | None = None,
) -> LabelPlan:
    """Which of ``photo_paths`` (``/``-separated, relative) each row labels; columns guessed when not given."""
    header, rows = read_rows(csv_text)
    finder = _PhotoFinder(photo_paths)
    columns = columns or guess_columns(header, rows, finder)
    _check_columns(columns, header, rows)
    plan = LabelPlan(columns, header)
    seen: dict[str, set[str]] = defaultdict(set)  # photo -> its rows' non-empty labels
    for row in rows:
        matches = finder.find(row.get(columns.file, ""))
        if not matches:
            plan.rows_without_file += 1
        elif len(matches) > 1:
            plan.ambiguous.append(row.get(columns.file, ""))
        else:
            seen[matches[0]].update({row[columns.label]} - {""} if row.get(columns.label) else set())
    plan.files_without_row = sum(1 for photo in photo_paths if photo not in seen)
    for photo in photo_paths:
        _place(plan, photo, seen.get(photo, set()))
    return plan


def _place(plan: LabelPlan, photo: str, labels: set[str]) -> None:
    if len(labels) > 1:
        plan.conflicts.append(photo)
    if len(labels) != 1:
        plan.unlabeled.append(photo)
        return
    (label,) = labels
    try:
        plan.labels[photo] = check_class_name(label)
    except DatasetError as error:
        plan.bad_labels[label] = str(error).split(": ", 1)[-1].rstrip(".")
        plan.unlabeled.append(photo)
