"""Where PawLab keeps things, and the limits it enforces.

Everything the app writes lives under one folder, ``PAWLAB_HOME`` (default
``~/.pawlab``): downloaded and extracted datasets, training runs, caches and
saved augmentation configs. Settings are read from the environment each time
``get_settings()`` is called, so tests can point a process at a temp folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

OFFICIAL_DATASET_URL = (
    "https://storage.googleapis.com/mledu-datasets/cats_and_dogs_filtered.zip"
)


_TRUE_WORDS = {"1", "true", "yes", "on"}


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE_WORDS


@dataclass(frozen=True)
class Settings:
    home: Path
    dataset_url: str = OFFICIAL_DATASET_URL
    # Local folders on the server's disk are only browsable when the operator allows it.
    allow_local_paths: bool = False
    # A zip may not expand beyond this many bytes (zip bombs).
    max_extract_bytes: int = 2 * 1024**3
    # Decoded pixels per image; larger images are refused (decompression bombs).
    max_image_pixels: int = 50_000_000
    # Training runs at the same time; one keeps two CPU cores busy already.
    max_concurrent_runs: int = 1

    @property
    def datasets_dir(self) -> Path:
        return self.home / "datasets"

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def augmentations_dir(self) -> Path:
        return self.home / "augmentations"


def get_settings() -> Settings:
    home = Path(os.environ.get("PAWLAB_HOME") or Path.home() / ".pawlab").expanduser()
    return Settings(
        home=home,
        dataset_url=os.environ.get("PAWLAB_DATASET_URL", OFFICIAL_DATASET_URL),
        allow_local_paths=_env_flag("PAWLAB_ALLOW_LOCAL_PATHS"),
        max_extract_bytes=int(
            os.environ.get("PAWLAB_MAX_EXTRACT_BYTES", Settings.max_extract_bytes)
        ),
        max_image_pixels=int(
            os.environ.get("PAWLAB_MAX_IMAGE_PIXELS", Settings.max_image_pixels)
        ),
        max_concurrent_runs=int(
            os.environ.get("PAWLAB_MAX_CONCURRENT_RUNS", Settings.max_concurrent_runs)
        ),
    )
