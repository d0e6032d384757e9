"""The photos a run uses: split once when it starts, recorded, read back later.

    splits = prepare_data(config)                  # the run's one scan: split, subset, checked
    write_split(run_dir, splits.to_record())       # split.json (core.runs.store)
    ...
    splits = run_splits(run_dir, config)           # evaluation, later checks: the same photos

A run records its split so that evaluating it again (``python -m core
evaluate``) scores exactly the photos it was tested on, even after photos
were added to or removed from the dataset folder. Runs made before split.json
existed are split again by their seed and fractions. The recorded training
set is the one trained on: the subset, when the run used one. The record also
says which duplicates the split kept together (``Splits.grouping``: exact
copies, and the near-duplicate groups of the data doctor's report of that
date when there was one); a split.json older than that reads as none.

No TensorFlow here: a wrong folder fails in a second.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from core.data.dataset import DatasetError
from core.data.splits import Splits, split_dataset, subset
from core.runs.recipes import TrainConfig
from core.runs.store import read_split

# Fewer classes than this is not a classification problem.
MIN_CLASSES = 2


def split_for(config: TrainConfig) -> Splits:
    """Scan ``config``'s dataset and split it by the run's rule, with the corrections it was
    submitted with and its training subset applied."""
    _, splits = split_dataset(
        config.data_root, config.seed, config.test_fraction, config.validation_fraction, corrections=config.corrections
    )
    if config.subset:
        splits = replace(splits, train=subset(splits.train, config.subset, seed=config.seed))
    return splits


def prepare_data(config: TrainConfig) -> Splits:
    """The run's split, checked to be trainable; raises DatasetError with a sentence if not."""
    splits = split_for(config)
    if len(splits.classes) < MIN_CLASSES:
        raise DatasetError("Training needs at least two classes (two class folders).")
    if not splits.train or not splits.validation:
        raise DatasetError(
            f"Not enough images: {len(splits.train)} for training and {len(splits.validation)} "
            "for validation. Each class needs a few images in each split."
        )
    return splits


def run_splits(run_dir: str | os.PathLike, config: TrainConfig) -> Splits:
    """The photos the run used: its split.json, or (older runs) the dataset split again."""
    record = read_split(run_dir)
    if record is None:
        return split_for(config)
    return Splits.from_record(record, config.data_root)


def missing_files(splits: Splits, split: str) -> list[str]:
    """Recorded photos of ``split`` that are no longer on disk, relative to the dataset."""
    return [
        str(Path(sample.path).relative_to(splits.root))
        for sample in splits.as_dict()[split]
        if not os.path.isfile(sample.path)
    ]
