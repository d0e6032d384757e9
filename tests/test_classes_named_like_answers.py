"""A class may be named "unsure", "unknown" or "unreadable": its answers stay that class's.

Before answers were typed, a photo the model was sure was class "unsure" read as
an abstention everywhere: "answer": "unsure" on the CLI and the API with only a
missing reason to tell, and one "unsure/" folder in the sorted zip for both.
The trained run of test_inference gets its two classes renamed in facts.json
(the model's outputs are indices, the names are the run's record of them).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from test_inference import install_trained_run, validation_files

from core import cli
from core.fileio import read_json, write_json
from core.runs.store import FACTS_FILE
from core.runs.trust import TRUST_FILE
from core.serving.batch import ABSTAINED_FOLDERS, ANSWERED_FOLDER, UNREADABLE_FOLDER, Photo, classify_many, sorted_zip

NAMES = ["unsure", "unknown"]  # circles, squares


@pytest.fixture
def run_dir(tmp_path_factory, pawlab_home) -> Path:
    run_dir = install_trained_run(tmp_path_factory, pawlab_home)
    facts = read_json(run_dir / FACTS_FILE).value
    write_json(run_dir / FACTS_FILE, {**facts, "classes": NAMES})
    return run_dir


def photos(run_dir: Path) -> list[str]:
    files = validation_files(run_dir)
    return [next(f for f in files if "/circles/" in f), next(f for f in files if "/squares/" in f)]


def predict_lines(capsys, run_dir: Path, *files: str, threshold: float) -> list[dict]:
    code = cli.main(["predict", str(run_dir), *files, "--confidence-threshold", str(threshold)])
    assert code == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_the_cli_tells_a_confident_class_unsure_from_an_abstention(run_dir, capsys):
    answered = predict_lines(capsys, run_dir, *photos(run_dir), threshold=0.0)
    assert [line["label"] for line in answered] == NAMES
    assert [line["abstained"] for line in answered] == [None, None]  # the model answered its class
    assert [line["answer"] for line in answered] == NAMES

    # A run whose calibration says its answers are coin flips: at 99% it answers nothing.
    trust = read_json(run_dir / TRUST_FILE).value
    write_json(run_dir / TRUST_FILE, {**trust, "temperature": 1000.0})
    abstained = predict_lines(capsys, run_dir, *photos(run_dir), threshold=0.99)
    assert [line["abstained"] for line in abstained] == ["unsure", "unsure"]
    assert all("reason" in line for line in abstained)


def test_the_api_tells_them_apart_too(run_dir):
    from fastapi.testclient import TestClient

    from core.serving.api import create_app

    client = TestClient(create_app(run_dir), base_url="http://127.0.0.1")
    files = [("files", (Path(p).name, Path(p).read_bytes(), "image/jpeg")) for p in photos(run_dir)]
    entries = client.post("/v1/predict", files=files).json()
    assert [entry["label"] for entry in entries] == NAMES
    assert [entry["abstained"] for entry in entries] == [None, None]
    schema = client.get("/openapi.json").json()["components"]["schemas"]["PredictionLine"]["properties"]
    assert "abstained" in schema and "null when the model answered" in json.dumps(schema["abstained"])


def test_the_sorted_zip_keeps_class_folders_apart_from_abstentions_and_errors(run_dir, tmp_path):
    from core.serving.inference import Predictor

    predictor = Predictor.from_run(run_dir)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    batch = [Photo(Path(p).name, Path(p)) for p in photos(run_dir)] + [Photo("broken.jpg", broken)]

    sure = classify_many(predictor, batch, confidence_threshold=0.0)
    names = set(zipfile.ZipFile(sorted_zip(sure, batch, tmp_path / "sure.zip")).namelist())
    assert {f"{ANSWERED_FOLDER}/unsure/{batch[0].name}", f"{ANSWERED_FOLDER}/unknown/{batch[1].name}"} <= names
    assert f"{UNREADABLE_FOLDER}/broken.jpg" in names

    unsure = classify_many(predictor, batch, confidence_threshold=1.01)
    names = set(zipfile.ZipFile(sorted_zip(unsure, batch, tmp_path / "unsure.zip")).namelist())
    assert {name.split("/")[0] for name in names} == {ABSTAINED_FOLDERS[p.abstained] for p in unsure[:2]} | {
        UNREADABLE_FOLDER
    }
