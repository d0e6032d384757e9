"""The data doctor finds planted problems in a copy of the real cats and dogs.

20 photos moved to the other class folder, 15 re-encoded copies that land in
another split than their original, and 10 natural photos of other things
(tests/_planted.py). Frozen MobileNetV2 features of 3000 photos take about a
minute on 2 cores, so the doctor runs once for the whole module.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _planted import plant

from core.models.embeddings import EMBEDDING_SIZE, EmbeddingCache, content_key, embed_files
from core.models.novelty import NoveltyDetector
from core.review.doctor import LEAK_ADVICE, diagnose


@pytest.fixture(scope="module")
def planted(cats_and_dogs, keras_home, tmp_path_factory, seed_photo_embeddings):
    work = tmp_path_factory.mktemp("planted")
    seed_photo_embeddings(work / "home")  # the strangers and the resized copies are new to it
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KERAS_HOME", str(keras_home))
        patch.setenv("PAWLAB_HOME", str(work / "home"))
        problems = plant(cats_and_dogs, work / "data")
        report = diagnose(problems.root)
        problems.home = work / "home"  # its embedding cache serves the tests below
        yield problems, report


def test_moved_photos_rank_as_label_issues(planted):
    problems, report = planted
    top = [issue.file for issue in report.label_issues[:30]]
    assert sum(file in problems.moved for file in top) >= 18
    for issue in report.label_issues:
        assert issue.given != issue.suggested


def test_strangers_rank_as_outliers(planted):
    problems, report = planted
    top = [outlier.file for outlier in report.outliers[:15]]
    # Measured at 224 px embeddings: the strangers rank 1-9 and 15, among logos
    # and signs that the real dataset holds (at 160 px the astronaut ranked 19th).
    assert problems.strangers <= set(top)
    assert not problems.strangers & {issue.file for issue in report.label_issues}


def test_every_copy_in_another_split_is_a_leak(planted):
    problems, report = planted
    leaks = [{member.file for member in group.files} for group in report.leaks]
    for original, copy in problems.copies:
        assert any({original, copy} <= leak for leak in leaks), Path(copy).name
    others = [leak for leak in leaks if not any(set(pair) <= leak for pair in problems.copies)]
    assert len(others) <= 2
    assert all(len(group.splits) > 1 for group in report.leaks)
    # train/ and validation/ are the person's folders, used as they are: the report says what to do.
    assert report.leak_advice == LEAK_ADVICE


def test_the_report_counts_every_photo_and_the_class_balance(planted):
    problems, report = planted
    photos = sorted(problems.root.glob("*/*/*.jpg"))
    assert report.photos == len(photos)
    assert sum(sum(per_class.values()) for per_class in report.class_balance.values()) == len(photos)
    assert report.classes == ["cats", "dogs"]


def test_embeddings_are_cached_per_photo_content(tmp_path, cats_and_dogs, keras_home, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    photos = sorted((cats_and_dogs / "train" / "cats").glob("*.jpg"))[:3]
    first = embed_files(photos, image_size=160)
    # The same bytes under another name are not recomputed: the cache answers.
    renamed = tmp_path / "renamed.jpg"
    renamed.write_bytes(photos[0].read_bytes())
    cache = EmbeddingCache(160)
    assert cache.get(content_key(renamed)) is not None
    again = embed_files([renamed], image_size=160)
    assert again.shape == (1, 1280)
    assert abs(again[0] - first[0]).max() < 1e-2  # float16 storage
    assert os.path.getsize(cache._path(content_key(renamed))) < 4000


def test_strangers_are_unknown_and_pets_are_familiar(planted, monkeypatch):
    """The unknown-photo check: 5-NN cosine distance to the training photos' embeddings."""
    problems, _ = planted
    monkeypatch.setenv("PAWLAB_HOME", str(problems.home))  # embeddings cached by the doctor
    train = [p for p in problems.root.glob("train/*/*.jpg") if str(p) not in problems.strangers]
    pets = [p for p in problems.root.glob("validation/*/*.jpg") if str(p) not in problems.strangers]
    detector = NoveltyDetector.fit(embed_files(train), EMBEDDING_SIZE)
    assert detector.is_unknown(embed_files(sorted(problems.strangers))).all()
    assert detector.is_unknown(embed_files(pets)).mean() <= 0.015  # measured: 0.9%


def test_outliers_say_which_ones_cleanlab_flags(planted):
    problems, report = planted
    flagged = [outlier for outlier in report.outliers if outlier.flagged]
    assert 0 < len(flagged) < len(report.outliers)
    assert {o.file for o in report.outliers[:15]} & problems.strangers <= {o.file for o in flagged} | set()
