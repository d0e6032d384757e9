"""Training one run, in this process: data, model, fit, checkpoints, evaluation.

``execute_run(run_dir)`` reads the run's config.json and writes everything
described in core.runs.store as it goes (status with heartbeat and batch progress,
metrics.jsonl, model.keras, TensorBoard logs, evaluation.json). The job
manager (core.runs.jobs) runs it in a worker process; ``python -m core train``
runs it in the foreground.

    scan dataset -> split (seeded) -> optional training subset
    -> frozen ImageNet base and no augmentation?
         yes: "cached_features": base features computed once (and cached on
              disk), the small head trained on them, then head and base
              assembled into one model. Same model as training end to end
              with the base frozen, many times faster per epoch.
         no:  "end_to_end": images through the whole model every epoch,
              augmented in the tf.data pipeline.
    -> fit (early stopping on val_accuracy, best model kept)
    -> fine-tune phase for architectures that have one: the top of the base
       unfrozen, a 100x smaller learning rate, as TF's transfer-learning guide
    -> evaluation of the best model on the test split

Stopping: a ``cancel`` file in the run folder (core.runs.jobs.cancel writes it) or
SIGTERM stop training after the current batch; the run ends "cancelled".
"""

from __future__ import annotations

import importlib.util
import math
import os
import platform
import shutil
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

import keras
import tensorflow as tf

from core.config import get_settings
from core.data.dataset import DatasetError, Sample, scan_dataset
from core.models.distribute import configure_devices, is_chief, strategy_for_environment
from core.runs.evaluation import evaluate_run
from core.models.zoo import ARCHITECTURES, assemble, build_frozen_parts, build_model, unfreeze_top
from core.data.pipeline import make_dataset
from core.runs.recipes import TrainConfig, make_config
from core.runs.store import (
    CANCEL_FILE, HEARTBEAT_SECONDS, MODEL_FILE, TENSORBOARD_DIR, Mode, Phase, RunFacts, RunState,
    append_metrics, create_run, pid_alive, read_config, read_status, update_status, write_facts,
)
from core.data.splits import make_splits, subset

# Batch progress goes to status.json at most this often (seconds).
PROGRESS_INTERVAL = 0.25


class RunCancelled(Exception):
    """Someone asked the run to stop (cancel file or SIGTERM)."""


def training_mode(config: TrainConfig) -> Mode:
    """CACHED_FEATURES when the base is frozen and images are not augmented, else END_TO_END."""
    spec = ARCHITECTURES[config.arch]
    return Mode.CACHED_FEATURES if spec.frozen_base and config.augment.is_identity else Mode.END_TO_END


# --- talking to the outside world while training -----------------------------

class RunControl:
    """Cancel requests, heartbeat and throttled status writes for one run."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.cancel_file = run_dir / CANCEL_FILE
        self.cancel_event = threading.Event()
        self.writes_files = is_chief()
        self._last_progress = 0.0
        self._stop_heartbeat = threading.Event()

    def cancel_requested(self) -> bool:
        if not self.cancel_event.is_set() and self.cancel_file.exists():
            self.cancel_event.set()
        return self.cancel_event.is_set()

    def check(self) -> None:
        if self.cancel_requested():
            raise RunCancelled()

    def status(self, *, force: bool = True, **changes) -> None:
        """Write ``changes`` to status.json; unforced writes are throttled."""
        now = time.monotonic()
        if not self.writes_files or (not force and now - self._last_progress < PROGRESS_INTERVAL):
            return
        self._last_progress = now
        update_status(self.run_dir, heartbeat=time.time(), **changes)

    def claim(self) -> bool:
        """Mark the run as trained by this process; False if it must not run here."""
        if not self.writes_files:
            return True  # a non-chief worker of a cluster: the chief keeps the books
        me = os.getpid()

        def claimable(status):
            if not status.state.active:
                return False  # cancelled while queued, or already finished
            # Not when another live process trains it.
            return status.pid in (None, me) or not pid_alive(status.pid)

        if self.cancel_requested():
            update_status(self.run_dir, when=claimable, state=RunState.CANCELLED, finished=time.time())
            return False
        now = time.time()
        status = update_status(self.run_dir, when=claimable, state=RunState.RUNNING, pid=me,
                               started=now, heartbeat=now, finished=None, error=None)
        return status.state == RunState.RUNNING and status.pid == me

    def _beat(self) -> None:
        while not self._stop_heartbeat.wait(HEARTBEAT_SECONDS):
            update_status(self.run_dir, heartbeat=time.time())

    def __enter__(self):
        self._heartbeat = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        if self.writes_files:
            self._heartbeat.start()
        self._previous_sigterm = None
        if threading.current_thread() is threading.main_thread():
            self._previous_sigterm = signal.signal(signal.SIGTERM, lambda *_: self.cancel_event.set())
        return self

    def __exit__(self, *exc):
        self._stop_heartbeat.set()
        if self._heartbeat.is_alive():
            self._heartbeat.join()
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
        return False


# --- Keras callbacks -------------------------------------------------------------

class ProgressCallback(keras.callbacks.Callback):
    """Epoch and batch progress into status.json; stops within one batch when cancelled."""

    def __init__(self, control: RunControl, phase: str, batches_total: int):
        super().__init__()
        self.control, self.phase, self.batches_total = control, phase, batches_total

    def on_epoch_begin(self, epoch, logs=None):
        self.control.status(phase=self.phase, epoch=epoch + 1, batch=0,
                            batches_total=self.batches_total)

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
        if self.control.writes_files:
            append_metrics(self.control.run_dir, record)
        scores = " ".join(f"{key} {record[key]:.4f}" for key in ("loss", "accuracy", "val_loss", "val_accuracy")
                          if record[key] is not None)
        print(f"epoch {epoch + 1}/{self.epochs_total} {self.phase}: {scores} ({record['seconds']:.1f} s)",
              file=sys.stderr, flush=True)


def _number(value):
    return None if value is None else float(value)


class AtomicCheckpoint(keras.callbacks.Callback):
    """Keep the best model by val_accuracy in model.keras, never half written.

    keras.callbacks.ModelCheckpoint writes straight into the target file, so
    a reader (the Classify page) could load a partial file, and it saves the
    model being fitted, which in cached-features mode is only the head. This
    saves ``export_model`` (the full images -> logits model) to a temp file
    in the same folder and renames it over model.keras in one step.
    """

    def __init__(self, path: Path, export_model, control: RunControl):
        super().__init__()
        self.path, self.export_model, self.control = Path(path), export_model, control
        self.best = -math.inf
        self.best_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get("val_accuracy")
        if value is None or self.control.cancel_requested() or not value > self.best:
            return
        self.best, self.best_epoch = float(value), epoch + 1
        if self.control.writes_files:
            save_atomically(self.export_model, self.path)


def save_atomically(model, path: Path) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")  # Keras wants .keras
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


# --- the run -----------------------------------------------------------------------

def _compile(model, learning_rate: float) -> None:
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def _features_dataset(features, labels, batch_size: int, *, shuffle_seed: int | None = None):
    # Cached as float16 to halve memory and disk; the head computes in float32.
    dataset = tf.data.Dataset.from_tensor_slices((features.astype("float32"), labels))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(labels), seed=shuffle_seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _fit(model, train_data, val_data, *, control, checkpoint, config, phase, train_images,
         initial_epoch, epochs, epochs_total, run_dir) -> int:
    """model.fit with the run's callbacks; returns the number of epochs finished so far."""
    batches_total = math.ceil(train_images / config.batch_size)
    callbacks = [
        ProgressCallback(control, phase, batches_total),  # first: others see a cancel at once
        MetricsCallback(control, phase, train_images, epochs_total),
        checkpoint,
    ]
    if control.writes_files and importlib.util.find_spec("tensorboard") is not None:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(run_dir / TENSORBOARD_DIR),
                                                     write_graph=False))
    if config.patience:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_accuracy", mode="max", patience=config.patience, restore_best_weights=True))
    history = model.fit(train_data, validation_data=val_data, epochs=epochs,
                        initial_epoch=initial_epoch, callbacks=callbacks, verbose=0,
                        shuffle=False)  # the tf.data pipeline shuffles
    control.check()
    return initial_epoch + len(history.epoch)


def _train(run_dir: Path, control: RunControl) -> None:
    config = read_config(run_dir)
    spec = ARCHITECTURES[config.arch]
    settings = get_settings()

    # Data first: a wrong folder fails in a second, before TensorFlow builds anything.
    splits = make_splits(scan_dataset(config.data_root), seed=config.seed,
                         test_fraction=config.test_fraction,
                         validation_fraction=config.validation_fraction)
    train = subset(splits.train, config.subset, seed=config.seed) if config.subset else splits.train
    if len(splits.classes) < 2:
        raise DatasetError("Training needs at least two classes (two class folders).")
    if not train or not splits.validation:
        raise DatasetError(
            f"Not enough images: {len(train)} for training and {len(splits.validation)} for "
            "validation. Each class needs a few images in each split."
        )
    control.check()

    strategy = strategy_for_environment()
    mode = training_mode(config)
    fine_tune = spec.fine_tune and config.fine_tune_epochs > 0
    epochs_total = config.epochs + (config.fine_tune_epochs if fine_tune else 0)
    facts = RunFacts(
        classes=list(splits.classes),
        split_counts={**splits.counts(), "train": {
            name: sum(s.class_name == name for s in train) for name in splits.classes}},
        mode=mode, strategy=type(strategy).__name__, replicas=strategy.num_replicas_in_sync,
        versions={"python": platform.python_version(), "tensorflow": tf.__version__,
                  "keras": keras.__version__},
    )
    if control.writes_files:
        write_facts(run_dir, facts)
    control.status(mode=mode, epochs_total=epochs_total,
                   phase=Phase.TRAIN if mode == Mode.END_TO_END else Phase.FEATURES)

    num_classes, size, batch_size = len(splits.classes), config.image_size, config.batch_size
    keras.utils.set_random_seed(config.seed)
    decoded_cache = run_dir / ".cache"  # only used when decoded images outgrow memory
    if mode == Mode.CACHED_FEATURES:
        from core.models.features import cached_features

        with strategy.scope():
            feature_extractor, head = build_frozen_parts(config.arch, num_classes, size)
            model = assemble(feature_extractor, head)  # shares the head's layers and weights
            _compile(head, config.learning_rate)

        def features_of(samples: list[Sample]):
            # In the "features" phase, batch / batches_total count batches of images.
            control.status(phase=Phase.FEATURES, batch=0,
                           batches_total=math.ceil(len(samples) / batch_size))

            def progress(done, total):
                control.check()
                control.status(force=False, batch=math.ceil(done / batch_size))

            # The key names the extractor; cached_features adds the files and the size.
            return cached_features(
                feature_extractor, samples, size, batch_size,
                cache_key=f"{config.arch}-imagenet", cache_dir=settings.cache_dir / "features",
                progress=progress,
            )

        train_data = _features_dataset(*features_of(train), batch_size, shuffle_seed=config.seed)
        val_data = _features_dataset(*features_of(splits.validation), batch_size)
        fitted = head
    else:
        with strategy.scope():
            model = build_model(config.arch, num_classes, size, seed=config.seed)
            _compile(model, config.learning_rate)
        train_data = make_dataset(train, size, batch_size, training=True, seed=config.seed,
                                  augment=config.augment, cache_file=decoded_cache / "train")
        val_data = make_dataset(splits.validation, size, batch_size, training=False,
                                cache_file=decoded_cache / "validation")
        fitted = model

    checkpoint = AtomicCheckpoint(run_dir / MODEL_FILE, model, control)
    common = dict(control=control, checkpoint=checkpoint, config=config, train_images=len(train),
                  epochs_total=epochs_total, run_dir=run_dir)
    done = _fit(fitted, train_data, val_data, phase=Phase.TRAIN, initial_epoch=0,
                epochs=config.epochs, **common)

    if fine_tune:
        # The whole model from here on: images through the partly unfrozen base.
        with strategy.scope():
            unfreeze_top(model, config.fine_tune_layers)
            _compile(model, config.fine_tune_learning_rate)
        train_images = make_dataset(train, size, batch_size, training=True, seed=config.seed,
                                    augment=config.augment, cache_file=decoded_cache / "train")
        val_images = make_dataset(splits.validation, size, batch_size, training=False,
                                  cache_file=decoded_cache / "validation")
        _fit(model, train_images, val_images, phase=Phase.FINE_TUNE, initial_epoch=done,
             epochs=done + config.fine_tune_epochs, **common)
    shutil.rmtree(decoded_cache, ignore_errors=True)

    if control.writes_files:
        control.status(phase=Phase.EVALUATE, batch=0, batches_total=0)
        # Evaluate what was saved, loaded the way the Classify page loads it.
        best = keras.models.load_model(run_dir / MODEL_FILE, safe_mode=True)
        evaluate_run(run_dir, model=best)


def human_message(error: BaseException) -> str:
    """A sentence for the Train page; the traceback is kept separately."""
    from core.models.weights import WeightsUnavailableError

    if isinstance(error, (ValueError, FileNotFoundError, WeightsUnavailableError)):
        return str(error)
    if isinstance(error, (MemoryError, tf.errors.ResourceExhaustedError)):
        return "Training ran out of memory. Try a smaller batch size or image size."
    return f"Training failed: {type(error).__name__}: {error}"


def execute_run(run_dir: str | os.PathLike) -> RunState:
    """Train the run in ``run_dir`` in this process; returns its final state.

    Never raises for a failing run: the error is recorded in status.json.
    """
    run_dir = Path(run_dir)
    control = RunControl(run_dir)
    if not control.claim():
        return read_status(run_dir).state
    try:
        with control:
            _train(run_dir, control)
        state, changes = RunState.COMPLETED, {}
    except (RunCancelled, KeyboardInterrupt):
        state, changes = RunState.CANCELLED, {}
    except Exception as error:  # a failed run must not take its caller down
        state, changes = RunState.FAILED, {"error": human_message(error)}
        # The whole traceback goes to the log; status.json keeps the sentence.
        print("".join(traceback.format_exception(error)), file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(run_dir / ".cache", ignore_errors=True)
    if control.writes_files:
        update_status(run_dir, state=state, finished=time.time(), heartbeat=time.time(), **changes)
    return state


def cli_train(args) -> int:
    configure_devices()  # before TensorFlow starts its runtime
    try:
        config = make_config(
            args.data, args.arch, args.epochs, batch_size=args.batch_size,
            image_size=args.image_size, learning_rate=args.lr,
            fine_tune_epochs=args.fine_tune_epochs, patience=args.patience, seed=args.seed,
            augment=args.augment, subset=args.subset,
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    run_dir = create_run(config, args.runs_dir, state=RunState.RUNNING)
    print(f"training {config.arch} in {run_dir}", file=sys.stderr, flush=True)
    state = execute_run(run_dir)
    status = read_status(run_dir)
    if state == RunState.FAILED:
        print(f"error: {status.error}", file=sys.stderr)
    elif state != RunState.COMPLETED:
        print(f"run {state}", file=sys.stderr)
    print(run_dir, flush=True)
    return 0 if state == RunState.COMPLETED else 1
