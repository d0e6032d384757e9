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
from dataclasses import asdict, dataclass, field
from enum import StrEnum

from core.data.augment import list_configs
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


@dataclass(frozen=True)
class KnobRange:
    """The numbers one knob may take: ``low`` to ``high``, each end included unless it says not."""

    low: float
    high: float
    whole: bool = False  # whole numbers only
    above_low: bool = False  # low itself is not allowed
    below_high: bool = False  # high itself is not allowed

    def contains(self, value: float) -> bool:
        """Whether ``value`` is allowed; nan and the infinities never are."""
        above = self.low < value if self.above_low else self.low <= value
        below = value < self.high if self.below_high else value <= self.high
        return above and below and (not self.whole or float(value).is_integer())

    def describe(self) -> str:
        if self.whole:
            return f"a whole number from {self.low:g} to {self.high:g}"
        if self.above_low and self.below_high:
            return f"a number above {self.low:g} and below {self.high:g}"
        if self.below_high:
            return f"a number from {self.low:g} up to (not including) {self.high:g}"
        return f"a number from {self.low:g} to {self.high:g}"


# The one home of each knob's bounds: the Train form, the Sweep tab, the CLI and
# jobs.submit all check against it. Wide enough for any run worth training, narrow
# enough that no single value takes the machine's memory (10000 px images) or its
# time (a billion epochs, which would also become the sweep scheduler's horizon).
MAX_EPOCHS = 500
MAX_HEAD_UNITS = 4096  # over three times MobileNetV2's 1280 pooled features
MAX_IMAGE_SIZE = 512  # a batch of 32 such images is 100 MB of floats before any layer
MAX_FINE_TUNE_LAYERS = 154  # every layer of MobileNetV2's base
KNOB_RANGES: dict[Knob, KnobRange] = {
    Knob.LEARNING_RATE: KnobRange(0, 1, above_low=True, below_high=True),
    Knob.DROPOUT: KnobRange(0, 1, below_high=True),
    Knob.HEAD_UNITS: KnobRange(0, MAX_HEAD_UNITS, whole=True),
    Knob.EPOCHS: KnobRange(1, MAX_EPOCHS, whole=True),
    Knob.IMAGE_SIZE: KnobRange(32, MAX_IMAGE_SIZE, whole=True),
    Knob.FINE_TUNE_LAYERS: KnobRange(0, MAX_FINE_TUNE_LAYERS, whole=True),
}
# Knobs a sweep may sample from a range; the whole-number ones and augment take a list.
RANGE_KNOBS = (Knob.LEARNING_RATE, Knob.DROPOUT)


def _parse_number(knob: Knob, text) -> float | int:
    if isinstance(text, bool):  # float(True) is 1.0: a JSON true is no number
        raise ValueError
    value = float(text)
    if not KNOB_RANGES[knob].contains(value):
        raise ValueError
    return int(value) if KNOB_RANGES[knob].whole else value


def _parse_name(text) -> str:
    # Whether an augmentation of that name is saved is checked by check_knobs, before a
    # sweep is queued: a spec read back from a file must not depend on today's saved names.
    if not isinstance(text, str) or not text.strip():
        raise ValueError
    return text.strip()


def parse_knob(name: str) -> Knob:
    try:
        return Knob(name)
    except ValueError:
        raise ValueError(f"Unknown knob '{name}'. Choose from: {', '.join(Knob)}.") from None


def allowed(knob: Knob) -> str:
    """What ``knob`` may be, in words: 'a whole number from 32 to 512'."""
    if knob == Knob.AUGMENT:
        return f"one of {', '.join(list_configs())}"
    return KNOB_RANGES[knob].describe()


def parse_value(knob: Knob, text) -> float | int | str:
    """``text`` (or a number) as ``knob``'s value; ValueError with a sentence naming the knob,
    the value and what it may be, for a value of the wrong kind or out of range."""
    try:
        return _parse_name(text) if knob == Knob.AUGMENT else _parse_number(knob, text)
    except (TypeError, ValueError):
        raise ValueError(f"'{text}' is not a valid {knob}: it must be {allowed(knob)}.") from None


def check_knobs(config) -> None:
    """ValueError with a sentence for a run's knob out of its range, or a search's augmentation
    that is not saved. ``config`` is a TrainConfig (core.runs.recipes), from a form, a command
    or a file: jobs.submit checks it, so nothing out of bounds is ever queued."""
    for knob in KNOB_RANGES:
        value = getattr(config, knob.value)
        if value is not None:  # a head's None: the architecture's own
            parse_value(knob, value)
    search = config.search
    augments = search.knobs.get(Knob.AUGMENT.value) if search is not None else None
    if augments is not None:
        saved = list_configs()
        for name in augments.values:
            if name not in saved:
                raise ValueError(f"'{name}' is not a valid {Knob.AUGMENT}: it must be {allowed(Knob.AUGMENT)}.")


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


def _checked_space(knob: Knob, space: KnobSpace) -> KnobSpace:
    """``space`` with its values (or range ends) parsed and checked against the knob's bounds."""
    if not space.values:
        if knob not in RANGE_KNOBS:
            raise ValueError(f"The {knob} take a list of values, not a range.")
        low, high = (float(parse_value(knob, end)) for end in (space.low, space.high))
        return KnobSpace((), space.grid, low, high, space.log)
    values = tuple(parse_value(knob, value) for value in space.values)
    # Refused, not de-duplicated: a repeated value is most often a typo for another one,
    # and dropping it would quietly try fewer combinations than the person counted.
    for index, value in enumerate(values):
        if value in values[:index]:
            shown = f"{value:g}" if isinstance(value, float) else value
            raise ValueError(f"The {knob} values list {shown} twice: give each value once.")
    return KnobSpace(values, space.grid, space.low, space.high, space.log)


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
            knobs[knob.value] = _checked_space(knob, KnobSpace(**space) if isinstance(space, dict) else space)
        object.__setattr__(self, "knobs", knobs)
        if self.total_trials > MAX_TRIALS:  # a grid multiplies: three knobs of 20 values are 8000 runs
            raise ValueError(
                f"This search asks for {self.total_trials:,} trials ({self.grid_size:,} grid combinations); "
                f"a sweep runs at most {MAX_TRIALS}, so list fewer grid values."
            )

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
        """A spec read back from a file. One that today's checks refuse (queued before they
        existed, or edited by hand) is a TypeError: core.runs.store lists its run as damaged,
        with the sentence, rather than failing the whole runs table."""
        try:
            knobs = {name: KnobSpace(**space) for name, space in (data.get("knobs") or {}).items()}
            return cls(
                trials=data.get("trials", DEFAULT_TRIALS),
                knobs=knobs,
                concurrent=data.get("concurrent", 0),
                grace_epochs=data.get("grace_epochs", 1),
            )
        except ValueError as error:
            raise TypeError(f"its search: {error}") from None


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
