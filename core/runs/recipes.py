"""Recipes: how each architecture is trained by default, and a run's full config.

One home for every training default. The Train page's form, the CLI's flags,
the tutorial's "reproduce" button and the benchmarks all start from
``recipe_for(arch)`` and build a checked ``TrainConfig`` with ``make_config``;
none of them writes a default of its own.

    config = make_config("~/.pawlab/datasets/cats_and_dogs_filtered", "cnn_plus")
    config.epochs           # 60: the recipe's
    config.augment.name     # "recommended"

The tutorial's four models keep the tutorial's recipe (160 px, batch 32,
20 epochs, its augmentations); ours are what we measured to work better.
This module never imports TensorFlow.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path

from core import defaults
from core.data.augment import AugmentConfig, load_config
from core.data.corrections import load_corrections
from core.models.zoo import ARCHITECTURES, Family, Head, default_head
from core.runs.search import Cost, Knob, SweepSpec, parse_value

LEARNING_RATE = 1e-3  # Adam, as the tutorial; also for a transfer model's head
FINE_TUNE_LEARNING_RATE = 1e-5  # TF's transfer-learning guide: tiny steps for the base
# TF's guide fine-tunes MobileNetV2 from layer 100 of 154: its top 54 layers
# (BatchNormalization layers among them stay frozen, see core.models.zoo.unfreeze_top).
FINE_TUNE_LAYERS = 54
# The learning rates the Train page offers.
LEARNING_RATES = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
TUTORIAL_EPOCHS = 20  # the tutorial trains each of its models for 20 epochs
# When the largest training class has at least this many times the photos of the
# smallest, training weights the loss by inverse class frequency (ClassBalance), so
# the few photos of a small class are not outvoted; below it, every photo counts the same.
IMBALANCE_RATIO = 1.5


class Schedule(StrEnum):
    """How the learning rate moves during a run's first phase."""

    CONSTANT = "constant"  # the tutorial's: one rate throughout
    # Warm up from a tenth of the rate, then cosine decay to zero by the last epoch
    # (keras.optimizers.schedules.CosineDecay; see core.runs.training).
    COSINE = "cosine"


def optimizer_name(schedule: str, weight_decay: float) -> str:
    """ "AdamW, weight decay 0.0005, cosine decay after a warm-up", or "Adam" (core.runs.training)."""
    parts = [f"AdamW, weight decay {weight_decay:g}" if weight_decay else "Adam"]
    if schedule == Schedule.COSINE:
        parts.append("cosine decay after a warm-up")
    return ", ".join(parts)


@dataclass(frozen=True)
class ClassBalance:
    """What training does about a training split's class sizes.

    balance = ClassBalance({"cats": 1000, "dogs": 100})
    balance.weights()    # {0: 0.55, 1: 5.5}: Keras fit(class_weight=...)
    balance.describe()   # "...: training weights the loss by inverse class frequency (dogs x10)."
    """

    counts: dict[str, int]  # training photos per class, in the model's class order
    enabled: bool = True  # the run's balance_classes switch

    @property
    def ratio(self) -> float:
        """The largest class over the smallest (classes without photos left out)."""
        sizes = [n for n in self.counts.values() if n > 0]
        return max(sizes) / min(sizes) if sizes else 1.0

    @property
    def imbalanced(self) -> bool:
        return self.ratio >= IMBALANCE_RATIO

    @property
    def weighted(self) -> bool:
        return self.enabled and self.imbalanced

    def weights(self) -> dict[int, float] | None:
        """Inverse class frequency, scaled so the average photo weighs 1 (scikit-learn's "balanced");
        None when training counts every photo the same."""
        if not self.weighted:
            return None
        total, present = sum(self.counts.values()), sum(n > 0 for n in self.counts.values())
        # A class with no training photos never meets its weight; Keras wants every class id.
        return {index: total / (present * n) if n else 1.0 for index, n in enumerate(self.counts.values())}

    def multipliers(self) -> dict[str, float]:
        """How many times a photo of each smaller class counts against one of the largest."""
        largest = max(self.counts.values(), default=0)
        return {name: largest / n for name, n in self.counts.items() if 0 < n < largest}

    def boosts(self) -> str:
        """ "dogs x10, birds x2.5": the multipliers, for people."""
        return ", ".join(f"{name} x{times:.3g}" for name, times in self.multipliers().items())

    def describe(self) -> str:
        """One sentence for people: how uneven the classes are and what training does about it."""
        if not self.imbalanced:
            return (
                f"The training classes are balanced enough (largest {self.ratio:.3g}x the smallest, "
                f"under {IMBALANCE_RATIO:g}x): training counts every photo the same."
            )
        uneven = f"The largest training class has {self.ratio:.3g}x the photos of the smallest"
        if not self.enabled:
            return f"{uneven}; class balancing is off for this run, so every photo counts the same."
        return f"{uneven}: training weights the loss by inverse class frequency ({self.boosts()})."


@dataclass(frozen=True)
class Recipe:
    """An architecture's defaults; every field can be overridden per run."""

    epochs: int
    image_size: int = defaults.IMAGE_SIZE  # the tutorial's 160 px unless a recipe measured better
    augment: str = "none"  # a preset or saved augmentation config name
    learning_rate: float = LEARNING_RATE
    patience: int = 0  # early stopping on val_accuracy; 0 = off
    fine_tune_epochs: int = 0
    fine_tune_learning_rate: float | None = None
    fine_tune_layers: int = 0  # top layers of the ImageNet base unfrozen when fine-tuning
    schedule: Schedule = Schedule.CONSTANT
    weight_decay: float = 0.0  # > 0: AdamW with this decoupled weight decay, else Adam
    # The saved model averages each photo and its mirror image (core.models.mirror).
    test_time_flip: bool = False

    def describe(self) -> str:
        parts = [f"{self.image_size} px, {self.epochs} epochs"]
        if self.fine_tune_epochs:
            parts.append(
                f"then {self.fine_tune_epochs} fine-tuning epochs (learning rate {self.fine_tune_learning_rate:g})"
            )
        if self.patience:
            parts.append(f"early stopping after {self.patience} epochs without progress")
        parts.append(f"augmentation: {self.augment}")
        return ", ".join(parts)


RECIPES: dict[str, Recipe] = {
    # The tutorial's four, as it trains them.
    "cnn": Recipe(TUTORIAL_EPOCHS),
    "cnn_aug": Recipe(TUTORIAL_EPOCHS, augment="tutorial"),
    "cnn_aug_preproc": Recipe(TUTORIAL_EPOCHS, augment="tutorial_preproc"),
    "mobilenet_v2": Recipe(TUTORIAL_EPOCHS),
    # Ours, from scratch: 128 px buys epochs on a CPU; augmented photos, a cosine schedule
    # and weight decay keep it learning for all of them; answers average each photo and its
    # mirror image. Chosen on validation (2026-11-30): with Adam at one rate it plateaued at
    # 82.7-83.5% (early stopping at epoch 24 of 70); with this recipe the best of 60 epochs
    # reached 87.1%, 90.0% test, 637 s from launch (benchmarks/results/scratch_recipe). Flips:
    # see core.models.mirror.
    "cnn_plus": Recipe(
        60,
        image_size=128,
        augment="recommended",
        learning_rate=3e-3,
        schedule=Schedule.COSINE,
        weight_decay=5e-4,
        test_time_flip=True,
    ),
    # A linear head on cached 224 px features (the ImageNet weights' own size): chosen on
    # validation, 99.0% against 97.5% at 160 px, 56 s from launch, cold (2026-11-30,
    # benchmarks/results/recipe_224 and recipe_160); 35 s once its unknown-photo check
    # reused these features (recipe_224_cold). Two fine-tuning epochs at 224 px
    # (`--fine-tune-epochs 2`, 32-39 s each) did not beat the head's best epoch, so
    # fine-tuning is there to ask for, not a default.
    "mobilenet_v2_finetune": Recipe(
        10,
        image_size=224,
        fine_tune_epochs=0,
        fine_tune_learning_rate=FINE_TUNE_LEARNING_RATE,
        fine_tune_layers=FINE_TUNE_LAYERS,
    ),
}


def recipe_for(arch: str) -> Recipe:
    if arch not in RECIPES:
        raise ValueError(f"Unknown architecture '{arch}'. Choose one of: {', '.join(RECIPES)}.")
    return RECIPES[arch]


@dataclass
class TrainConfig:
    """Everything needed to reproduce a run, written once to its config.json.

    What the training process finds out later (classes, split, strategy,
    library versions) goes to the run's facts (core.runs.store.RunFacts),
    never back into this file. Build one with ``make_config``.
    """

    data_root: str
    arch: str
    epochs: int
    batch_size: int = defaults.BATCH_SIZE
    image_size: int = defaults.IMAGE_SIZE
    learning_rate: float = LEARNING_RATE
    fine_tune_epochs: int = 0
    fine_tune_learning_rate: float | None = None
    fine_tune_layers: int = 0
    patience: int = 0
    schedule: str = Schedule.CONSTANT.value  # a Schedule
    weight_decay: float = 0.0
    test_time_flip: bool = False
    seed: int = defaults.SEED  # split, shuffle and weight initialisation
    test_fraction: float = defaults.TEST_FRACTION
    validation_fraction: float = defaults.VALIDATION_FRACTION
    subset: int = 0  # at most this many training images per class; 0 = all
    # Weigh the loss by inverse class frequency when the classes are uneven (ClassBalance).
    balance_classes: bool = True
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # The dataset's corrections when the run was submitted ({relative path: class,
    # or None for excluded}; core.data.corrections): a relabel made while the run
    # waits in the queue does not change what it trains on.
    corrections: dict[str, str | None] = field(default_factory=dict)
    # A transfer model's head (core.models.zoo.Head); None: the architecture's own.
    dropout: float | None = None
    head_units: int | None = None
    # What the run asks of the machine that trains it. A local worker uses the
    # machine it is on; on a Ray cluster (core.runs.executors) the run waits for a
    # node with these free: CPUs, GPUs and custom resources ({"big_node": 1}).
    cpus: float = 1.0
    gpus: float = 0.0
    ray_resources: dict[str, float] = field(default_factory=dict)
    # A sweep (core.runs.sweep): ``search`` is set on the sweep's own entry in the
    # queue, and each trial it makes names the sweep's run id in ``sweep``.
    search: SweepSpec | None = None
    sweep: str = ""
    created: float = 0.0

    @property
    def total_epochs(self) -> int:
        return self.epochs + self.fine_tune_epochs

    @property
    def head(self) -> Head:
        default = default_head(self.arch)
        return Head(
            default.dropout if self.dropout is None else self.dropout,
            default.hidden_units if self.head_units is None else self.head_units,
        )

    @property
    def is_sweep(self) -> bool:
        return self.search is not None

    def describe_optimizer(self) -> str:
        """ "0.003 (AdamW, weight decay 0.0005, cosine decay after a warm-up)", or "0.001 (Adam)"."""
        return f"{self.learning_rate:g} ({optimizer_name(self.schedule, self.weight_decay)})"

    def sweep_cost(self) -> Cost:
        spec = ARCHITECTURES[self.arch]
        if self.search is None:
            raise ValueError("This run is not a sweep: its config has no search.")
        return self.search.cost(
            fine_tunes=spec.fine_tune and self.fine_tune_epochs > 0,
            frozen_base=spec.frozen_base,
            augments=not self.augment.is_identity,
        )

    def to_dict(self) -> dict:
        return asdict(self)  # augment and search become plain dicts too

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["augment"] = AugmentConfig.from_dict(values.get("augment") or {})
        if values.get("search") is not None:
            values["search"] = SweepSpec.from_dict(values["search"])
        return cls(**values)


def _check_whole(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < low:
        raise ValueError(f"The {name} must be a whole number of at least {low}, not {value}.")
    return int(value)


def _check_fractions(test_fraction: float, validation_fraction: float) -> None:
    if not (0 <= test_fraction < 1 and 0 <= validation_fraction < 1 and test_fraction + validation_fraction < 1):
        raise ValueError("Test and validation fractions must be between 0 and 1 and leave images to train on.")


def _resolve_augment(augment: str | AugmentConfig) -> AugmentConfig:
    if isinstance(augment, AugmentConfig):
        return augment
    try:
        return load_config(augment)
    except KeyError as error:
        raise ValueError(error.args[0]) from None


def make_config(
    data_root: str | os.PathLike,
    arch: str,
    epochs: int | None = None,
    *,
    batch_size: int = defaults.BATCH_SIZE,
    image_size: int | None = None,
    learning_rate: float | None = None,
    fine_tune_epochs: int | None = None,
    fine_tune_learning_rate: float | None = None,
    patience: int | None = None,
    seed: int = defaults.SEED,
    augment: str | AugmentConfig | None = None,
    subset: int = 0,
    balance_classes: bool = True,
    test_fraction: float = defaults.TEST_FRACTION,
    validation_fraction: float = defaults.VALIDATION_FRACTION,
    dropout: float | None = None,
    head_units: int | None = None,
    cpus: float | None = None,
    gpus: float = 0.0,
    ray_resources: dict[str, float] | None = None,
    search: SweepSpec | None = None,
) -> TrainConfig:
    """A checked TrainConfig: what is given, the architecture's recipe for the rest.

    With ``search``, the config is a sweep's: its trials start from it, and
    it may use all of this machine's CPUs unless ``cpus`` says otherwise.
    Raises ValueError with a sentence for a person on bad values.
    """
    recipe = recipe_for(arch)
    spec = ARCHITECTURES[arch]
    epochs = _check_whole("epochs", recipe.epochs if epochs is None else epochs, 1)
    if fine_tune_epochs is None:
        fine_tune_epochs = recipe.fine_tune_epochs
    fine_tune_epochs = _check_whole("fine-tune epochs", fine_tune_epochs, 0)
    if fine_tune_epochs and not spec.fine_tune:
        raise ValueError(f"'{arch}' has no fine-tuning phase; choose mobilenet_v2_finetune to fine-tune.")
    _check_fractions(test_fraction, validation_fraction)
    learning_rate = recipe.learning_rate if learning_rate is None else learning_rate
    if not learning_rate > 0:
        raise ValueError(f"The learning rate must be positive, not {learning_rate}.")
    return TrainConfig(
        data_root=str(Path(data_root).expanduser().resolve()),
        arch=arch,
        epochs=epochs,
        batch_size=_check_whole("batch size", batch_size, 1),
        image_size=_check_whole("image size", recipe.image_size if image_size is None else image_size, 32),
        learning_rate=float(learning_rate),
        fine_tune_epochs=fine_tune_epochs,
        fine_tune_learning_rate=(fine_tune_learning_rate or recipe.fine_tune_learning_rate) if spec.fine_tune else None,
        fine_tune_layers=recipe.fine_tune_layers if spec.fine_tune else 0,
        patience=_check_whole("patience", recipe.patience if patience is None else patience, 0),
        **_checked_optimizer(recipe.schedule, recipe.weight_decay),
        test_time_flip=_checked_flip(arch, recipe.test_time_flip),
        seed=int(seed),
        test_fraction=float(test_fraction),
        validation_fraction=float(validation_fraction),
        subset=_check_whole("subset", subset, 0),
        balance_classes=_checked_switch("balance_classes", balance_classes),
        augment=_resolve_augment(recipe.augment if augment is None else augment),
        corrections=load_corrections(data_root).mapping,
        **_checked_head(arch, dropout, head_units),
        **_checked_resources(_default_cpus(search) if cpus is None else cpus, gpus, ray_resources or {}),
        search=search,
    )


def _checked_optimizer(schedule, weight_decay) -> dict:
    if schedule not in tuple(Schedule):
        raise ValueError(f"The learning-rate schedule is one of {', '.join(Schedule)}, not {schedule!r}.")
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or not 0 <= weight_decay < 1:
        raise ValueError(f"The weight decay must be at least 0 and below 1, not {weight_decay!r}.")
    return {"schedule": Schedule(schedule).value, "weight_decay": float(weight_decay)}


def _checked_switch(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} is true or false, not {value!r}.")
    return value


def _checked_flip(arch: str, test_time_flip) -> bool:
    if _checked_switch("test_time_flip", test_time_flip) and ARCHITECTURES[arch].family is not Family.SCRATCH:
        raise ValueError("Test-time flips apply to the models trained from scratch.")
    return test_time_flip


def _checked_head(arch: str, dropout: float | None, head_units: int | None) -> dict:
    if (dropout is not None or head_units is not None) and ARCHITECTURES[arch].family is not Family.TRANSFER:
        raise ValueError(
            f"'{arch}' has no transfer head; dropout and head units apply to "
            f"{', '.join(a for a, s in ARCHITECTURES.items() if s.family is Family.TRANSFER)}."
        )
    default = default_head(arch)
    Head(
        default.dropout if dropout is None else dropout, default.hidden_units if head_units is None else head_units
    )  # raises on bad values
    return {"dropout": dropout, "head_units": head_units}


# A run asks for at most this much of one machine (a page must not queue a run no node can take).
MAX_CPUS, MAX_GPUS = 1024, 64


def _default_cpus(search: SweepSpec | None) -> float:
    return float(os.cpu_count() or 1) if search is not None else 1.0


def _checked_resources(cpus, gpus, ray_resources: dict) -> dict:
    for name, value, low, high in (("CPUs", cpus, 0.01, MAX_CPUS), ("GPUs", gpus, 0, MAX_GPUS)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ValueError(f"A run asks for {low:g} to {high} {name}, not {value}.")
    for name, amount in ray_resources.items():
        if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"A Ray resource name is letters, digits, - and _, not {name!r}.")
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not amount > 0:
            raise ValueError(f"Ray resource {name} needs a positive amount, not {amount!r}.")
    return {
        "cpus": float(cpus),
        "gpus": float(gpus),
        "ray_resources": {name: float(amount) for name, amount in ray_resources.items()},
    }


def check_config(config: TrainConfig) -> None:
    """make_config's checks, for a config that comes back from a file (a sweep's best trial):
    ValueError with a sentence for a value make_config would have refused."""
    recipe_for(config.arch)
    for name, value, low in (
        ("epochs", config.epochs, 1),
        ("fine-tune epochs", config.fine_tune_epochs, 0),
        ("batch size", config.batch_size, 1),
        ("image size", config.image_size, 32),
        ("patience", config.patience, 0),
        ("subset", config.subset, 0),
    ):
        _check_whole(name, value, low)
    _check_fractions(config.test_fraction, config.validation_fraction)
    if (
        isinstance(config.learning_rate, bool)
        or not isinstance(config.learning_rate, (int, float))
        or not config.learning_rate > 0
    ):
        raise ValueError(f"The learning rate must be positive, not {config.learning_rate}.")
    _checked_optimizer(config.schedule, config.weight_decay)
    _checked_flip(config.arch, config.test_time_flip)
    _checked_switch("balance_classes", config.balance_classes)
    _checked_head(config.arch, config.dropout, config.head_units)
    _checked_resources(config.cpus, config.gpus, config.ray_resources)


def parse_ray_resources(text: str) -> dict[str, float]:
    """ "gpu_box=1, fast_disk=0.5" -> {"gpu_box": 1.0, "fast_disk": 0.5}; ValueError with a sentence."""
    resources = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, amount = item.partition("=")
        try:
            resources[name.strip()] = float(amount)
        except ValueError:
            raise ValueError(f"A Ray resource is NAME=AMOUNT (like gpu_box=1), not '{item}'.") from None
    return _checked_resources(1.0, 0.0, resources)["ray_resources"]


def with_knobs(config: TrainConfig, values: dict, *, sweep: str) -> TrainConfig:
    """A sweep's trial: ``config`` with the knobs in ``values`` changed, checked as make_config checks.

    The trial keeps the sweep's corrections snapshot; it is no sweep itself.
    """
    changes = {}
    for name, value in values.items():
        knob = Knob(name)
        value = parse_value(knob, value)
        if knob == Knob.AUGMENT:
            value = _resolve_augment(str(value))
        elif knob == Knob.FINE_TUNE_LAYERS and not ARCHITECTURES[config.arch].fine_tune:
            raise ValueError(f"'{config.arch}' does not fine-tune; fine_tune_layers does not apply.")
        changes[knob.value] = value
    trial = replace(config, **changes, search=None, sweep=sweep, created=0.0)
    _checked_head(trial.arch, trial.dropout, trial.head_units)
    return trial
