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

from core import defaults
from core.runs.recipes import TUTORIAL_EPOCHS, TrainConfig, make_config, recipe_for
from core.runs.store import RunFileError, read_config, run_dirs


@dataclass(frozen=True)
class Rerun:
    """What the tutorial's own code gave when we ran it again (its leaky validation split)."""

    val_accuracy: float  # best validation accuracy over its epochs
    date: str
    command: str
    results: str  # the folder under benchmarks/results with every epoch

    def describe(self) -> str:
        return f"{self.val_accuracy:.1%} on {self.date}: `{self.command}` ({self.results})"


@dataclass(frozen=True)
class TutorialModel:
    arch: str
    label: str  # short name, as the tutorial's sections call it
    reported: float  # validation accuracy the tutorial printed
    rerun: Rerun | None  # None: not re-run with a recorded command yet

    @property
    def rerun_accuracy(self) -> float | None:
        return self.rerun.val_accuracy if self.rerun else None


def _rerun(val_accuracy: float, models: str, folder: str) -> Rerun:
    """A figure printed by ``benchmarks/bench_training.py --tutorial MODELS`` on 2026-11-30."""
    results = f"benchmarks/results/{folder}"
    command = f"python benchmarks/bench_training.py --models '' --tutorial {models} --out {results}"
    return Rerun(val_accuracy, "2026-11-30", command, results)


# In the tutorial's order.
TUTORIAL_MODELS: tuple[TutorialModel, ...] = (
    TutorialModel("cnn", "CNN", 0.61, _rerun(0.738, "cnn,cnn_aug,cnn_aug_preproc", "tutorial_cnns")),
    TutorialModel("cnn_aug", "+ augmentation", 0.66, _rerun(0.699, "cnn_aug,cnn_aug_preproc", "tutorial_cnn_aug")),
    TutorialModel(
        "cnn_aug_preproc", "+ preprocessing", 0.70, _rerun(0.702, "cnn_aug,cnn_aug_preproc", "tutorial_cnn_aug")
    ),
    TutorialModel("mobilenet_v2", "MobileNetV2", 0.97, _rerun(0.985, "mobilenet_v2", "tutorial_mobilenet_v2")),
)
TUTORIAL_ARCHS = tuple(model.arch for model in TUTORIAL_MODELS)
REPORTED = {model.arch: model.reported for model in TUTORIAL_MODELS}
# Our recipes, the next step once the tutorial's numbers are reproduced.
NEXT_STEPS = ("cnn_plus", "mobilenet_v2_finetune")

LEAK_NOTE = (
    'The tutorial\'s "test" images are taken from its validation set, which is '
    "reshuffled on every pass, so they overlap the images it validates on. "
    "PawLab's train, validation and test splits never share a photo, so its "
    "numbers can come out lower and are the honest ones."
)


def tutorial_configs(data_root: str | os.PathLike) -> list[TrainConfig]:
    """The tutorial's four runs on ``data_root``: their recipes are the tutorial's settings."""
    return [make_config(data_root, arch) for arch in TUTORIAL_ARCHS]


def describe_recipe(arch: str) -> str:
    return f"{defaults.IMAGE_SIZE} px, batch {defaults.BATCH_SIZE}, {recipe_for(arch).describe()}."


def is_tutorial_config(config: TrainConfig) -> bool:
    """Whether ``config`` is one of the tutorial's runs (any dataset)."""
    if config.arch not in TUTORIAL_ARCHS:
        return False
    recipe = make_config(config.data_root, config.arch)
    return (
        config.image_size == recipe.image_size
        and config.batch_size == recipe.batch_size
        and config.epochs == TUTORIAL_EPOCHS
        and config.fine_tune_epochs == 0
        and config.subset == 0
        and config.patience == 0
        and config.augment.to_dict() == recipe.augment.to_dict()
    )


def find_tutorial_runs(data_root: str | os.PathLike, runs_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """The newest tutorial run of each of the four models on ``data_root``, by arch."""
    root = str(Path(data_root).expanduser().resolve())
    found: dict[str, Path] = {}
    for run_dir in run_dirs(runs_dir):  # oldest first: newer ones overwrite
        try:
            config = read_config(run_dir)
        except RunFileError:
            continue
        if config.data_root == root and is_tutorial_config(config):
            found[config.arch] = run_dir
    return found
