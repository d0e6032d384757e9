"""Shared fixtures: the real photos in ../shared, and tiny generated datasets."""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() == "true"
WEIGHTS_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_160_no_top.h5"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared (or $PAWLAB_SHARED). In CI a missing folder fails the run."""
    path = Path(os.environ.get("PAWLAB_SHARED", REPO.parent / "shared")).resolve()
    if not (path / "data" / "cats_and_dogs" / "train").is_dir():
        message = f"shared data not found at {path} (set PAWLAB_SHARED)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def cats_and_dogs(shared_dir) -> Path:
    return shared_dir / "data" / "cats_and_dogs"


@pytest.fixture(scope="session")
def keras_home(shared_dir, tmp_path_factory) -> Path:
    """A KERAS_HOME whose models/ folder holds the shared ImageNet weights, every size there is."""
    source = shared_dir / "weights" / WEIGHTS_FILE
    if not source.is_file():
        message = f"shared weights not found at {source}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    home = tmp_path_factory.mktemp("keras_home")
    (home / "models").mkdir()
    for weights in sorted(source.parent.glob("*.h5")):
        (home / "models" / weights.name).symlink_to(weights)
    return home


def _test_run_folder(tmp_path_factory, worker_id) -> Path:
    """A folder of this test run that pytest-xdist's workers share (each has its own basetemp)."""
    basetemp = tmp_path_factory.getbasetemp()
    return basetemp if worker_id == "master" else basetemp.parent


@pytest.fixture(scope="session")
def seed_photo_embeddings(cats_and_dogs, keras_home, tmp_path_factory, worker_id) -> Callable[[Path], None]:
    """Puts the doctor's embeddings of every shared photo into a PAWLAB_HOME's cache.

    The doctor keys an embedding by the photo's bytes (core.models.embeddings), so a
    copy of the shared photos, renamed or moved to another class, finds its own here.
    They are computed once per test run, under a lock that pytest-xdist's workers share
    (one pass over 3000 photos is about 40 s of both cores), then hard-linked in.
    """
    from core.models.embeddings import EMBEDDING_SIZE, embed_files

    run_root = _test_run_folder(tmp_path_factory, worker_id)
    shared_home = run_root / "shared_photo_embeddings"
    with (run_root / "shared_photo_embeddings.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared_home / "complete").exists():
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("PAWLAB_HOME", str(shared_home))
                patch.setenv("KERAS_HOME", str(keras_home))
                embed_files(sorted(cats_and_dogs.glob("*/*/*.jpg")), EMBEDDING_SIZE)
            (shared_home / "complete").touch()

    def seed(home: Path) -> None:
        shutil.copytree(
            shared_home / "cache" / "embeddings",
            home / "cache" / "embeddings",
            copy_function=os.link,  # the cache replaces a file whole, never writes into one
            dirs_exist_ok=True,
        )

    return seed


@pytest.fixture(autouse=True)
def pawlab_home(tmp_path, monkeypatch) -> Path:
    """Every test writes under its own PAWLAB_HOME, never the user's."""
    home = tmp_path / "pawlab_home"
    monkeypatch.setenv("PAWLAB_HOME", str(home))
    return home


def make_separable_dataset(
    root: Path,
    classes=("circles", "squares"),
    per_class: int = 12,
    size: int = 48,
    splits=("train", "validation"),
    seed: int = 0,
) -> Path:
    """Photos a model can tell apart in a few epochs: each class has its own
    colour and shape, with random position and noise so it is still learning."""
    rng = np.random.default_rng(seed)
    palette = [(220, 40, 40), (40, 90, 220), (40, 180, 60), (230, 200, 30)]
    for split in splits:
        count = per_class if split in ("train", "") else max(2, per_class // 2)
        for index, name in enumerate(classes):
            folder = root / split / name if split else root / name
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(count):
                pixels = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
                x, y = rng.integers(4, size // 2, 2)
                extent = size // 3
                if index % 2 == 0:
                    yy, xx = np.ogrid[:size, :size]
                    mask = (yy - y - extent // 2) ** 2 + (xx - x - extent // 2) ** 2 < (extent // 2) ** 2
                else:
                    mask = np.zeros((size, size), bool)
                    mask[y : y + extent, x : x + extent] = True
                pixels[mask] = palette[index % len(palette)]
                Image.fromarray(pixels).save(folder / f"{name}.{split or 'all'}.{n}.jpg", quality=92)
    return root


@pytest.fixture
def tiny_dataset(tmp_path) -> Path:
    return make_separable_dataset(tmp_path / "tiny")


@pytest.fixture
def deferred_downloads(monkeypatch) -> dict:
    """What the pages' download buttons would hand the browser when clicked: their
    data callables, by file name (AppTest does not click downloads)."""
    from streamlit.runtime.media_file_manager import MediaFileManager

    offered = {}
    add = MediaFileManager.add_deferred

    def recording(self, data_callable, mimetype, coordinates, file_name=None, **kwargs):
        offered[file_name] = data_callable
        return add(self, data_callable, mimetype, coordinates, file_name=file_name, **kwargs)

    monkeypatch.setattr(MediaFileManager, "add_deferred", recording)
    return offered
