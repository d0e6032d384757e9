"""Data augmentation as a named, saved config of Keras preprocessing layers.

The Dataset page previews an ``AugmentConfig``; the Train page trains with
the same config, so what a person previews is what the model is trained on.
Configs are plain dataclasses (no TensorFlow needed to read or save them);
``build_augmentation`` turns one into Keras layers.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from pathlib import Path

from core.config import get_settings
from core.fileio import read_json, write_json


class Flip(StrEnum):
    """keras.layers.RandomFlip's modes, plus none."""

    NONE = "none"
    HORIZONTAL = "horizontal"
    VERTICAL = "vertical"
    BOTH = "horizontal_and_vertical"


# Plain strings: what the Dataset page's radio shows and what a saved config holds.
FLIP_MODES = tuple(mode.value for mode in Flip)


@dataclass(frozen=True)
class AugmentConfig:
    name: str = "none"
    flip: str = Flip.NONE.value  # one of FLIP_MODES
    rotation: float = 0.0  # fraction of a full turn, as keras.layers.RandomRotation
    zoom: float = 0.0  # +/- fraction of height
    translation: float = 0.0  # +/- fraction of height and width
    contrast: float = 0.0  # +/- factor
    brightness: float = 0.0  # +/- fraction of the value range

    def __post_init__(self):
        if self.flip not in FLIP_MODES:
            raise ValueError(f"flip must be one of {FLIP_MODES}, not {self.flip!r}")
        for f in fields(self):
            if f.name not in ("name", "flip"):
                value = getattr(self, f.name)
                if not 0.0 <= value <= 1.0:
                    raise ValueError(f"{f.name} must be between 0 and 1, not {value}")

    @property
    def is_identity(self) -> bool:
        return self.flip == Flip.NONE and not any(
            (self.rotation, self.zoom, self.translation, self.contrast, self.brightness)
        )

    def describe(self) -> str:
        parts = []
        if self.flip != Flip.NONE:
            parts.append(f"flip {self.flip.replace('_', ' ')}")
        for label in ("rotation", "zoom", "translation", "contrast", "brightness"):
            value = getattr(self, label)
            if value:
                parts.append(f"{label} {value:g}")
        return ", ".join(parts) or "no augmentation"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> AugmentConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# The tutorial's augmentations, and one that suits photos of pets better:
# upside-down cats do not occur, so no vertical flips or full turns.
PRESETS: dict[str, AugmentConfig] = {
    "none": AugmentConfig("none"),
    "tutorial": AugmentConfig("tutorial", flip="vertical", rotation=1.0),
    "tutorial_preproc": AugmentConfig("tutorial_preproc", flip="horizontal_and_vertical", rotation=0.2),
    "recommended": AugmentConfig(
        "recommended", flip="horizontal", rotation=0.1, zoom=0.2, translation=0.1, contrast=0.1
    ),
}


def build_augmentation(config: AugmentConfig, seed: int | None = None):
    """Keras preprocessing layers for ``config``; inputs are float images in [0, 255]."""
    import keras

    layers = []
    if config.flip != Flip.NONE:
        layers.append(keras.layers.RandomFlip(config.flip, seed=seed))
    if config.rotation:
        layers.append(keras.layers.RandomRotation(config.rotation, fill_mode="reflect", seed=seed))
    if config.zoom:
        layers.append(keras.layers.RandomZoom(config.zoom, fill_mode="reflect", seed=seed))
    if config.translation:
        layers.append(
            keras.layers.RandomTranslation(config.translation, config.translation, fill_mode="reflect", seed=seed)
        )
    if config.contrast:
        layers.append(keras.layers.RandomContrast(config.contrast, value_range=(0, 255), seed=seed))
    if config.brightness:
        layers.append(keras.layers.RandomBrightness(config.brightness, value_range=(0, 255), seed=seed))
    return keras.Sequential(layers, name=f"augment_{_slug(config.name)}")


def preview(image, config: AugmentConfig, count: int, seed: int):
    """``count`` augmented variants of one uint8 image, reproducible for a seed."""
    import numpy as np

    batch = np.repeat(np.asarray(image, dtype="float32")[None], count, axis=0)
    if config.is_identity:
        return batch.astype("uint8")
    augmented = build_augmentation(config, seed=seed)(batch, training=True)
    return np.clip(np.asarray(augmented), 0, 255).astype("uint8")


# Saved configs: one JSON file per name under PAWLAB_HOME/augmentations/.


def _slug(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_-]+", "_", name).strip("_") or "unnamed"


def _folder() -> Path:
    return get_settings().augmentations_dir


def save_config(config: AugmentConfig) -> Path:
    """Save under its name; sessions saving at once each write a whole file."""
    if config.name in PRESETS:
        raise ValueError(f"'{config.name}' is a built-in preset; choose another name.")
    folder = _folder()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{_slug(config.name)}.json"
    write_json(path, config.to_dict())
    return path


def _read_saved(path: Path) -> AugmentConfig | None:
    """A saved config, or None for a damaged or hand-edited file that is not one."""
    record = read_json(path)
    if not record.ok:
        return None
    try:
        return AugmentConfig.from_dict(record.value)
    except (ValueError, TypeError):
        return None


def list_configs() -> dict[str, AugmentConfig]:
    """Built-in presets first, then saved configs by name; a broken file hides nothing else."""
    configs = dict(PRESETS)
    folder = _folder()
    if folder.is_dir():
        for path in sorted(folder.glob("*.json")):
            config = _read_saved(path)
            if config is not None:
                configs[config.name] = config
    return configs


def load_config(name: str) -> AugmentConfig:
    configs = list_configs()
    if name not in configs:
        raise KeyError(f"No augmentation config named '{name}'.")
    return configs[name]
