"""Classifying a zip of photos: extracted safely, classified in batches, sorted by answer."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from test_inference import install_trained_run, validation_files

from core.data.archive import ArchiveError
from core.serving.batch import (
    ABSTAINED_FOLDERS,
    ANSWERED_FOLDER,
    UNREADABLE_FOLDER,
    classify_many,
    folder_for,
    photos_in_zip,
    sorted_zip,
)


@pytest.fixture
def predictor(tmp_path_factory, pawlab_home):
    from core.serving.inference import Predictor

    return Predictor.from_run(install_trained_run(tmp_path_factory, pawlab_home))


def zip_of(files: dict[str, bytes]) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    buffer.seek(0)
    return buffer


def test_a_zip_is_classified_in_order_with_progress_and_sorted_by_answer(tmp_path, predictor, monkeypatch):
    monkeypatch.setattr("core.serving.batch.BATCH", 5)
    photos_on_disk = [Path(p) for p in validation_files(_run_of(predictor))]
    upload = {f"holiday/{i:02d}-{p.name}": p.read_bytes() for i, p in enumerate(photos_on_disk[:11])}
    upload["holiday/notes.txt"] = b"not a photo"  # not a photo suffix: not classified
    upload["holiday/broken.jpg"] = b"\xff\xd8 this is not a jpeg"
    upload["__MACOSX/holiday/._01.jpg"] = b"junk"
    photos = photos_in_zip(zip_of(upload), tmp_path / "work")
    assert [p.name for p in photos] == sorted(n for n in upload if n.endswith(".jpg") and "MACOSX" not in n)

    seen = []
    predictions = classify_many(predictor, photos, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(5, 12), (10, 12), (12, 12)]  # 11 photos and the broken one
    assert [p.file for p in predictions] == [p.name for p in photos]
    assert all(p.pixels is None for p in predictions)

    target = sorted_zip(predictions, photos, tmp_path / "sorted.zip")
    names = zipfile.ZipFile(target).namelist()
    assert f"{UNREADABLE_FOLDER}/broken.jpg" in names
    for prediction, photo in zip(predictions, photos):
        assert f"{folder_for(prediction)}/{photo.name.rsplit('/', 1)[-1]}" in names
    assert {name.split("/")[0] for name in names} <= {ANSWERED_FOLDER, *ABSTAINED_FOLDERS.values(), UNREADABLE_FOLDER}
    assert {name.split("/")[1] for name in names if name.startswith(f"{ANSWERED_FOLDER}/")} <= set(predictor.classes)


def test_thresholds_reach_every_photo(tmp_path, predictor):
    photos_on_disk = [Path(p) for p in validation_files(_run_of(predictor))][:4]
    photos = photos_in_zip(zip_of({p.name: p.read_bytes() for p in photos_on_disk}), tmp_path / "w")
    answers = classify_many(predictor, photos, confidence_threshold=1.01)
    assert {p.answer for p in answers} == {"unsure"}


def test_a_hostile_zip_is_refused_before_anything_is_classified(tmp_path, predictor):
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("zeros.jpg", b"\0" * (8 << 20))
    bomb.seek(0)
    with pytest.raises(ArchiveError):
        photos_in_zip(bomb, tmp_path / "bomb")
    assert not (tmp_path / "bomb").exists()


def _run_of(predictor) -> Path:
    """The run folder the predictor was loaded from (the only run in this test's home)."""
    from core.config import get_settings

    return next(get_settings().runs_dir.iterdir())


# --- A large batch in the background: progress to poll, cancel between batches ------


class GatedPredictor:
    """A stand-in model: answers "cats" for every photo, and holds batch ``hold_at`` (0-based)
    until ``gate`` is set, so a test can look at a job while it runs."""

    def __init__(self, hold_at: int | None = None):
        import threading

        self.gate, self.waiting, self.calls = threading.Event(), threading.Event(), 0
        self.hold_at = hold_at

    def predict(self, files, **thresholds):
        from core.serving.inference import Prediction

        if self.calls == self.hold_at:
            self.waiting.set()
            assert self.gate.wait(30), "the test never opened the gate"
        self.calls += 1
        return [Prediction(file=name, label="cats", confidence=0.9, probabilities={"cats": 0.9}) for name, _ in files]


def photos_on_disk(tmp_path, count: int):
    from core.serving.batch import Photo

    photos = []
    for index in range(count):
        path = tmp_path / f"{index:02d}.jpg"
        path.write_bytes(b"pretend jpeg")
        photos.append(Photo(f"trip/{path.name}", path))
    return photos


def test_a_job_classifies_in_the_background_with_progress(tmp_path, monkeypatch):
    from core.serving.batch import BatchJob, JobState

    monkeypatch.setattr("core.serving.batch.BATCH", 3)
    predictor = GatedPredictor(hold_at=1)
    photos = photos_on_disk(tmp_path, 7)

    job = BatchJob.start(predictor, photos)
    assert predictor.waiting.wait(10)  # held in its second batch: the caller's thread is free

    assert (job.state, job.done, job.total) == (JobState.RUNNING, 3, 7) and job.predictions == []
    predictor.gate.set()
    assert job.wait(10) == JobState.DONE
    assert job.done == 7 and [p.file for p in job.predictions] == [p.name for p in photos]
    assert predictor.calls == 3


def test_a_cancelled_job_stops_between_batches_and_keeps_nothing(tmp_path, monkeypatch):
    from core.serving.batch import BatchJob, JobState

    monkeypatch.setattr("core.serving.batch.BATCH", 2)
    predictor = GatedPredictor(hold_at=1)
    job = BatchJob.start(predictor, photos_on_disk(tmp_path, 10))
    assert predictor.waiting.wait(10)

    job.cancel()
    assert job.cancelling  # the batch in hand finishes first
    predictor.gate.set()

    assert job.wait(10) == JobState.CANCELLED
    assert predictor.calls == 2 and job.done == 4 and job.predictions == []
    assert not job.cancelling and not job.running


def test_a_job_that_fails_says_why(tmp_path):
    from core.serving.batch import BatchJob, JobState

    photos = photos_on_disk(tmp_path, 2)
    photos[1].path.unlink()  # the work folder went away under it

    job = BatchJob.start(GatedPredictor(), photos)

    assert job.wait(10) == JobState.FAILED
    assert isinstance(job.error, FileNotFoundError) and job.predictions == []
