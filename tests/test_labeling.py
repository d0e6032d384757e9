"""Labelling unlabelled photos with the model's help: python -m core label, core.labeling.

Three classes of synthetic shapes (not cats and dogs), JPEG and PNG, a few
labelled and the rest unlabelled, plus one photo of something else. Their
embeddings are put in the embedding cache directly (a direction per class,
a little noise; the stranger points elsewhere), so nothing runs MobileNetV2
and every round is as after the first: all cached.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, make_separable_dataset
from PIL import Image

from core.cli import main
from core.data.corrections import load_corrections
from core.data.maker import add_photos, new_dataset
from core.labeling.ranking import balanced_confident_order
from core.labeling.suggest import suggest_next
from core.models.embeddings import EMBEDDING_SIZE, EmbeddingCache, content_key, embed_files

CLASSES = ("circles", "squares", "stars")
LABELLED_PER_CLASS = 2
STRANGER_DIRECTION = 1000  # an embedding axis no class uses


def embed_as(photo: Path, direction: int, seed: int) -> None:
    """Cache a fake embedding for the photo's content: its direction plus a little noise."""
    vector = np.abs(np.random.default_rng(seed).normal(0.0, 0.005, 1280))
    vector[direction] += 1.0
    EmbeddingCache(EMBEDDING_SIZE).put(content_key(photo), vector)


def stranger(path: Path) -> Path:
    """A photo of none of the classes: a smooth grey gradient."""
    ramp = np.tile(np.linspace(0, 255, 48, dtype=np.uint8), (48, 1))
    Image.fromarray(np.stack([ramp] * 3, -1)).save(path)
    return path


def shape_photos(tmp_path: Path) -> dict[str, list[Path]]:
    """{class: photos}, every other one a PNG, each photo's embedding cached."""
    source = make_separable_dataset(tmp_path / "source", classes=CLASSES, per_class=6, splits=("",))
    photos = {}
    for direction, name in enumerate(CLASSES):
        photos[name] = []
        for number, jpeg in enumerate(sorted((source / name).glob("*.jpg"))):
            photo = jpeg
            if number % 2:
                photo = jpeg.with_suffix(".png")
                Image.open(jpeg).save(photo)
                jpeg.unlink()
            embed_as(photo, direction, seed=hash((name, number)) % 1000)
            photos[name].append(photo)
    return photos


@pytest.fixture
def made(tmp_path) -> tuple[Path, dict[str, str]]:
    """A dataset made in PawLab: 2 labelled photos per class, the rest and a stranger unlabelled.
    Returns it and {unlabelled file: its true class, or None for the stranger}."""
    photos = shape_photos(tmp_path)
    root = new_dataset("shapes", CLASSES)
    truth: dict[str, str | None] = {}
    for name, files in photos.items():
        add_photos(root, name, [(f.name, f.read_bytes()) for f in files[:LABELLED_PER_CLASS]])
        report = add_photos(root, None, [(f.name, f.read_bytes()) for f in files[LABELLED_PER_CLASS:]])
        truth |= dict.fromkeys(report.added, name)
    odd = stranger(tmp_path / "gradient.png")
    embed_as(odd, STRANGER_DIRECTION, seed=1)
    truth |= dict.fromkeys(add_photos(root, None, [(odd.name, odd.read_bytes())]).added, None)
    return root, truth


@pytest.fixture
def folder(tmp_path) -> tuple[Path, dict[str, str]]:
    """A dataset PawLab did not make (a plain folder): class folders and unlabeled/."""
    photos = shape_photos(tmp_path)
    root = tmp_path / "plain"
    truth = {}
    for name, files in photos.items():
        (root / name).mkdir(parents=True)
        (root / "unlabeled").mkdir(exist_ok=True)
        for number, photo in enumerate(files):
            if number < LABELLED_PER_CLASS:
                photo.rename(root / name / photo.name)
            else:
                photo.rename(root / "unlabeled" / photo.name)
                truth[f"unlabeled/{photo.name}"] = name
    return root, truth


def label(capsys, *args: str) -> tuple[int, list[str], str]:
    code = main(["label", *args])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def snapshot(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


# --- --next ---------------------------------------------------------------------------


def test_next_prints_json_lines_in_labelling_order_and_nothing_when_none_are_left(made, capsys):
    root, truth = made
    code, lines, _ = label(capsys, "--data", str(root), "--next", "50")
    assert code == 0
    offered = [json.loads(line) for line in lines]
    assert len(offered) == len(truth) == 3 * 4 + 1
    assert {s["file"] for s in offered} == set(truth)
    for suggestion in offered:
        assert set(suggestion) >= {"file", "suggested", "confidence", "probabilities", "unknown", "reason"}
        assert set(suggestion["probabilities"]) == set(CLASSES)
        if truth[suggestion["file"]] is not None:
            assert suggestion["suggested"] == truth[suggestion["file"]]
            assert 0.5 < suggestion["confidence"] <= 1.0
    # Confident ones first, taken in turn from each class; the one like none of them last.
    assert [s["suggested"] for s in offered[:3]] == list(CLASSES)
    assert offered[-1]["unknown"] and truth[offered[-1]["file"]] is None

    code, lines, _ = label(capsys, "--data", str(root), "--next", "2")
    assert len(lines) == 2

    assignments = [f"--set={file}={name}" for file, name in truth.items() if name is not None]
    stranger_file = next(file for file, name in truth.items() if name is None)
    code, lines, _ = label(capsys, "--data", str(root), *assignments, "--exclude", stranger_file)
    assert code == 0
    summary = json.loads(lines[-1])
    assert (summary["labelled"], summary["excluded"]) == (12, 1)
    assert label(capsys, "--data", str(root), "--next", "50")[:2] == (0, [])


def test_the_photo_like_none_of_the_classes_is_flagged_unknown(made):
    root, truth = made
    flagged = {s.file for s in suggest_next(root, 50) if s.unknown}
    assert flagged == {file for file, name in truth.items() if name is None}
    (only,) = [s for s in suggest_next(root, 50) if s.unknown]
    assert "none of the classes" in only.reason


def test_order_is_most_confident_first_in_turn_from_each_suggested_class():
    scores = np.array([[0.9, 0.1], [0.8, 0.2], [0.55, 0.45], [0.3, 0.7], [0.0, 1.0]])
    assert balanced_confident_order(scores) == [0, 4, 1, 3, 2]


# --- --set ------------------------------------------------------------------------------


def test_set_moves_the_photo_into_its_class_in_a_made_dataset(made, capsys):
    root, truth = made
    file = next(file for file, name in truth.items() if name == "squares")
    code, lines, _ = label(capsys, "--data", str(root), f"--set={file}=circles")  # a person may disagree
    assert code == 0
    moved = json.loads(lines[0])["moved"][file]
    assert moved.startswith("circles/") and (root / moved).is_file() and not (root / file).exists()
    assert load_corrections(root).mapping == {}
    assert file not in {s.file for s in suggest_next(root, 50)}


def test_set_and_exclude_record_corrections_for_a_dataset_pawlab_did_not_make(folder, capsys):
    root, truth = folder
    before = snapshot(root)
    first, second = sorted(truth)[:2]
    code, lines, _ = label(capsys, "--data", str(root), f"--set={first}=stars", "--exclude", second)
    assert code == 0
    assert json.loads(lines[0])["corrections"] == {first: "stars", second: None}
    assert snapshot(root) == before  # its files stay as they are
    assert load_corrections(root).mapping == {first: "stars", second: None}
    offered = {s.file for s in suggest_next(root, 50)}
    assert offered == set(truth) - {first, second}


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_args, says",
    [
        (["--set=unlabeled/nowhere.jpg=circles"], "has no photo"),
        (["--set={file}=triangles"], "has no class 'triangles'"),
        (["--set=../{file}=circles"], "is not a photo"),
        (["--set=unlabeled/../{file}=circles"], "is not a photo"),
        (["--exclude=/etc/passwd"], "is not a photo"),
        (["--set={file}=circles", "--set=unlabeled/nowhere.jpg=circles"], "has no photo"),  # all or nothing
        (["--set={file}"], "FILE=CLASS"),
        (["--next", "0"], "at least 1"),
        ([], "--next N"),
    ],
)
def test_bad_input_is_one_sentence_exit_2_and_nothing_changes(made, capsys, request_args, says):
    root, truth = made
    file = next(file for file, name in truth.items() if name == "stars")
    before = snapshot(root)
    code, lines, err = label(capsys, "--data", str(root), *[arg.format(file=file) for arg in request_args])
    assert code == 2 and lines == []
    assert len(err.strip().splitlines()) == 1 and says in err
    assert snapshot(root) == before and load_corrections(root).mapping == {}


def test_a_bad_class_for_a_plain_folder_records_no_correction(folder, capsys):
    root, truth = folder
    code, _, err = label(capsys, "--data", str(root), f"--set={sorted(truth)[0]}=triangles")
    assert code == 2 and "has no class" in err
    assert load_corrections(root).mapping == {}


# --- speed -----------------------------------------------------------------------------------


def test_next_with_every_embedding_cached_never_imports_tensorflow(made, pawlab_home):
    root, _ = made
    script = (
        "import sys; from core.cli import main; code = main(['label', '--data', sys.argv[1], '--next', '5']); "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow was imported'; "
        "sys.exit(code)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(root)], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 5


def test_stored_png_and_jpeg_both_offered(made):
    root, truth = made
    suffixes = {Path(file).suffix for file in truth}
    assert suffixes == {".jpg", ".png"}
    assert {Path(s.file).suffix for s in suggest_next(root, 50)} == suffixes


def test_a_round_reads_the_dataset_matrix_and_embeds_only_new_photos(made, tmp_path, monkeypatch):
    """After the first round the embeddings come from one file; a photo added later is embedded alone."""
    import core.labeling.matrix as matrix

    root, _ = made
    first = suggest_next(root, 50)
    assert matrix.matrix_file(root).is_file()
    asked: list[list[str]] = []

    def recording(paths, keys=None):
        asked.append(list(paths))
        return embed_files(paths, keys=keys)

    monkeypatch.setattr(matrix, "embed_files", recording)
    assert suggest_next(root, 50) == first and asked == []
    extra = tmp_path / "another.png"
    Image.fromarray(np.full((40, 40, 3), (200, 30, 30), np.uint8)).save(extra)
    embed_as(extra, 0, seed=7)
    (added,) = add_photos(root, None, [(extra.name, extra.read_bytes())]).added
    assert added in {s.file for s in suggest_next(root, 50)}
    assert [[Path(p).name for p in paths] for paths in asked] == [[Path(added).name]]
