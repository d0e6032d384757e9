"""Training: PawLab's engine on the tutorial's models and ours, and the tutorial's own pipeline.

    python benchmarks/bench_training.py [--epochs N] [--head-epochs N] [--fine-tune-epochs N]
        [--models cnn,cnn_aug,...] [--tutorial cnn,cnn_aug_preproc,mobilenet_v2]
        [--tutorial-validation tutorial|all] [--subset N] [--quick] [--stop-by 16:45]
        [--out DIR] [--render]

Every model trains in its own process, one after the other, on the photos of
../shared/data/cats_and_dogs at core.defaults' image size and batch size (160
px, 32). Epochs, learning rates, patience and fine-tuning default to each
architecture's recipe (core.runs.recipes.recipe_for); the flags override them.

- PawLab: ``python -m core train`` (the same engine the Train page runs).
  Results are read back from the run folder: metrics.jsonl (per-epoch
  val_accuracy, seconds, images/second, unix time), evaluation.json (accuracy
  on the leak-free test split), status.json (state) and facts.json (split
  counts, mode: cached_features or end_to_end). Frozen-base models first
  extract ImageNet features (phase "features", the base in ONNX Runtime:
  core.models.onnx_base); PAWLAB_HOME is a fresh temp folder, so that cache
  and the base's ONNX copy are cold and their time counts.
- The tutorial's pipeline (``--tutorial``): ``image_dataset_from_directory``
  (shuffled, unseeded) + ``prefetch(AUTOTUNE)`` on the train/ and validation/
  folders, the tutorial's model (augmentation layers inside for the CNNs; a
  frozen ImageNet MobileNetV2 with Dropout, Flatten, Dense 64 for
  mobilenet_v2), Adam at the recipe's learning rate, ``model.fit`` with a
  callback timing each epoch. ``--tutorial-validation tutorial`` (default)
  splits validation/ as the tutorial does: ``test = validation.take(n // 5)``,
  ``validation = validation.skip(n // 5)`` in batches, on a dataset that Keras
  reshuffles every pass (file order shuffled once, then a 256-photo shuffle
  buffer each pass), so each epoch validates on 808 of the 1000 photos, not
  the same 808 every epoch, and the "test" batches overlap them; after the
  last epoch the model is evaluated on that "test" set (as the tutorial does) and on all
  1000 validation/ photos. ``all`` validates on all 1000 every epoch.

Load: the 1/5/15-minute load averages (os.getloadavg) are sampled before each
model, every --load-every seconds while it trains, and after it; they are
printed and saved with the results, next to os.cpu_count(). Nothing else about
the machine is claimed.

Peak memory is each child's own ru_maxrss (``os.wait4``; RUSAGE_CHILDREN
would be the maximum over all children so far). Time to accuracy is wall
seconds from launching the process (Python and TensorFlow start-up, data
scan, feature extraction included) to the end of the first epoch whose
validation accuracy reaches the tutorial's best for the family: 0.73 from
scratch, 0.97 transfer. Results are written after every model to
--out/training.{md,json} (default benchmarks/results/), so an interrupted run
keeps what it has; ``--render`` rewrites training.md from training.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from _common import REPO, cats_and_dogs, table, use_temp_homes

from core import defaults
from core.runs.recipes import TUTORIAL_EPOCHS, recipe_for
from core.runs.tutorial import NEXT_STEPS, TUTORIAL_ARCHS

OURS = TUTORIAL_ARCHS + NEXT_STEPS
TUTORIAL_PIPELINE = TUTORIAL_ARCHS  # the tutorial's own code for each of its four models
# Run order, most telling first so a --stop-by cut loses the least: the cheap
# frozen-base transfer run, our scratch recipe, the tutorial's cnn in both
# pipelines back to back, then fine-tuning (its epochs push every image
# through MobileNetV2), the rest; last the tutorial's own MobileNetV2, whose
# every epoch is a full MobileNetV2 forward pass over every photo.
RUN_ORDER = (
    ("ours", "mobilenet_v2"),
    ("ours", "cnn_plus"),
    ("ours", "cnn"),
    ("tutorial", "cnn"),
    ("ours", "mobilenet_v2_finetune"),
    ("ours", "cnn_aug_preproc"),
    ("tutorial", "cnn_aug_preproc"),
    ("ours", "cnn_aug"),
    ("tutorial", "cnn_aug"),
    ("tutorial", "mobilenet_v2"),
)
# The tutorial's best validation accuracy per family: what "as good" means.
TARGETS = {"scratch": 0.73, "transfer": 0.97}
# Launch to the transfer target, cold, on 2 cores (issue 22; 30 s in issue 12, "< 60 s" before).
TRANSFER_GOAL_SECONDS = 20
FAMILY = {
    "cnn": "scratch",
    "cnn_aug": "scratch",
    "cnn_aug_preproc": "scratch",
    "cnn_plus": "scratch",
    "mobilenet_v2": "transfer",
    "mobilenet_v2_finetune": "transfer",
}
# How the tutorial's pipeline validates (see the module docstring).
VALIDATION_MODES = {
    "tutorial": "the tutorial's split: validation/ reshuffled every pass, its first n//5 batches "
    'taken as "test", the rest validate (808 of 1000 photos, not the same ones every epoch)',
    "all": "all 1000 photos of validation/ every epoch",
}


def load_now() -> list[float]:
    """The 1, 5 and 15 minute load averages, as sampled now."""
    return [round(x, 2) for x in os.getloadavg()]


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


# --- the tutorial's own pipeline, run in a child process -------------------------


def tutorial_model(arch: str, image_size: int):
    """The tutorial's models, as its code builds them (Sequential, scaling inside the model)."""
    import keras
    from keras import layers

    shape = (image_size, image_size, 3)
    if arch == "mobilenet_v2":
        # Frozen ImageNet MobileNetV2 (KERAS_HOME holds the shared weights), the
        # tutorial's head on its flattened feature map, no augmentation.
        base = keras.applications.MobileNetV2(input_shape=shape, include_top=False, weights="imagenet")
        base.trainable = False
        return keras.Sequential(
            [
                keras.Input(shape=shape),
                layers.Rescaling(1 / 127.5, offset=-1),  # preprocess_input
                base,
                layers.Dropout(0.2),
                layers.Flatten(),
                layers.Dense(64, activation="relu"),
                layers.Dense(2),
            ]
        )
    augmentation = {
        "cnn": [],
        "cnn_aug": [layers.RandomFlip("vertical"), layers.RandomRotation(1.0)],
        "cnn_aug_preproc": [layers.RandomFlip("horizontal_and_vertical"), layers.RandomRotation(0.2)],
    }[arch]
    scaling = (
        layers.Rescaling(1 / 127.5, offset=-1)
        if arch == "cnn_aug_preproc"  # preprocess_input
        else layers.Rescaling(1 / 255)
    )
    return keras.Sequential(
        [
            keras.Input(shape=shape),
            *augmentation,
            scaling,
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Dropout(0.2),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Dropout(0.2),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dense(2),
        ]
    )


class _Stop(Exception):
    """SIGTERM in a tutorial worker: keep the finished epochs, skip the final evaluations."""


def tutorial_worker(args) -> int:
    """Train one tutorial model the tutorial's way; the report is rewritten after every epoch."""
    import keras
    import tensorflow as tf

    def on_term(*_):
        raise _Stop()

    signal.signal(signal.SIGTERM, on_term)
    arch = args.tutorial_worker
    report_path = Path(args.report)
    size = (args.image_size, args.image_size)
    train = keras.utils.image_dataset_from_directory(
        Path(args.data) / "train", shuffle=True, batch_size=args.batch_size, image_size=size
    ).prefetch(tf.data.AUTOTUNE)
    validation_all = keras.utils.image_dataset_from_directory(
        Path(args.data) / "validation", shuffle=True, batch_size=args.batch_size, image_size=size
    )
    report = {
        "validation": args.tutorial_validation,
        "learning_rate": args.learning_rate,
        "devices": [device.device_type for device in tf.config.list_physical_devices()],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "epochs": [],
    }
    if args.tutorial_validation == "tutorial":
        batches = int(tf.data.experimental.cardinality(validation_all))
        test = validation_all.take(batches // 5).prefetch(tf.data.AUTOTUNE)
        validation = validation_all.skip(batches // 5).prefetch(tf.data.AUTOTUNE)
        report["validation_batches"], report["test_batches"] = batches - batches // 5, batches // 5
        # Only the last batch can be short, and it is never among the first n // 5.
        report["validation_photos"] = len(validation_all.file_paths) - (batches // 5) * args.batch_size
    else:
        test, validation = None, validation_all.prefetch(tf.data.AUTOTUNE)
        report["validation_photos"] = len(validation_all.file_paths)
    model = tutorial_model(arch, args.image_size)
    model.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    epochs = report["epochs"]

    def save():
        report_path.write_text(json.dumps(report))

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start, self.train_end = time.perf_counter(), None

        def on_test_begin(self, logs=None):
            self.train_end = self.train_end or time.perf_counter()  # training part of the epoch ends

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            now = time.perf_counter()
            epochs.append(
                {
                    "epoch": epoch + 1,
                    "seconds": round(now - self.start, 3),
                    "train_seconds": round((self.train_end or now) - self.start, 3),
                    "time": time.time(),
                    "accuracy": float(logs.get("accuracy", 0)),
                    "val_accuracy": float(logs.get("val_accuracy", 0)),
                    "load": load_now(),
                }
            )
            save()
            print(
                f"tutorial {arch} epoch {epoch + 1}/{args.epochs}: "
                f"val_accuracy {epochs[-1]['val_accuracy']:.4f} ({epochs[-1]['seconds']:.1f} s, "
                f"load average {epochs[-1]['load']})",
                file=sys.stderr,
                flush=True,
            )

    try:
        model.fit(train, validation_data=validation, epochs=args.epochs, callbacks=[EpochTimer()], verbose=0)
        # What the tutorial prints at the end (its "test" overlaps validation), and the
        # final model on every validation/ photo once, which does not depend on the shuffle.
        if test is not None:
            report["final_tutorial_test_accuracy"] = float(
                model.evaluate(test, verbose=0, return_dict=True)["accuracy"]
            )
        report["final_all_validation_accuracy"] = float(
            model.evaluate(validation_all.prefetch(tf.data.AUTOTUNE), verbose=0, return_dict=True)["accuracy"]
        )
        save()
    except _Stop:
        report["stopped"] = True
        save()
        print(f"tutorial {arch}: stopped after {len(epochs)} epochs", file=sys.stderr, flush=True)
        return 143
    return 0


def subset_folder(data: Path, per_class: int, into: Path) -> Path:
    """A folder of symlinks to the first ``per_class`` train photos per class (for quick runs).

    Not the same photos as PawLab's seeded subset, only as many; validation/ stays whole.
    """
    for class_dir in sorted((data / "train").iterdir()):
        target = into / "train" / class_dir.name
        target.mkdir(parents=True)
        for photo in sorted(class_dir.iterdir())[:per_class]:
            (target / photo.name).symlink_to(photo)
    (into / "validation").symlink_to(data / "validation")
    return into


# --- running children -----------------------------------------------------------


def run_child(command: list[str], stop_by: float | None, stdout_path: Path, load_every: float) -> dict:
    """Run ``command``; its stderr goes to ours (the log).

    Returns launch time, wall, peak memory, exit code and the load averages
    sampled before, every ``load_every`` seconds during, and after the run.
    Past ``stop_by`` (unix time) the child gets SIGTERM: PawLab's training stops
    after the current batch and keeps its finished epochs; a tutorial worker
    keeps its finished epochs.
    """
    load_before = load_now()
    launched = time.time()
    samples = []
    next_sample = launched + load_every
    with open(stdout_path, "w") as stdout:
        child = subprocess.Popen(command, cwd=REPO, stdout=stdout, stderr=None)
    stopped = False
    try:
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            now = time.time()
            if now >= next_sample:
                samples.append({"s": round(now - launched, 1), "load": load_now()})
                next_sample += load_every
            if stop_by and now > stop_by and not stopped:
                print(f"--stop-by reached: stopping {' '.join(command[-6:])}", file=sys.stderr, flush=True)
                child.send_signal(signal.SIGTERM)
                stopped = True
            time.sleep(0.5)
    except BaseException:
        child.kill()  # never leave a training process behind us
        raise
    child.returncode = os.waitstatus_to_exitcode(status)
    result = {
        "launched": launched,
        "wall_s": time.time() - launched,
        "peak_mb": usage.ru_maxrss / 1024,  # Linux reports KiB
        "exit_code": child.returncode,
        "stopped_by_deadline": stopped,
        "load_before": load_before[0],
        "load_after": load_now()[0],
        "load_samples": [{"s": 0.0, "load": load_before}] + samples,
    }
    result["load_samples"].append({"s": round(result["wall_s"], 1), "load": load_now()})
    print(
        f"load average (1/5/15 min) before {load_before}, {describe_samples(samples)}, "
        f"after {result['load_samples'][-1]['load']}",
        file=sys.stderr,
        flush=True,
    )
    return result


def describe_samples(samples: list[dict]) -> str:
    """'during: 1-min min-max over N samples' for load samples taken while a child ran."""
    if not samples:
        return "during: no sample (ran shorter than the sampling interval)"
    ones = [sample["load"][0] for sample in samples]
    return f"during: 1-min {min(ones):.2f}-{max(ones):.2f} over {len(ones)} samples"


def time_to(epochs: list[dict], target: float, launched: float):
    """Seconds from launch to the end of the first epoch reaching ``target``; None if never."""
    for record in epochs:
        if (record.get("val_accuracy") or 0) >= target:
            return record["time"] - launched
    return None


def planned_epochs(arch: str, args) -> tuple[int, int]:
    """(epochs, fine-tune epochs) for ``arch``: the flags where given, else its recipe's."""
    recipe = recipe_for(arch)
    given = args.epochs if FAMILY[arch] == "scratch" else args.head_epochs
    fine_tune = recipe.fine_tune_epochs if args.fine_tune_epochs is None else args.fine_tune_epochs
    return (given or recipe.epochs), (fine_tune if recipe.fine_tune_epochs else 0)


def train_ours(arch: str, args, runs_dir: Path, work: Path) -> dict:
    from core.runs.store import RunFileError, read_evaluation, read_facts, read_metrics, read_status
    from core.runs.trust import read_trust

    family = FAMILY[arch]
    recipe = recipe_for(arch)
    epochs, fine_tune_epochs = planned_epochs(arch, args)
    command = [
        sys.executable,
        "-m",
        "core",
        "train",
        "--data",
        str(args.data),
        "--arch",
        arch,
        "--epochs",
        str(epochs),
        "--image-size",
        str(args.image_size or recipe.image_size),
        "--batch-size",
        str(args.batch_size),
        "--seed",
        str(defaults.SEED),
        # `core train --patience` defaults to 0, not the recipe's: pass the recipe's.
        "--patience",
        str(recipe.patience),
        "--runs-dir",
        str(runs_dir),
    ]
    if fine_tune_epochs:
        command += ["--fine-tune-epochs", str(fine_tune_epochs)]
    if args.subset:
        command += ["--subset", str(args.subset)]
    child = run_child(command, args.stop_by, work / f"{arch}.stdout", args.load_every)
    lines = (work / f"{arch}.stdout").read_text().split()
    run_dir = Path(lines[-1]) if lines else None
    row = {"pipeline": "PawLab", "model": arch, "family": family, **child}
    if run_dir is None or not run_dir.is_dir():
        return {**row, "state": "no run folder"}

    try:
        status, facts, metrics = read_status(run_dir), read_facts(run_dir), read_metrics(run_dir)
        evaluation = read_evaluation(run_dir)
        trust = read_trust(run_dir)
    except RunFileError as error:
        return {**row, "state": f"unreadable run: {error}", "run": run_dir.name}
    head = [m for m in metrics if m["phase"] == "train"]
    tuned = [m for m in metrics if m["phase"] == "fine_tune"]
    first = metrics[0] if metrics else None
    return {
        **row,
        "state": str(status.state),
        "mode": str(facts.mode or "—"),
        "run": run_dir.name,
        "strategy": facts.strategy,
        "replicas": facts.replicas,
        "epochs_planned": f"{epochs}+{fine_tune_epochs}" if fine_tune_epochs else str(epochs),
        "epochs_done": len(metrics),
        "train_images": sum((facts.split_counts.get("train") or {}).values()),
        "val_images": sum((facts.split_counts.get("validation") or {}).values()),
        "best_val_accuracy": max((m["val_accuracy"] for m in metrics), default=None),
        "saved_val_accuracy": trust.val_accuracy,
        "test_accuracy": evaluation.accuracy if evaluation else None,
        "median_epoch_s": median([m["seconds"] for m in head]),
        "max_epoch_s": max((m["seconds"] for m in head), default=None),
        "median_images_per_s": median([m["images_per_second"] for m in head]),
        "median_fine_tune_epoch_s": median([m["seconds"] for m in tuned]),
        "fine_tune_images_per_s": median([m["images_per_second"] for m in tuned]),
        # Launch to the start of epoch 1: start-up, data scan, feature extraction for frozen bases.
        "to_first_epoch_s": (first["time"] - first["seconds"] - child["launched"]) if first else None,
        "time_to_target_s": time_to(metrics, TARGETS[family], child["launched"]),
        "target": TARGETS[family],
        "epochs": metrics,
    }


def size_text(image_size: int) -> str:
    """The settings line's image size: one for every model, or each recipe's (0)."""
    if image_size:
        return f"{image_size} px"
    sizes = {arch: recipe_for(arch).image_size for arch in FAMILY}
    return "each recipe's image size (" + ", ".join(f"{arch} {size} px" for arch, size in sizes.items()) + ")"


def tutorial_command(arch: str, args, data: Path, report: Path) -> list[str]:
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "--tutorial-worker",
        arch,
        "--data",
        str(data),
        "--epochs",
        str(args.epochs or recipe_for(arch).epochs),
        "--image-size",
        str(args.image_size or defaults.IMAGE_SIZE),
        "--batch-size",
        str(args.batch_size),
        "--learning-rate",
        repr(recipe_for(arch).learning_rate),
        "--tutorial-validation",
        args.tutorial_validation,
        "--report",
        str(report),
    ]


def train_tutorial(arch: str, args, data: Path, work: Path) -> dict:
    report_path = work / f"tutorial-{arch}.json"
    command = tutorial_command(arch, args, data, report_path)
    child = run_child(command, args.stop_by, work / f"tutorial-{arch}.stdout", args.load_every)
    report = json.loads(report_path.read_text()) if report_path.exists() else {"epochs": []}
    row = tutorial_row(arch, int(command[command.index("--epochs") + 1]), report["epochs"], child)
    row.update(
        {
            key: report[key]
            for key in (
                "validation",
                "learning_rate",
                "devices",
                "tensorflow",
                "keras",
                "validation_batches",
                "test_batches",
                "final_tutorial_test_accuracy",
                "final_all_validation_accuracy",
                "stopped",
            )
            if key in report
        }
    )
    if "validation_photos" in report:
        row["val_images"] = (
            report["validation_photos"]
            if report.get("validation") == "all"
            else (f"{report['validation_photos']} (varies)")
        )
    return row


def tutorial_row(arch: str, epochs_planned: int, epochs: list[dict], child: dict, pipeline: str = "tutorial") -> dict:
    """A results row from a tutorial worker's per-epoch report and run_child's numbers."""
    seconds = [e["seconds"] for e in epochs]
    first = epochs[0] if epochs else None
    family = FAMILY[arch]
    return {
        "pipeline": pipeline,
        "model": arch,
        "family": family,
        **child,
        "state": "completed" if child["exit_code"] == 0 else f"exit {child['exit_code']}",
        "mode": "end_to_end" + (" (augmentation in model)" if arch in ("cnn_aug", "cnn_aug_preproc") else ""),
        "epochs_planned": str(epochs_planned),
        "epochs_done": len(epochs),
        "val_images": 1000,
        "best_val_accuracy": max((e["val_accuracy"] for e in epochs), default=None),
        "test_accuracy": None,  # its validation/ folder holds our test photos: no clean test split
        "median_epoch_s": median(seconds),
        "max_epoch_s": max(seconds, default=None),
        "median_images_per_s": None,
        "to_first_epoch_s": (first["time"] - first["seconds"] - child["launched"]) if first else None,
        "time_to_target_s": time_to(epochs, TARGETS[family], child["launched"]),
        "target": TARGETS[family],
        "epochs": epochs,
    }


# --- report ------------------------------------------------------------------------


def fmt(value, digits=1):
    if value is None:
        return "—"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def cpu_count_text(meta: dict) -> str:
    """The CPU count the run recorded (os.cpu_count()); older results kept it in 'machine'."""
    count = meta.get("cpu_count")
    if count is None:
        found = re.match(r"\s*(\d+) CPU", str(meta.get("machine", "")))
        count = int(found.group(1)) if found else None
    return f"os.cpu_count(): {count}" if count else "CPU count not recorded"


def load_text(meta: dict, rows: list[dict]) -> str:
    """Only the load averages that were sampled; 'not recorded' where none were."""
    parts = []
    if meta.get("load_start"):
        parts.append(f"at start {meta['load_start']}")
    during = [sample["load"][0] for row in rows for sample in row.get("load_samples", [])]
    if during:
        parts.append(
            f"1-min {min(during):.2f}-{max(during):.2f} over {len(during)} samples taken "
            "before, during and after each model (per model below)"
        )
    if meta.get("load_end"):
        parts.append(f"at end {meta['load_end']}")
    if not parts:
        return "Load average: not recorded."
    text = "Load average (1, 5, 15 min, os.getloadavg) " + ", ".join(parts) + "."
    if not during:
        text += " During the run: not recorded."
    return text


def epochs_text(meta: dict) -> str:
    epochs = meta.get("epochs")
    if isinstance(epochs, int) and epochs:
        return (
            f"from-scratch models and the tutorial's pipeline **{epochs} epochs** (the tutorial trains "
            f"{TUTORIAL_EPOCHS})"
        )
    return "epochs: each architecture's recipe (core.runs.recipes)"


def render(rows: list[dict], meta: dict) -> str:
    order = [(p, m) for p, m in RUN_ORDER]
    rows = sorted(
        rows,
        key=lambda r: (
            r["pipeline"] != "PawLab",
            OURS.index(r["model"]) if r["pipeline"] == "PawLab" else order.index(("tutorial", r["model"])),
            r["pipeline"],
        ),
    )
    tutorial_rows = [r for r in rows if r["pipeline"] != "PawLab"]
    out = [
        "# Training benchmark",
        "",
        f"Started {meta['started_utc']}, finished {meta.get('finished_utc', '(still running)')}. "
        f"{cpu_count_text(meta)}. {load_text(meta, rows)}",
        "",
    ]
    if meta.get("command"):
        out += [f"Command: `{meta['command']}`", ""]
    ours_rows = [r for r in rows if r["pipeline"] == "PawLab"]
    validation = meta.get("tutorial_validation")
    out += [
        f"Settings: {size_text(meta['image_size'])}, batch {meta['batch_size']}; {epochs_text(meta)}"
        + (
            f"; PawLab's frozen-base heads {meta['head_epochs']}; fine-tuning {meta['fine_tune_epochs']} epochs"
            if any(FAMILY[r["model"]] == "transfer" for r in ours_rows)
            else ""
        )
        + (f"; **training subset {meta['subset']} photos per class**" if meta["subset"] else "")
        + (
            f"; the tutorial's pipeline validates on {VALIDATION_MODES.get(validation, validation)}"
            if validation and tutorial_rows
            else ""
        )
        + "."
        + (
            " PAWLAB_HOME was a fresh temp folder, so feature caches were cold: "
            "the transfer models' times include extracting MobileNetV2 features."
            if any(FAMILY[r["model"]] == "transfer" for r in ours_rows)
            else ""
        ),
        "",
    ]
    if meta.get("skipped"):
        out += [f"Not run (the --stop-by deadline came first): {', '.join(meta['skipped'])}.", ""]
    for note in meta.get("notes", []):
        out += [note, ""]
    out += ["## Per model", ""]
    table_rows = []
    train_images = 2 * meta["subset"] if meta["subset"] else 2000
    for r in rows:
        if r["pipeline"] != "PawLab" and r.get("median_images_per_s") is None:
            train_seconds = median([e.get("train_seconds") for e in r.get("epochs", [])])
            r["median_images_per_s"] = train_images / train_seconds if train_seconds else None
        samples = r.get("load_samples")
        table_rows.append(
            {
                "pipeline": r["pipeline"],
                "model": r["model"],
                "mode": r.get("mode", "—"),
                "state": r.get("state", "—"),
                "epochs": f"{r.get('epochs_done', 0)}/{r.get('epochs_planned', '?')}",
                "val photos": r.get("val_images", "—"),
                "best val acc": fmt(r.get("best_val_accuracy"), 3),
                "saved model val acc": fmt(r.get("saved_val_accuracy"), 3),
                "test acc": fmt(r.get("test_accuracy"), 3),
                "epoch s (median)": fmt(r.get("median_epoch_s")),
                "epoch s (max)": fmt(r.get("max_epoch_s")),
                "max/median": fmt(r["max_epoch_s"] / r["median_epoch_s"], 2)
                if r.get("max_epoch_s") and r.get("median_epoch_s")
                else "—",
                "img/s": fmt(r.get("median_images_per_s"), 0),
                "fine-tune epoch s": fmt(r.get("median_fine_tune_epoch_s")),
                "launch→epoch 1 s": fmt(r.get("to_first_epoch_s")),
                "wall s": fmt(r.get("wall_s"), 0),
                "peak MB": fmt(r.get("peak_mb"), 0),
                "load 1-min before/after": f"{fmt(r.get('load_before'))}/{fmt(r.get('load_after'))}",
                "load 1-min during (min-max)": (
                    f"{min(s['load'][0] for s in samples[1:-1]):.1f}-{max(s['load'][0] for s in samples[1:-1]):.1f}"
                    if samples and len(samples) > 2
                    else "not recorded"
                ),
            }
        )
    columns = [
        "pipeline",
        "model",
        "mode",
        "state",
        "epochs",
        "val photos",
        "best val acc",
        "saved model val acc",
        "test acc",
        "epoch s (median)",
        "epoch s (max)",
        "max/median",
        "img/s",
        "fine-tune epoch s",
        "launch→epoch 1 s",
        "wall s",
        "peak MB",
        "load 1-min before/after",
        "load 1-min during (min-max)",
    ]
    out += [table(table_rows, columns), ""]
    out += [
        "PawLab validates on 800 photos and tests on 200 held-out photos of validation/. "
        "The tutorial's pipeline validates on all 1000 photos of validation/ (rows with 1000 val photos) "
        'or, as the tutorial\'s code does, on what is left after taking its "test" batches from a '
        "validation set that is reshuffled every pass (808 photos, not the same ones every epoch: "
        '"(varies)"); either way its '
        "validation photos include our test photos, so it has no clean test accuracy. Best val acc is "
        "the best epoch's, as training measured it; saved model val acc is the saved (best) model's on "
        "the same photos, as calibration measured it, with the model's test-time flips when its recipe "
        "has them (trust.json); test acc is the saved model's, flips included. img/s: training "
        "images per second of the training part of an epoch (PawLab's metrics.jsonl). Epoch seconds include "
        "validation. For cached_features rows, epoch seconds are the head's epochs on cached features; "
        "launch→epoch 1 includes Python/TensorFlow start-up and feature extraction.",
        "",
    ]
    finals = [r for r in tutorial_rows if "final_all_validation_accuracy" in r or "final_tutorial_test_accuracy" in r]
    if finals:
        out += [
            "## The tutorial's pipeline after its last epoch",
            "",
            table(
                [
                    {
                        "model": r["model"],
                        "epochs": r.get("epochs_done"),
                        "best val acc (per epoch)": fmt(r.get("best_val_accuracy"), 3),
                        "at epoch": ", ".join(
                            str(e["epoch"]) for e in r["epochs"] if e["val_accuracy"] == r.get("best_val_accuracy")
                        )
                        or "—",
                        'tutorial\'s "test" (overlaps validation)': fmt(r.get("final_tutorial_test_accuracy"), 3),
                        "all 1000 validation/ photos": fmt(r.get("final_all_validation_accuracy"), 3),
                        "devices TensorFlow saw": ", ".join(r.get("devices", [])) or "—",
                    }
                    for r in finals
                ],
                [
                    "model",
                    "epochs",
                    "best val acc (per epoch)",
                    "at epoch",
                    'tutorial\'s "test" (overlaps validation)',
                    "all 1000 validation/ photos",
                    "devices TensorFlow saw",
                ],
            ),
            "",
        ]
    by_key = {(r["pipeline"], r["model"]): r for r in rows}
    for r in tutorial_rows:
        if ("PawLab", r["model"]) in by_key or not r.get("epochs"):
            continue  # shown side by side below
        out += [
            f"## Epoch by epoch: {r['pipeline']} {r['model']}",
            "",
            table(
                [
                    {
                        "epoch": e["epoch"],
                        "seconds": fmt(e.get("seconds")),
                        "train acc": fmt(e.get("accuracy"), 3),
                        "val acc": fmt(e.get("val_accuracy"), 3),
                        "load average at its end (1/5/15 min)": (
                            "/".join(f"{x:.2f}" for x in e["load"]) if e.get("load") else "not recorded"
                        ),
                    }
                    for e in r["epochs"]
                ],
                ["epoch", "seconds", "train acc", "val acc", "load average at its end (1/5/15 min)"],
            ),
            "",
        ]
    for model in TUTORIAL_PIPELINE:
        ours = by_key.get(("PawLab", model))
        theirs = [r for r in tutorial_rows if r["model"] == model and r["epochs"]]
        if not (ours and theirs and ours.get("epochs")):
            continue
        ours_epochs = [e for e in ours["epochs"] if e.get("phase", "train") == "train"]
        count = max(len(ours_epochs), *(len(r["epochs"]) for r in theirs))
        epoch_rows = []
        columns = (
            ["epoch", "PawLab s"]
            + [f"{r['pipeline']} s" for r in theirs]
            + [f"{r['pipeline']} / PawLab" for r in theirs]
            + ["PawLab val acc"]
            + [f"{r['pipeline']} val acc" for r in theirs]
        )
        for index in range(count):
            mine = ours_epochs[index] if index < len(ours_epochs) else {}
            line = {
                "epoch": index + 1,
                "PawLab s": fmt(mine.get("seconds")),
                "PawLab val acc": fmt(mine.get("val_accuracy"), 3),
            }
            for r in theirs:
                tut = r["epochs"][index] if index < len(r["epochs"]) else {}
                line[f"{r['pipeline']} s"] = fmt(tut.get("seconds"))
                line[f"{r['pipeline']} / PawLab"] = fmt(tut["seconds"] / mine["seconds"], 2) if mine and tut else "—"
                line[f"{r['pipeline']} val acc"] = fmt(tut.get("val_accuracy"), 3)
            epoch_rows.append(line)
        cached = ours.get("mode") == "cached_features"
        concurrent = any("concurrent" in r["pipeline"] for r in theirs)
        out += [
            f"## Side by side, epoch by epoch: {model}",
            "",
            table(epoch_rows, columns),
            "",
            "Same model and settings; "
            + (
                "PawLab trains the head on MobileNetV2 features extracted once and cached, "
                "the tutorial pushes every photo through MobileNetV2 every epoch, "
                if cached
                else "PawLab decodes each photo once (epoch 1) and reads decoded images from its cache "
                "afterwards, the tutorial decodes every photo every epoch, "
            )
            + "and they validate on different photos (see above). The script runs models one after "
            "the other"
            + (' (a "concurrent" row ran at the same time as PawLab\'s, see the notes)' if concurrent else "")
            + "; the load averages sampled for each row are in the table above.",
            "",
        ]
    out += ["## Time to the tutorial's accuracy", ""]

    def reached(row):
        if row is None:
            return "not run"
        seconds = row.get("time_to_target_s")
        return f"{seconds:.0f} s" if seconds is not None else f"never (in {row.get('epochs_done', 0)} epochs)"

    target_rows = []
    tutorial_scratch = [r for r in tutorial_rows if FAMILY[r["model"]] == "scratch"]
    tutorial_times = [r["time_to_target_s"] for r in tutorial_scratch if r and r.get("time_to_target_s") is not None]
    ours_order = ("cnn", "cnn_aug", "cnn_aug_preproc", "cnn_plus", "mobilenet_v2", "mobilenet_v2_finetune")
    for row in tutorial_rows + sorted(
        (r for r in rows if r["pipeline"] == "PawLab"), key=lambda r: ours_order.index(r["model"])
    ):
        pipeline, model = row["pipeline"], row["model"]
        family = FAMILY[model]
        goal, verdict = "—", "—"
        seconds = row.get("time_to_target_s")
        if pipeline == "PawLab" and model == "cnn_plus":
            goal = "≤ half the tutorial's time"
            if seconds is None:
                verdict = "no (never reached)"
            elif tutorial_times:
                best = min(tutorial_times)
                verdict = f"{'yes' if seconds <= best / 2 else 'no'} ({seconds / best:.2f}x the tutorial's best)"
            elif tutorial_scratch:
                verdict = "yes: the tutorial's pipeline never reached it in its epochs"
            else:
                verdict = "unknown: the tutorial's pipeline was not run"
        elif pipeline == "PawLab" and family == "transfer":
            goal = f"≤ {TRANSFER_GOAL_SECONDS} s"
            verdict = "no (never reached)" if seconds is None else ("yes" if seconds <= TRANSFER_GOAL_SECONDS else "no")
        target_rows.append(
            {
                "pipeline": pipeline,
                "model": model,
                "family": family,
                "target val acc": row["target"],
                "launch → target": reached(row),
                "best val acc": fmt(row.get("best_val_accuracy"), 3),
                "goal": goal,
                "met": verdict,
            }
        )
    out += [
        table(
            target_rows,
            ["pipeline", "model", "family", "target val acc", "launch → target", "best val acc", "goal", "met"],
        ),
        "",
    ]
    out += [
        "Measured from launching the training process, so Python and TensorFlow start-up and, "
        "for PawLab's transfer models, feature extraction with a cold cache are included. "
        "Validation sets differ (see above), so accuracies are close but not identical measures.",
        "",
    ]
    return "\n".join(out)


def write_results(rows, meta, out_dir: Path) -> str:
    out_dir.mkdir(parents=True, exist_ok=True)
    text = render(rows, meta)
    (out_dir / "training.md").write_text(text)
    (out_dir / "training.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--epochs",
        type=int,
        default=0,
        help="from-scratch models and the tutorial's pipeline; 0 = each recipe's (core.runs.recipes)",
    )
    parser.add_argument(
        "--head-epochs", type=int, default=0, help="frozen-base phase of PawLab's transfer models; 0 = each recipe's"
    )
    parser.add_argument(
        "--fine-tune-epochs",
        type=int,
        default=None,
        help="fine-tuning epochs of mobilenet_v2_finetune; default: its recipe's",
    )
    parser.add_argument("--models", default=",".join(OURS), help="PawLab models, comma separated ('' for none)")
    parser.add_argument(
        "--tutorial",
        default="cnn,cnn_aug_preproc",
        help="models to train with the tutorial's own pipeline too ('' for none): " + ", ".join(TUTORIAL_PIPELINE),
    )
    parser.add_argument(
        "--tutorial-validation",
        choices=sorted(VALIDATION_MODES),
        default="tutorial",
        help="how the tutorial's pipeline validates: " + "; ".join(f"{k}: {v}" for k, v in VALIDATION_MODES.items()),
    )
    parser.add_argument("--subset", type=int, default=0, help="training photos per class; 0 = all")
    parser.add_argument("--quick", action="store_true", help="2 epochs everywhere, 1 fine-tuning epoch")
    parser.add_argument(
        "--image-size", type=int, help="for every model (default: each recipe's; the tutorial's pipeline 160 px)"
    )
    parser.add_argument("--batch-size", type=int, default=defaults.BATCH_SIZE)
    parser.add_argument(
        "--load-every", type=float, default=30.0, help="seconds between load-average samples while a model trains"
    )
    parser.add_argument("--stop-by", default=None, help="UTC HH:MM: start nothing after it, stop a running model at it")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--render", action="store_true", help="only rewrite training.md from training.json in --out")
    # Internal: the child process that trains one tutorial model.
    parser.add_argument("--tutorial-worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--data", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--report", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--learning-rate", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tutorial_worker:
        return tutorial_worker(args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stops the running child too
    if args.render:
        saved = json.loads((Path(args.out) / "training.json").read_text())
        print(write_results(saved["rows"], saved["meta"], Path(args.out)))
        return 0

    command_line = shlex.join(["python", "benchmarks/bench_training.py", *sys.argv[1:]])
    if args.quick:
        args.epochs, args.head_epochs, args.fine_tune_epochs = 2, args.head_epochs or 2, 1
    if args.stop_by:
        hours, minutes = map(int, args.stop_by.split(":"))
        now = datetime.now(UTC)
        args.stop_by = now.replace(hour=hours, minute=minutes, second=0, microsecond=0).timestamp()
    models = [m for m in args.models.split(",") if m]
    tutorials = [m for m in args.tutorial.split(",") if m]
    for name in models:
        if name not in OURS:
            parser.error(f"unknown model {name}; choose from {', '.join(OURS)}")
    for name in tutorials:
        if name not in TUTORIAL_PIPELINE:
            parser.error(f"the tutorial's pipeline runs {', '.join(TUTORIAL_PIPELINE)}, not {name}")

    home = use_temp_homes()
    os.environ["PAWLAB_HOME"] = str(home / "pawlab")  # fresh: cold feature cache
    work = Path(tempfile.mkdtemp(prefix="work-", dir=home))
    args.data = cats_and_dogs()
    tutorial_data = subset_folder(args.data, args.subset, work / "subset") if args.subset else args.data
    meta = {
        "started_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command_line,
        "cpu_count": os.cpu_count(),
        "load_start": load_now(),
        "image_size": args.image_size or 0,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "head_epochs": args.head_epochs
        or "each recipe's ("
        + ", ".join(f"{arch} {recipe_for(arch).epochs}" for arch in OURS if FAMILY[arch] == "transfer")
        + ")",
        "fine_tune_epochs": (
            args.fine_tune_epochs
            if args.fine_tune_epochs is not None
            else recipe_for("mobilenet_v2_finetune").fine_tune_epochs
        ),
        "subset": args.subset,
        "tutorial_validation": args.tutorial_validation,
        "data": str(args.data),
        "pawlab_home": os.environ["PAWLAB_HOME"],
    }
    print(
        f"os.cpu_count(): {meta['cpu_count']}; load average (1/5/15 min) at start: {meta['load_start']}",
        file=sys.stderr,
        flush=True,
    )
    rows = []
    out_dir = Path(args.out)
    for pipeline, model in RUN_ORDER:
        if (pipeline == "ours" and model not in models) or (pipeline == "tutorial" and model not in tutorials):
            continue
        if args.stop_by and time.time() > args.stop_by:
            print(f"--stop-by reached: skipping {pipeline} {model}", file=sys.stderr, flush=True)
            meta.setdefault("skipped", []).append(f"{pipeline} {model}")
            continue
        print(f"== {pipeline} {model} (load average {load_now()})", file=sys.stderr, flush=True)
        row = (
            train_ours(model, args, Path(os.environ["PAWLAB_HOME"]) / "runs", work)
            if pipeline == "ours"
            else train_tutorial(model, args, tutorial_data, work)
        )
        rows.append(row)
        write_results(rows, meta, out_dir)
    meta["load_end"] = load_now()
    meta["finished_utc"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(write_results(rows, meta, out_dir))
    print(f"load average (1/5/15 min) at end: {meta['load_end']}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
