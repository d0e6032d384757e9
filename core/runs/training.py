"""The TensorFlow part of a training run: build, fit, fine-tune, evaluate.

core.runs.worker claims the run and prepares its data (the dataset scanned
once, the split recorded), then hands over to ``Training``, one method per
step, called in this order::

    training = Training(run_dir, config, splits, control)   # strategy, facts.json
    training.decode_ahead()  # cached-features mode: the photos start decoding in the background
    training.build()       # the model under the strategy's scope
    training.fit()         # first phase, early stopping on val_accuracy, best model kept
    training.fine_tune()   # top of the base unfrozen, 100x smaller learning rate
    training.calibrate()   # the best saved model on validation: temperature, thresholds, trust.json
    training.evaluate()    # the best saved model on the test split: evaluation.json

When the largest training class has at least IMBALANCE_RATIO (core.runs.recipes)
times the photos of the smallest, both phases weight the loss by inverse class
frequency (Keras ``fit(class_weight=...)``), unless the run's balance_classes is off.

A frozen ImageNet base with no augmentation trains in "cached_features"
mode: the base runs once per image (its features cached on disk), the small
head trains on them, and head and base are assembled into one model, the
same model as training end to end with the base frozen, many times faster
per epoch. Otherwise "end_to_end": images through the whole model every
epoch, augmented in the tf.data pipeline. Everything is written as described
in core.runs.store (status with batch progress, metrics.jsonl, model.keras,
TensorBoard logs).
"""

from __future__ import annotations

import importlib.util
import math
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from core.config import get_settings
from core.data.dataset import Sample
from core.data.decode_ahead import DecodeAhead
from core.data.images import Pixels
from core.data.layout import Split
from core.data.pipeline import decoded_batches, make_dataset
from core.data.splits import Splits
from core.models.distribute import strategy_for_environment
from core.models.zoo import (
    ARCHITECTURES,
    assemble,
    build_frozen_parts,
    build_model,
    head_of,
    load_saved_model,
    unfreeze_top,
)
from core.runs.control import DECODED_CACHE_DIR, RunControl
from core.runs.evaluation import evaluate_run
from core.runs.recipes import ClassBalance, Schedule, TrainConfig
from core.runs.store import (
    MODEL_FILE,
    TENSORBOARD_DIR,
    Mode,
    Phase,
    RunFacts,
    append_metrics,
    write_facts,
)
from core.runs.trust import NOVELTY_FILE, calibrate, write_trust


def training_mode(config: TrainConfig) -> Mode:
    """CACHED_FEATURES when the base is frozen and images are not augmented, else END_TO_END."""
    spec = ARCHITECTURES[config.arch]
    return Mode.CACHED_FEATURES if spec.frozen_base and config.augment.is_identity else Mode.END_TO_END


def frozen_features(
    extractor,
    config: TrainConfig,
    samples: list[Sample],
    pixels: Pixels,
    progress=None,
    batches=None,
    save_later: bool = False,
):
    """(features, labels) of ``samples`` through the run's frozen base, computed once and cached.

    Training photos decode FAST; validation photos as inference decodes them
    (core.data.pipeline). ``batches``: those photos already decoding
    (Training.decode_ahead); ``save_later``: see core.models.features.cached_features.
    """
    from core.models.features import cached_features

    return cached_features(
        extractor,
        samples,
        config.image_size,
        config.batch_size,
        cache_key=_features_key(config),
        cache_dir=_features_dir(),
        progress=progress,
        pixels=pixels,
        batches=batches,
        save_later=save_later,
    )


def _features_key(config: TrainConfig) -> str:
    # The key names the extractor; cached_features adds the files and the size.
    return f"{config.arch}-imagenet"


def _features_dir() -> Path:
    return get_settings().cache_dir / "features"


def features_cached(config: TrainConfig, samples: list[Sample], pixels: Pixels) -> bool:
    """Whether frozen_features has a cache file for ``samples`` (it checks the file when it reads it)."""
    from core.models.features import cache_path

    return cache_path(_features_dir(), _features_key(config), config.image_size, samples, pixels).is_file()


def features_are_embeddings(config: TrainConfig) -> bool:
    """The run's cached head features, pooled, are also its unknown-photo check's embeddings:
    the frozen ImageNet base at the run's size, large enough (core.models.embeddings)."""
    from core.models.embeddings import RUN_FEATURES_MIN_SIZE

    return training_mode(config) == Mode.CACHED_FEATURES and config.image_size >= RUN_FEATURES_MIN_SIZE


def cache_frozen_features(config: TrainConfig, splits: Splits) -> None:
    """What every run of ``config`` computes the same way, computed once: a sweep's feature pass.

    The frozen base's features of the training and validation photos (the head
    trains on them) and the training photos' embeddings (the unknown-photo check
    that calibrate fits, Training._fit_novelty).
    """
    from core.models.embeddings import embed_files

    extractor, _ = build_frozen_parts(config.arch, len(splits.classes), config.image_size)
    frozen_features(extractor, config, splits.train, Pixels.FAST)
    frozen_features(extractor, config, splits.validation, Pixels.INFERENCE)
    if not features_are_embeddings(config):
        embed_files([sample.path for sample in splits.train])


# --- Keras callbacks -------------------------------------------------------------


class ProgressCallback(keras.callbacks.Callback):
    """Epoch and batch progress into status.json; stops within one batch when cancelled."""

    def __init__(self, control: RunControl, phase: str, batches_total: int):
        super().__init__()
        self.control, self.phase, self.batches_total = control, phase, batches_total

    def on_epoch_begin(self, epoch, logs=None):
        self.control.status(phase=self.phase, epoch=epoch + 1, batch=0, batches_total=self.batches_total)

    def on_train_batch_end(self, batch, logs=None):
        if self.control.cancel_requested():
            self.model.stop_training = True  # Keras leaves the epoch after this batch
            return
        self.control.status(force=False, batch=batch + 1)

    def on_test_batch_end(self, batch, logs=None):
        # Keras still validates after a stopped epoch; cut that short too.
        if self.control.cancel_requested():
            self.model.stop_evaluating = True

    def on_epoch_end(self, epoch, logs=None):
        if not self.control.cancel_requested():
            self.control.status(batch=self.batches_total)


class MetricsCallback(keras.callbacks.Callback):
    """One metrics.jsonl line per finished epoch, and a line on stderr for logs."""

    def __init__(self, control: RunControl, phase: str, train_images: int, epochs_total: int):
        super().__init__()
        self.control, self.phase = control, phase
        self.train_images, self.epochs_total = train_images, epochs_total

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = time.perf_counter()
        self.train_end = None

    def on_test_begin(self, logs=None):
        if self.train_end is None:
            self.train_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if self.control.cancel_requested():
            return  # a cut-short epoch is not a result
        logs = logs or {}
        now = time.perf_counter()
        train_seconds = (self.train_end or now) - self.epoch_start
        record = {
            "epoch": epoch + 1,
            "phase": self.phase,
            **{key: _number(logs.get(key)) for key in ("loss", "accuracy", "val_loss", "val_accuracy")},
            "seconds": round(now - self.epoch_start, 3),
            "images_per_second": round(self.train_images / max(train_seconds, 1e-9), 1),
            "time": time.time(),
        }
        append_metrics(self.control.run_dir, record)
        self.control.epoch_finished(record)
        scores = " ".join(
            f"{key} {record[key]:.4f}"
            for key in ("loss", "accuracy", "val_loss", "val_accuracy")
            if record[key] is not None
        )
        print(
            f"epoch {epoch + 1}/{self.epochs_total} {self.phase}: {scores} ({record['seconds']:.1f} s)",
            file=sys.stderr,
            flush=True,
        )


def _number(value):
    return None if value is None else float(value)


# Seconds between two writes of model.keras while the model keeps improving.
SAVE_INTERVAL = 10.0


class AtomicCheckpoint(keras.callbacks.Callback):
    """Keep the best model by val_accuracy in model.keras, never half written.

    keras.callbacks.ModelCheckpoint writes straight into the target file, so
    a reader (the Classify page) could load a partial file, and it saves the
    model being fitted, which in cached-features mode is only the head. This
    saves ``export_model`` (the full images -> logits model) to a temp file
    in the same folder and renames it over model.keras in one step.

    A save takes about 0.5 s (a frozen base is in the file), as long as an
    epoch on cached features: after the first, an improvement within
    SAVE_INTERVAL seconds of the last save is kept in memory and written
    when the next save is due or fit ends (a cancelled fit too).
    """

    def __init__(self, path: Path, export_model, control: RunControl):
        super().__init__()
        self.path, self.export_model, self.control = Path(path), export_model, control
        self.best = -math.inf
        self.best_epoch = None
        self.unsaved_weights: list | None = None  # the best epoch's, when model.keras is older
        self.last_save = -math.inf

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get("val_accuracy")
        if value is None or self.control.cancel_requested() or not value > self.best:
            return
        self.best, self.best_epoch = float(value), epoch + 1
        if time.monotonic() - self.last_save >= SAVE_INTERVAL:
            self._save()
        else:
            self.unsaved_weights = self.export_model.get_weights()  # copies

    def on_train_end(self, logs=None):
        if self.unsaved_weights is None:
            return
        current = self.export_model.get_weights()
        self.export_model.set_weights(self.unsaved_weights)
        try:
            self._save()
        finally:
            self.export_model.set_weights(current)  # fitting goes on from the last epoch, as before

    def _save(self) -> None:
        save_atomically(self.export_model, self.path)
        self.last_save, self.unsaved_weights = time.monotonic(), None


def save_atomically(model, path: Path) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")  # Keras wants .keras
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


# --- the steps ----------------------------------------------------------------------

# A cosine schedule warms up over this many epochs (at most a quarter of the run).
WARMUP_EPOCHS = 2


def _optimizer(
    learning_rate: float,
    *,
    schedule: str = Schedule.CONSTANT,
    weight_decay: float = 0.0,
    steps_per_epoch: int = 1,
    epochs: int = 1,
):
    """Adam, as the tutorial; AdamW when there is weight decay; a cosine schedule when asked."""
    rate = learning_rate
    if schedule == Schedule.COSINE:
        total = steps_per_epoch * epochs
        warmup = min(WARMUP_EPOCHS * steps_per_epoch, total // 4)
        rate = keras.optimizers.schedules.CosineDecay(
            learning_rate / 10, decay_steps=max(1, total - warmup), warmup_target=learning_rate, warmup_steps=warmup
        )
    if weight_decay:
        return keras.optimizers.AdamW(rate, weight_decay=weight_decay)
    return keras.optimizers.Adam(rate)


def _compile(model, optimizer) -> None:
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def _features_dataset(features, labels, batch_size: int, *, shuffle_seed: int | None = None):
    # Cached as float16 to halve memory and disk; the head computes in float32. Cast per
    # batch: a float32 copy of every feature up front cost 1-2 s of a run's start.
    dataset = tf.data.Dataset.from_tensor_slices((features, labels))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(labels), seed=shuffle_seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size).map(lambda batch, batch_labels: (tf.cast(batch, tf.float32), batch_labels))
    return dataset.prefetch(tf.data.AUTOTUNE)


def fit_data(train_data: tf.data.Dataset, val_data: tf.data.Dataset | None) -> dict:
    """model.fit's data arguments: ONE training iterator for the whole fit.

    Given a finite dataset, Keras makes a new iterator every epoch, and destroying
    the previous one waits for that iterator's tf.data autotune thread
    (RootDataset::Iterator's destructor): the main thread stalled for seconds in
    about every second epoch. ``repeat()`` with ``steps_per_epoch`` = the batches
    of one pass keeps one iterator; each repetition still reshuffles and holds
    every photo exactly once, in the same batches as a new iterator would.
    Keras makes a new validation iterator per epoch whatever it is given, so the
    validation data runs without the autotune thread (the same batches, in file
    order).
    """
    steps = int(train_data.cardinality())
    arguments = {"x": train_data}
    if steps > 0:  # known and finite: always, for PawLab's pipelines
        arguments = {"x": train_data.repeat(), "steps_per_epoch": steps}
    if val_data is not None:
        options = tf.data.Options()
        options.autotune.enabled = False
        arguments["validation_data"] = val_data.with_options(options)
    return arguments


class Training:
    """One run's training in this process; call the steps in order (see the module docstring)."""

    def __init__(self, run_dir: Path, config: TrainConfig, splits: Splits, control: RunControl):
        self.run_dir, self.config, self.splits, self.control = run_dir, config, splits, control
        self.mode = training_mode(config)
        self.fine_tunes = ARCHITECTURES[config.arch].fine_tune and config.fine_tune_epochs > 0
        self.epochs_total = config.epochs + (config.fine_tune_epochs if self.fine_tunes else 0)
        self.epochs_done = 0
        self.decoded_cache = run_dir / DECODED_CACHE_DIR  # only when decoded images outgrow memory
        self.validation_images = None  # built once, shared by fit, fine_tune and calibrate
        self.best_model = None  # model.keras, loaded once for calibrate and evaluate
        self.ahead: DecodeAhead | None = None  # photos decoding for the feature pass (decode_ahead)
        self.ahead_streams: dict[int, int] = {}  # id of a split's sample list -> its stream
        # Uneven classes: Keras scales each photo's loss by its class's weight (None: all 1).
        self.class_balance = ClassBalance(splits.counts()[Split.TRAIN], config.balance_classes)
        self.class_weight = self.class_balance.weights()
        if self.class_balance.imbalanced:
            print(self.class_balance.describe(), file=sys.stderr, flush=True)
        self.strategy = strategy_for_environment()
        write_facts(run_dir, self._facts())
        control.status(
            mode=self.mode,
            epochs_total=self.epochs_total,
            phase=Phase.TRAIN if self.mode == Mode.END_TO_END else Phase.FEATURES,
        )

    def _facts(self) -> RunFacts:
        return RunFacts(
            classes=list(self.splits.classes),
            split_counts=self.splits.counts(),
            mode=self.mode,
            strategy=type(self.strategy).__name__,
            replicas=self.strategy.num_replicas_in_sync,
            versions={"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__},
        )

    def decode_ahead(self) -> None:
        """Cached-features mode, features not cached yet: the training and validation photos
        start decoding now, in a background thread, on the core that building and
        converting the base leave free (core.data.decode_ahead); fit reads them."""
        config = self.config
        if self.mode != Mode.CACHED_FEATURES:
            return
        wanted = [(self.splits.train, Pixels.FAST), (self.splits.validation, Pixels.INFERENCE)]
        wanted = [(samples, pixels) for samples, pixels in wanted if not features_cached(config, samples, pixels)]
        if not wanted:
            return

        # One decoding thread: the main thread keeps a core for the build, and one
        # thread decodes faster than the base reads (1.1 against 2.5 ms a photo).
        options = tf.data.Options()
        options.threading.private_threadpool_size = 1
        options.threading.max_intra_op_parallelism = 1

        def batches_of(samples: list[Sample], pixels: Pixels):
            return lambda: decoded_batches(samples, config.image_size, config.batch_size, pixels).with_options(options)

        self.ahead = DecodeAhead([batches_of(samples, pixels) for samples, pixels in wanted])
        self.ahead_streams = {id(samples): index for index, (samples, _) in enumerate(wanted)}

    def stop_decoding(self) -> None:
        """Let go of the photos decoding ahead, if any: once read, or when the run ends early."""
        if self.ahead is not None:
            self.ahead.close()
            self.ahead = None

    def build(self) -> None:
        """The model (images -> logits) and, in cached-features mode, its extractor and head."""
        config, num_classes = self.config, len(self.splits.classes)
        keras.utils.set_random_seed(config.seed)
        with self.strategy.scope():
            if self.mode == Mode.CACHED_FEATURES:
                self.extractor, head = build_frozen_parts(config.arch, num_classes, config.image_size, head=config.head)
                self.model = assemble(self.extractor, head)  # shares the head's layers and weights
                self.fitted = head  # the first phase trains the head alone, on features
            else:
                self.fitted = build_model(config.arch, num_classes, config.image_size, head=config.head)
                self.model = self.fitted
                if config.test_time_flip:
                    from core.models.mirror import with_test_time_flip

                    # Trains the plain model; saves one that averages each photo and its mirror.
                    self.model = with_test_time_flip(self.fitted)
            _compile(
                self.fitted,
                _optimizer(
                    config.learning_rate,
                    schedule=config.schedule,
                    weight_decay=config.weight_decay,
                    steps_per_epoch=math.ceil(len(self.splits.train) / config.batch_size),
                    epochs=config.epochs,
                ),
            )
        self.checkpoint = AtomicCheckpoint(self.run_dir / MODEL_FILE, self.model, self.control)

    def fit(self) -> None:
        """The first phase: the head on cached features, or the whole model on images."""
        if self.mode == Mode.CACHED_FEATURES:
            train_data, val_data = self._feature_datasets()
        else:
            train_data, val_data = self._image_datasets()
        self._fit(self.fitted, train_data, val_data, Phase.TRAIN, self.config.epochs)

    def fine_tune(self) -> None:
        """The whole model from here on: images through the partly unfrozen base."""
        if not self.fine_tunes:
            return
        with self.strategy.scope():
            unfreeze_top(self.model, self.config.fine_tune_layers)
            rate = self.config.fine_tune_learning_rate
            assert rate is not None  # make_config sets it for every architecture that fine-tunes
            _compile(self.model, _optimizer(rate))
        train_data, val_data = self._image_datasets()
        self._fit(self.model, train_data, val_data, Phase.FINE_TUNE, self.config.fine_tune_epochs)

    def calibrate(self) -> None:
        """Temperature and "unsure" threshold on validation, the unknown-photo check: trust.json."""
        self.control.status(phase=Phase.EVALUATE, batch=0, batches_total=0)
        val_logits = self._best_validation_logits()
        val_labels = np.array([sample.label for sample in self.splits.validation])
        trust = calibrate(val_logits, val_labels)
        if ARCHITECTURES[self.config.arch].frozen_base:
            trust.novelty_threshold = self._fit_novelty()
        write_trust(self.run_dir, trust)

    def _best_validation_logits(self) -> np.ndarray:
        logits = self._frozen_base_logits(self.splits.validation)
        if logits is not None:
            return logits
        images = self._validation_images().map(lambda images, labels: images)
        return self._best_model().predict(images, verbose=0)

    def _frozen_base_logits(self, samples: list[Sample]) -> np.ndarray | None:
        """The best model's logits of ``samples`` (inference pixels) from the frozen base's cached
        features and the saved model's head, or None when fine-tuning changed the base.

        The base is frozen and was never changed, so this is the saved model's forward pass
        without running its base in Keras again (in ONNX Runtime, as the Classify page runs it).
        """
        if self.mode != Mode.CACHED_FEATURES or self.fine_tunes:
            return None
        features, _ = frozen_features(self.extractor, self.config, samples, Pixels.INFERENCE)
        head = head_of(self._best_model(), self.extractor.layers[-1].name)
        return head.predict(features.astype("float32"), batch_size=self.config.batch_size, verbose=0)

    def _fit_novelty(self) -> float:
        """The unknown-photo check on the training photos' ImageNet embeddings; its threshold."""
        from core.models.embeddings import EMBEDDING_SIZE, embed_files, pooled
        from core.models.novelty import NoveltyDetector

        config, train = self.config, self.splits.train
        if features_are_embeddings(config):
            # Fine-tuning changes the model, never these cached features of the ImageNet base.
            features, _ = frozen_features(self.extractor, config, train, Pixels.FAST)
            embeddings, size = pooled(features), config.image_size
        else:
            # Per photo, at the embeddings' own size, so the Review page's doctor shares the cache.
            embeddings = embed_files(
                [sample.path for sample in train], progress=lambda done, total: self.control.check()
            )
            size = EMBEDDING_SIZE
        detector = NoveltyDetector.fit(embeddings, size)
        detector.save(self.run_dir / NOVELTY_FILE)
        return detector.threshold

    def evaluate(self) -> None:
        """Score what was saved, loaded the way the Classify page loads it, on the test split."""
        shutil.rmtree(self.decoded_cache, ignore_errors=True)
        self.control.status(phase=Phase.EVALUATE, batch=0, batches_total=0)
        evaluate_run(self.run_dir, model=self._best_model(), splits=self.splits, logits_of=self._frozen_base_logits)

    # --- what the steps share ---

    def _best_model(self):
        if self.best_model is None:
            self.best_model = load_saved_model(self.run_dir / MODEL_FILE)
        return self.best_model

    def _image_datasets(self):
        config = self.config
        train = make_dataset(
            self.splits.train,
            config.image_size,
            config.batch_size,
            training=True,
            seed=config.seed,
            augment=config.augment,
            cache_file=self.decoded_cache / "train",
            pixels=Pixels.FAST,
        )
        return train, self._validation_images()

    def _validation_images(self):
        """Validation photos in file order; decoded once, however many steps read them."""
        if self.validation_images is None:
            config = self.config
            self.validation_images = make_dataset(
                self.splits.validation,
                config.image_size,
                config.batch_size,
                training=False,
                cache_file=self.decoded_cache / "validation",
            )
        return self.validation_images

    def _feature_datasets(self):
        batch_size = self.config.batch_size
        try:
            train = self._features(self.splits.train, Pixels.FAST)
            validation = self._features(self.splits.validation, Pixels.INFERENCE)
        finally:
            self.stop_decoding()  # read, or not needed after a cancel or an error
        return (
            _features_dataset(*train, batch_size, shuffle_seed=self.config.seed),
            _features_dataset(*validation, batch_size),
        )

    def _features(self, samples: list[Sample], pixels: Pixels) -> tuple[np.ndarray, np.ndarray]:
        """The frozen base's features of ``samples``, computed once per dataset and size."""
        batch_size = self.config.batch_size
        # In the "features" phase, batch / batches_total count batches of images.
        self.control.status(phase=Phase.FEATURES, batch=0, batches_total=math.ceil(len(samples) / batch_size))

        def progress(done, total):
            self.control.check()
            self.control.status(force=False, batch=math.ceil(done / batch_size))

        batches = None
        if self.ahead is not None and id(samples) in self.ahead_streams:
            batches = self.ahead.stream(self.ahead_streams[id(samples)])
        return frozen_features(self.extractor, self.config, samples, pixels, progress, batches, save_later=True)

    def _fit(self, model, train_data, val_data, phase: Phase, epochs: int) -> None:
        """model.fit for ``epochs`` more epochs, with the run's callbacks."""
        first = self.epochs_done
        history = model.fit(
            **fit_data(train_data, val_data),
            epochs=first + epochs,
            initial_epoch=first,
            class_weight=self.class_weight,
            callbacks=self._callbacks(phase),
            verbose=0,
            shuffle=False,
        )  # the tf.data pipeline shuffles
        self.control.check()
        self.epochs_done = first + len(history.epoch)

    def _callbacks(self, phase: Phase) -> list:
        control, train_images = self.control, len(self.splits.train)
        callbacks = [
            # First: the others see a cancel at once.
            ProgressCallback(control, phase, math.ceil(train_images / self.config.batch_size)),
            MetricsCallback(control, phase, train_images, self.epochs_total),
            self.checkpoint,
        ]
        if importlib.util.find_spec("tensorboard") is not None:
            callbacks.append(
                keras.callbacks.TensorBoard(log_dir=str(self.run_dir / TENSORBOARD_DIR), write_graph=False)
            )
        if self.config.patience:
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor="val_accuracy", mode="max", patience=self.config.patience, restore_best_weights=True
                )
            )
        return callbacks
