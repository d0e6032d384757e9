"""Reproducing the tutorial: its four models, its settings and its numbers.

The tutorial PawLab follows trains three small CNNs and a frozen MobileNetV2
on 160 px cats-and-dogs photos, batch 32, 20 epochs each, and reports their
validation accuracy. Its "test" set is taken from the validation set with
``validation.take(n)`` on a dataset that reshuffles every pass, so test
images leak into validation and its numbers are optimistic. PawLab's splits
(core.data.splits) never overlap, so a reproduction here is a fair measurement.

``tutorial_configs`` builds the four runs; ``find_tutorial_runs`` recognises
them afterwards by their settings (so a run started by hand with the same
recipe counts too). This module never imports TensorFlow.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from core.data.augment import PRESETS
from core.models.zoo import ARCHITECTURES
from core.runs.store import TrainConfig, make_config, read_config, run_dirs

IMAGE_SIZE = 160
BATCH_SIZE = 32
EPOCHS = 20


@dataclass(frozen=True)
class TutorialModel:
    arch: str
    label: str  # short name, as the tutorial's sections call it
    reported: float  # validation accuracy the tutorial printed
    rerun: float  # what the tutorial's own code gave when we ran it again (same leak)


# In the tutorial's order. ``reported`` is also ArchSpec.tutorial_val_accuracy.
TUTORIAL_MODELS: tuple[TutorialModel, ...] = tuple(
    TutorialModel(arch, label, ARCHITECTURES[arch].tutorial_val_accuracy, rerun)
    for arch, label, rerun in (
        ("cnn", "CNN", 0.68),
        ("cnn_aug", "+ augmentation", 0.58),
        ("cnn_aug_preproc", "+ preprocessing", 0.73),
        ("mobilenet_v2", "MobileNetV2", 0.98),
    )
)
TUTORIAL_ARCHS = tuple(model.arch for model in TUTORIAL_MODELS)

# Our recipes, the next step once the tutorial's numbers are reproduced:
# make_config arguments on top of the tutorial's image and batch size.
NEXT_STEPS: dict[str, dict] = {
    # Augmented photos keep a from-scratch CNN learning for longer; stop when it plateaus.
    "cnn_plus": {"epochs": 30, "patience": 8},
    # Head on cached features first (fast), then the top of the base, tiny steps.
    "mobilenet_v2_finetune": {"epochs": 10, "fine_tune_epochs": 10},
}

LEAK_NOTE = (
    "The tutorial's \"test\" images are taken from its validation set, which is "
    "reshuffled on every pass, so they overlap the images it validates on. "
    "PawLab's train, validation and test splits never share a photo, so its "
    "numbers can come out lower and are the honest ones."
)


def tutorial_configs(data_root: str | os.PathLike) -> list[TrainConfig]:
    """The tutorial's four runs on ``data_root``: 160 px, batch 32, 20 epochs, its augmentations."""
    return [
        make_config(data_root, arch, EPOCHS, batch_size=BATCH_SIZE, image_size=IMAGE_SIZE,
                    augment=ARCHITECTURES[arch].default_augment)
        for arch in TUTORIAL_ARCHS
    ]


def recipe_config(data_root: str | os.PathLike, arch: str) -> TrainConfig:
    """One of our recipes (NEXT_STEPS) on ``data_root``."""
    return make_config(data_root, arch, batch_size=BATCH_SIZE, image_size=IMAGE_SIZE, **NEXT_STEPS[arch])


def describe_recipe(arch: str) -> str:
    recipe = NEXT_STEPS[arch]
    spec = ARCHITECTURES[arch]
    parts = [f"{IMAGE_SIZE} px, batch {BATCH_SIZE}, {recipe['epochs']} epochs"]
    if recipe.get("fine_tune_epochs"):
        parts.append(f"then {recipe['fine_tune_epochs']} fine-tuning epochs")
    if recipe.get("patience"):
        parts.append(f"early stopping after {recipe['patience']} epochs without progress")
    parts.append(f"augmentation: {spec.default_augment}")
    return ", ".join(parts) + "."


def is_tutorial_config(config: TrainConfig) -> bool:
    """Whether ``config`` is one of the tutorial's runs (any dataset)."""
    if config.arch not in TUTORIAL_ARCHS:
        return False
    preset = PRESETS[ARCHITECTURES[config.arch].default_augment]
    return (
        config.image_size == IMAGE_SIZE and config.batch_size == BATCH_SIZE
        and config.epochs == EPOCHS and config.fine_tune_epochs == 0
        and config.subset == 0 and config.patience == 0
        and config.augment.to_dict() == preset.to_dict()
    )


def find_tutorial_runs(data_root: str | os.PathLike,
                       runs_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """The newest tutorial run of each of the four models on ``data_root``, by arch."""
    root = str(Path(data_root).expanduser().resolve())
    found: dict[str, Path] = {}
    for run_dir in run_dirs(runs_dir):  # oldest first: newer ones overwrite
        try:
            config = read_config(run_dir)
        except (OSError, ValueError, TypeError):
            continue
        if config.data_root == root and is_tutorial_config(config):
            found[config.arch] = run_dir
    return found
