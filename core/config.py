"""Where PawLab keeps things, and the limits it enforces.

Everything the app writes lives under one folder, ``PAWLAB_HOME`` (default
``~/.pawlab``): downloaded and extracted datasets, training runs, caches and
saved augmentation configs. Settings are read from the environment each time
``get_settings()`` is called, so tests can point a process at a temp folder.

A bad value (``PAWLAB_MAX_IMAGE_PIXELS=50M``) is a ``SettingsError`` naming
the variable; the app and the CLI call ``check_settings()`` once at start to
say so in one sentence instead of failing later on every page.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

OFFICIAL_DATASET_URL = "https://storage.googleapis.com/mledu-datasets/cats_and_dogs_filtered.zip"

_TRUE_WORDS = {"1", "true", "yes", "on"}


class SettingsError(ValueError):
    """An environment variable PawLab cannot use; the message is meant for a person."""


@dataclass(frozen=True)
class Settings:
    home: Path
    dataset_url: str = OFFICIAL_DATASET_URL
    # Local folders on the server's disk are only browsable when the operator allows it.
    allow_local_paths: bool = False
    # A zip may not expand beyond this many bytes (zip bombs).
    max_extract_bytes: int = 2 * 1024**3
    # Entries in one zip, junk included, read from its last record before parsing.
    max_zip_entries: int = 100_000
    # Uncompressed:compressed bytes, per entry and overall. Photos barely compress.
    max_compression_ratio: int = 200
    # Everything under datasets/ together; an import that would pass it is refused.
    max_datasets_bytes: int = 20_000_000_000
    # Decoded pixels per JPEG; larger images are refused (decompression bombs).
    # JPEGs decode at reduced scale (draft), so phone photos stay cheap.
    max_image_pixels: int = 50_000_000
    # Decoded pixels per PNG, WebP, GIF or BMP: these always decode at full size.
    max_lossless_pixels: int = 16_000_000
    # Bytes of decoded pixels that threads of one process may hold at once.
    decode_budget_bytes: int = 512 * 1024**2
    # One Classify drop: this many photos and bytes at most.
    max_drop_photos: int = 200
    max_drop_bytes: int = 200_000_000
    # One Classify zip (or server folder): this many photos, and files unpacked, at most.
    max_batch_photos: int = 3000
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


# Each whole-number setting: (environment variable, Settings field).
_WHOLE_NUMBERS = (
    ("PAWLAB_MAX_EXTRACT_BYTES", "max_extract_bytes"),
    ("PAWLAB_MAX_ZIP_ENTRIES", "max_zip_entries"),
    ("PAWLAB_MAX_COMPRESSION_RATIO", "max_compression_ratio"),
    ("PAWLAB_MAX_DATASETS_BYTES", "max_datasets_bytes"),
    ("PAWLAB_MAX_IMAGE_PIXELS", "max_image_pixels"),
    ("PAWLAB_MAX_LOSSLESS_PIXELS", "max_lossless_pixels"),
    ("PAWLAB_DECODE_BUDGET_BYTES", "decode_budget_bytes"),
    ("PAWLAB_MAX_DROP_PHOTOS", "max_drop_photos"),
    ("PAWLAB_MAX_DROP_BYTES", "max_drop_bytes"),
    ("PAWLAB_MAX_BATCH_PHOTOS", "max_batch_photos"),
    ("PAWLAB_MAX_CONCURRENT_RUNS", "max_concurrent_runs"),
)


def get_settings() -> Settings:
    """The settings now in the environment; a bad value raises SettingsError."""
    numbers = {field: _whole_number(variable, getattr(Settings, field)) for variable, field in _WHOLE_NUMBERS}
    return Settings(
        home=_home(),
        dataset_url=os.environ.get("PAWLAB_DATASET_URL", OFFICIAL_DATASET_URL),
        allow_local_paths=_env_flag("PAWLAB_ALLOW_LOCAL_PATHS"),
        **numbers,
    )


def check_settings() -> str | None:
    """None when every setting is usable, else the sentence to show once at start."""
    try:
        get_settings()
    except SettingsError as error:
        return str(error)
    return None


def _home() -> Path:
    raw = os.environ.get("PAWLAB_HOME") or str(Path.home() / ".pawlab")
    home = Path(os.path.abspath(Path(raw).expanduser()))
    if "PAWLAB_HOME" in os.environ:
        # Workers and other children may start in another folder: hand them the absolute path.
        os.environ["PAWLAB_HOME"] = str(home)
    return home


def _whole_number(variable: str, default: int) -> int:
    raw = os.environ.get(variable)
    if raw is None:
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        value = 0
    if value < 1:
        raise SettingsError(f"{variable} must be a whole number of at least 1, like {default}, not {raw!r}.")
    return value


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE_WORDS
