"""What a sweep searches: the knobs of a recipe, their ranges, and what a trial costs.

A sweep trains many runs of one architecture that differ in a few knobs and
keeps the best by validation accuracy (core.runs.sweep drives it with Ray
Tune). This module only describes and checks the search; no Ray, no
TensorFlow, so the Train page and the CLI can check a search before anything
starts::

    spec = SweepSpec.from_grid(trials=8, grid={"learning_rate": ["1e-3", "3e-4"]})
    spec.cost(base_config)          # Cost.HEAD: trials train on cached features

A knob is either sampled (``low``/``high``, or one of ``values``) or a grid
(every value is tried). ``trials`` is how many runs in all; with a grid of G
combinations, each combination is tried ceil(trials / G) times (Ray Tune's
``num_samples``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from core.models.zoo import ARCHITECTURES, Family

# A sweep is one entry in the queue; this bounds what one visitor can ask for.
MAX_TRIALS = 200
MAX_GRID_VALUES = 20
# Trials of a sweep that run at the same time, unless the sweep says otherwise.
DEFAULT_TRIALS = 8


class Knob(StrEnum):
    LEARNING_RATE = "learning_rate"
    DROPOUT = "dropout"
    HEAD_UNITS = "head_units"
    EPOCHS = "epochs"
    AUGMENT = "augment"
    IMAGE_SIZE = "image_size"
    FINE_TUNE_LAYERS = "fine_tune_layers"


class Cost(StrEnum):
    """What one trial costs, from the knobs the sweep changes."""

    HEAD = "head"  # the head trains on cached features: seconds per trial
    FEATURES = "features"  # each image size is one more pass of the base over every photo
    END_TO_END = "end_to_end"  # images through the network every epoch: minutes per trial


COST_SENTENCES = {
    Cost.HEAD: "Trials train the head on cached features: seconds each, after one feature pass.",
    Cost.FEATURES: "Each image size costs a pass of the ImageNet base over every photo "
    "(about a minute for 3000 photos on 2 cores) before its trials train in seconds.",
    Cost.END_TO_END: "Trials push images through the network every epoch (augmentation, fine-tuning "
    "or a from-scratch model): minutes each, as long as a normal run.",
}


def _parse_whole(text, low: int) -> int:
    value = float(text)
    if value != int(value) or value < low:
        raise ValueError(f"a whole number of at least {low}")
    return int(value)


def _parse_rate(text) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise ValueError("a number between 0 and 1")
    return value


def _parse_dropout(text) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise ValueError("a number from 0 up to (not including) 1")
    return value


PARSERS: dict[Knob, Callable[[Any], float | int | str]] = {
    Knob.LEARNING_RATE: _parse_rate,
    Knob.DROPOUT: _parse_dropout,
    Knob.HEAD_UNITS: lambda text: _parse_whole(text, 0),
    Knob.EPOCHS: lambda text: _parse_whole(text, 1),
    Knob.AUGMENT: str,  # checked against the saved augmentations when the trial is made
    Knob.IMAGE_SIZE: lambda text: _parse_whole(text, 32),
    Knob.FINE_TUNE_LAYERS: lambda text: _parse_whole(text, 0),
}


def parse_knob(name: str) -> Knob:
    try:
        return Knob(name)
    except ValueError:
        raise ValueError(f"Unknown knob '{name}'. Choose from: {', '.join(Knob)}.") from None


def parse_value(knob: Knob, text) -> float | int | str:
    try:
        return PARSERS[knob](text)
    except (TypeError, ValueError) as error:
        reason = error.args[0] if error.args and "could not convert" not in str(error) else "a number"
        raise ValueError(f"'{text}' is not a valid {knob}: it must be {reason}.") from None


@dataclass(frozen=True)
class KnobSpace:
    """How one knob varies: a grid or a choice of ``values``, or a range ``low``..``high``."""

    values: tuple = ()
    grid: bool = False  # try every value (else sample one per trial)
    low: float | None = None
    high: float | None = None
    log: bool = False  # sample the range on a log scale (learning rates)

    def __post_init__(self):
        object.__setattr__(self, "values", tuple(self.values))
        if self.values:
            if len(self.values) > MAX_GRID_VALUES:
                raise ValueError(f"At most {MAX_GRID_VALUES} values per knob.")
        elif self.low is None or self.high is None or not self.low < self.high:
            raise ValueError("A knob needs values, or a range with low below high.")
        elif self.log and self.low <= 0:
            raise ValueError("A log-scale range must be above 0.")

    def describe(self) -> str:
        if self.values:
            listed = ", ".join(f"{value:g}" if isinstance(value, float) else str(value) for value in self.values)
            return f"{'every one of' if self.grid else 'one of'} {listed}"
        return f"{self.low:g} to {self.high:g}{' (log scale)' if self.log else ''}"


# What a sweep searches when it is not told: the head's knobs, as the field tunes them.
DEFAULT_TRANSFER_SPACE = {
    Knob.LEARNING_RATE: KnobSpace(low=1e-4, high=1e-2, log=True),
    Knob.DROPOUT: KnobSpace(low=0.0, high=0.5),
    Knob.HEAD_UNITS: KnobSpace(values=(0, 64, 128, 256)),
}
DEFAULT_SCRATCH_SPACE = {
    Knob.LEARNING_RATE: KnobSpace(low=1e-4, high=1e-2, log=True),
}


@dataclass(frozen=True)
class SweepSpec:
    """A sweep: how many trials, which knobs vary and how, and how many run at once."""

    trials: int = DEFAULT_TRIALS
    knobs: dict[str, KnobSpace] = field(default_factory=dict)
    concurrent: int = 0  # trials at the same time; 0: as many as the CPUs Ray has
    # ASHA: a trial is stopped early when, after at least this many epochs, it is in the
    # bottom half of the trials that got that far.
    grace_epochs: int = 1

    def __post_init__(self):
        if isinstance(self.trials, bool) or not isinstance(self.trials, int) or not 1 <= self.trials <= MAX_TRIALS:
            raise ValueError(f"A sweep has 1 to {MAX_TRIALS} trials, not {self.trials}.")
        if not self.knobs:
            raise ValueError("A sweep needs at least one knob to vary.")
        knobs = {}
        for name, space in self.knobs.items():
            knob = parse_knob(name)
            if isinstance(space, dict):
                space = KnobSpace(**space)
            values = tuple(parse_value(knob, value) for value in space.values)
            knobs[knob.value] = KnobSpace(values, space.grid, space.low, space.high, space.log)
        object.__setattr__(self, "knobs", knobs)

    @classmethod
    def from_grid(
        cls, trials: int, grid: dict[str, list], *, arch_family: Family = Family.TRANSFER, concurrent: int = 0
    ) -> SweepSpec:
        """The default search of the family, with ``grid``'s knobs tried at every listed value."""
        default = DEFAULT_TRANSFER_SPACE if arch_family is Family.TRANSFER else DEFAULT_SCRATCH_SPACE
        knobs = {knob.value: space for knob, space in default.items()}
        for name, values in grid.items():
            knobs[parse_knob(name).value] = KnobSpace(values=tuple(values), grid=True)
        return cls(trials=trials, knobs=knobs, concurrent=concurrent)

    @property
    def grid_size(self) -> int:
        return math.prod(len(space.values) for space in self.knobs.values() if space.grid)

    @property
    def samples_per_grid_point(self) -> int:
        """Ray Tune's num_samples: the trials spread over the grid's combinations."""
        return math.ceil(self.trials / self.grid_size)

    @property
    def total_trials(self) -> int:
        return self.samples_per_grid_point * self.grid_size

    def cost(self, fine_tunes: bool, frozen_base: bool, augments: bool) -> Cost:
        """What a trial costs for a base run that (does not) fine-tune, freeze a base, augment."""
        changed = {Knob(name) for name in self.knobs}
        if not frozen_base or fine_tunes or augments or Knob.AUGMENT in changed or Knob.FINE_TUNE_LAYERS in changed:
            return Cost.END_TO_END
        if Knob.IMAGE_SIZE in changed:
            return Cost.FEATURES
        return Cost.HEAD

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SweepSpec:
        knobs = {name: KnobSpace(**space) for name, space in (data.get("knobs") or {}).items()}
        return cls(
            trials=data.get("trials", DEFAULT_TRIALS),
            knobs=knobs,
            concurrent=data.get("concurrent", 0),
            grace_epochs=data.get("grace_epochs", 1),
        )


def knobs_for(arch: str) -> list[Knob]:
    """The knobs that apply to ``arch``: a head only for transfer models, fine-tuning where it fine-tunes."""
    spec = ARCHITECTURES[arch]
    knobs = [Knob.LEARNING_RATE]
    if spec.family is Family.TRANSFER:
        knobs += [Knob.DROPOUT, Knob.HEAD_UNITS]
    knobs += [Knob.EPOCHS, Knob.AUGMENT, Knob.IMAGE_SIZE]
    if spec.fine_tune:
        knobs.append(Knob.FINE_TUNE_LAYERS)
    return knobs
