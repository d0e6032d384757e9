"""Training: PawLab's engine on the tutorial's models and ours, and the tutorial's own pipeline.

    python benchmarks/bench_training.py [--epochs 20] [--head-epochs N] [--fine-tune-epochs N]
        [--models cnn,cnn_aug,...] [--tutorial cnn,cnn_aug_preproc] [--subset N] [--quick]
        [--stop-by 16:45]

Every model trains in its own process, one after the other, on the 160 px
photos of ../shared/data/cats_and_dogs, batch 32:

- PawLab: ``python -m core train`` (the same engine the Train page runs).
  Results are read back from the run folder: metrics.jsonl (per-epoch
  val_accuracy, seconds, images/second, unix time), evaluation.json (accuracy
  on the leak-free test split) and config.json (mode: cached_features or
  end_to_end). Frozen-base models first extract ImageNet features (phase
  "features"); PAWLAB_HOME is a fresh temp folder, so that cache is cold and
  its time counts.
- The tutorial's pipeline (``--tutorial``): ``image_dataset_from_directory``
  + ``prefetch(AUTOTUNE)`` on the train/ and validation/ folders, the
  tutorial's model with its augmentation layers inside, ``model.fit`` with a
  callback timing each epoch. It validates on all 1000 validation/ photos
  (PawLab holds 200 of them out as its test split and validates on 800).

Peak memory is each child's own ru_maxrss (``os.wait4``; RUSAGE_CHILDREN
would be the maximum over all children so far). Time to accuracy is wall
seconds from launching the process (Python and TensorFlow start-up, data
scan, feature extraction included) to the end of the first epoch whose
validation accuracy reaches the tutorial's best for the family: 0.73 from
scratch, 0.97 transfer. Results are written after every model to
benchmarks/results/training.{md,json}, so an interrupted run keeps what it has.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from _common import REPO, cats_and_dogs, table, use_temp_homes

OURS = ("cnn", "cnn_aug", "cnn_aug_preproc", "mobilenet_v2", "cnn_plus", "mobilenet_v2_finetune")
TUTORIAL_PIPELINE = ("cnn", "cnn_aug", "cnn_aug_preproc")
# Run order, most telling first so a --stop-by cut loses the least: the cheap
# frozen-base transfer run, our scratch recipe, the tutorial's cnn in both
# pipelines back to back (similar machine load), then fine-tuning (its epochs
# push every image through MobileNetV2, the dearest epochs here), the rest.
RUN_ORDER = (
    ("ours", "mobilenet_v2"), ("ours", "cnn_plus"),
    ("ours", "cnn"), ("tutorial", "cnn"),
    ("ours", "mobilenet_v2_finetune"),
    ("ours", "cnn_aug_preproc"), ("tutorial", "cnn_aug_preproc"),
    ("ours", "cnn_aug"), ("tutorial", "cnn_aug"),
)
# The tutorial's best validation accuracy per family: what "as good" means.
TARGETS = {"scratch": 0.73, "transfer": 0.97}
FAMILY = {"cnn": "scratch", "cnn_aug": "scratch", "cnn_aug_preproc": "scratch", "cnn_plus": "scratch",
          "mobilenet_v2": "transfer", "mobilenet_v2_finetune": "transfer"}
# Epochs of the frozen-base phase when --head-epochs is not given: the tutorial's 20
# for its mobilenet_v2, our recipe's 10 for mobilenet_v2_finetune (core.runs.tutorial.NEXT_STEPS).
DEFAULT_HEAD_EPOCHS = {"mobilenet_v2": 20, "mobilenet_v2_finetune": 10}
CNN_PLUS_PATIENCE = 8  # our recipe's early stopping


def load() -> float:
    return round(os.getloadavg()[0], 2)


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


# --- the tutorial's own pipeline, run in a child process -------------------------

def tutorial_model(arch: str, image_size: int):
    """The tutorial's Sequential models: augmentation and scaling inside the model."""
    import keras
    from keras import layers

    augmentation = {
        "cnn": [],
        "cnn_aug": [layers.RandomFlip("vertical"), layers.RandomRotation(1.0)],
        "cnn_aug_preproc": [layers.RandomFlip("horizontal_and_vertical"), layers.RandomRotation(0.2)],
    }[arch]
    scaling = (layers.Rescaling(1 / 127.5, offset=-1) if arch == "cnn_aug_preproc"  # preprocess_input
               else layers.Rescaling(1 / 255))
    return keras.Sequential([
        keras.Input(shape=(image_size, image_size, 3)), *augmentation, scaling,
        layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(), layers.Dropout(0.2),
        layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(), layers.Dropout(0.2),
        layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(),
        layers.Flatten(), layers.Dense(64, activation="relu"), layers.Dense(2),
    ])


def tutorial_worker(args) -> int:
    """Train one tutorial model the tutorial's way; the report is rewritten after every epoch."""
    import keras
    import tensorflow as tf

    report_path = Path(args.report)
    size = (args.image_size, args.image_size)
    train = keras.utils.image_dataset_from_directory(
        Path(args.data) / "train", shuffle=True, batch_size=args.batch_size, image_size=size
    ).prefetch(tf.data.AUTOTUNE)
    validation = keras.utils.image_dataset_from_directory(
        Path(args.data) / "validation", shuffle=True, batch_size=args.batch_size, image_size=size
    ).prefetch(tf.data.AUTOTUNE)
    model = tutorial_model(args.tutorial_worker, args.image_size)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    epochs = []

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start, self.train_end = time.perf_counter(), None

        def on_test_begin(self, logs=None):
            self.train_end = self.train_end or time.perf_counter()  # training part of the epoch ends

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            now = time.perf_counter()
            epochs.append({"epoch": epoch + 1, "seconds": round(now - self.start, 3),
                           "train_seconds": round((self.train_end or now) - self.start, 3),
                           "time": time.time(), "accuracy": float(logs.get("accuracy", 0)),
                           "val_accuracy": float(logs.get("val_accuracy", 0))})
            report_path.write_text(json.dumps({"epochs": epochs}))
            print(f"tutorial {args.tutorial_worker} epoch {epoch + 1}/{args.epochs}: "
                  f"val_accuracy {epochs[-1]['val_accuracy']:.4f} ({epochs[-1]['seconds']:.1f} s)",
                  file=sys.stderr, flush=True)

    model.fit(train, validation_data=validation, epochs=args.epochs, callbacks=[EpochTimer()], verbose=0)
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

def run_child(command: list[str], stop_by: float | None, stdout_path: Path) -> dict:
    """Run ``command``; its stderr goes to ours (the log). Returns launch time, wall, peak memory, exit code.

    Past ``stop_by`` (unix time) the child gets SIGTERM: PawLab's training stops
    after the current batch and keeps its finished epochs.
    """
    launched = time.time()
    with open(stdout_path, "w") as stdout:
        child = subprocess.Popen(command, cwd=REPO, stdout=stdout, stderr=None)
    stopped = False
    try:
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            if stop_by and time.time() > stop_by and not stopped:
                print(f"--stop-by reached: stopping {' '.join(command[-6:])}", file=sys.stderr, flush=True)
                child.send_signal(signal.SIGTERM)
                stopped = True
            time.sleep(0.5)
    except BaseException:
        child.kill()  # never leave a training process behind us
        raise
    child.returncode = os.waitstatus_to_exitcode(status)
    return {"launched": launched, "wall_s": time.time() - launched,
            "peak_mb": usage.ru_maxrss / 1024,  # Linux reports KiB
            "exit_code": child.returncode, "stopped_by_deadline": stopped}


def time_to(epochs: list[dict], target: float, launched: float):
    """Seconds from launch to the end of the first epoch reaching ``target``; None if never."""
    for record in epochs:
        if (record.get("val_accuracy") or 0) >= target:
            return record["time"] - launched
    return None


def train_ours(arch: str, args, runs_dir: Path, work: Path) -> dict:
    from core.runs.store import read_config, read_json, read_metrics, read_status

    family = FAMILY[arch]
    epochs = args.epochs if family == "scratch" else (args.head_epochs or DEFAULT_HEAD_EPOCHS[arch])
    command = [sys.executable, "-m", "core", "train", "--data", str(args.data), "--arch", arch,
               "--epochs", str(epochs), "--image-size", str(args.image_size),
               "--batch-size", str(args.batch_size), "--runs-dir", str(runs_dir)]
    if arch == "mobilenet_v2_finetune":
        command += ["--fine-tune-epochs", str(args.fine_tune_epochs)]
    if arch == "cnn_plus":
        command += ["--patience", str(CNN_PLUS_PATIENCE)]
    if args.subset:
        command += ["--subset", str(args.subset)]
    load_before = load()
    child = run_child(command, args.stop_by, work / f"{arch}.stdout")
    lines = (work / f"{arch}.stdout").read_text().split()
    run_dir = Path(lines[-1]) if lines else None
    row = {"pipeline": "PawLab", "model": arch, "family": family, **child,
           "load_before": load_before, "load_after": load()}
    if run_dir is None or not run_dir.is_dir():
        return {**row, "state": "no run folder"}

    config, status, metrics = read_config(run_dir), read_status(run_dir), read_metrics(run_dir)
    evaluation = read_json(run_dir / "evaluation.json") if (run_dir / "evaluation.json").exists() else {}
    head = [m for m in metrics if m["phase"] == "train"]
    tuned = [m for m in metrics if m["phase"] == "fine_tune"]
    first = metrics[0] if metrics else None
    return {
        **row, "state": status["state"], "mode": config.mode, "run": run_dir.name,
        "epochs_planned": f"{epochs}+{args.fine_tune_epochs}" if arch == "mobilenet_v2_finetune" else str(epochs),
        "epochs_done": len(metrics),
        "train_images": sum((config.split_counts.get("train") or {}).values()),
        "val_images": sum((config.split_counts.get("validation") or {}).values()),
        "best_val_accuracy": max((m["val_accuracy"] for m in metrics), default=None),
        "test_accuracy": evaluation.get("accuracy"),
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


def train_tutorial(arch: str, args, data: Path, work: Path) -> dict:
    report = work / f"tutorial-{arch}.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--tutorial-worker", arch,
               "--data", str(data), "--epochs", str(args.epochs), "--image-size", str(args.image_size),
               "--batch-size", str(args.batch_size), "--report", str(report)]
    load_before = load()
    child = run_child(command, args.stop_by, work / f"tutorial-{arch}.stdout")
    epochs = json.loads(report.read_text())["epochs"] if report.exists() else []
    return tutorial_row(arch, args.epochs, epochs, child, load_before, load())


def tutorial_row(arch: str, epochs_planned: int, epochs: list[dict], child: dict,
                 load_before, load_after, pipeline: str = "tutorial") -> dict:
    """A results row from a tutorial worker's per-epoch report and run_child's numbers."""
    seconds = [e["seconds"] for e in epochs]
    first = epochs[0] if epochs else None
    return {
        "pipeline": pipeline, "model": arch, "family": "scratch", **child,
        "load_before": load_before, "load_after": load_after,
        "state": "completed" if child["exit_code"] == 0 else f"exit {child['exit_code']}",
        "mode": "end_to_end (augmentation in model)", "epochs_planned": str(epochs_planned),
        "epochs_done": len(epochs), "val_images": 1000,
        "best_val_accuracy": max((e["val_accuracy"] for e in epochs), default=None),
        "test_accuracy": None,  # its validation/ folder holds our test photos: no clean test split
        "median_epoch_s": median(seconds), "max_epoch_s": max(seconds, default=None),
        "median_images_per_s": None,
        "to_first_epoch_s": (first["time"] - first["seconds"] - child["launched"]) if first else None,
        "time_to_target_s": time_to(epochs, TARGETS["scratch"], child["launched"]),
        "target": TARGETS["scratch"], "epochs": epochs,
    }


# --- report ------------------------------------------------------------------------

def fmt(value, digits=1):
    if value is None:
        return "—"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def render(rows: list[dict], meta: dict) -> str:
    order = [(p, m) for p, m in RUN_ORDER]
    rows = sorted(rows, key=lambda r: (r["pipeline"] != "PawLab",
                                       OURS.index(r["model"]) if r["pipeline"] == "PawLab" else
                                       order.index(("tutorial", r["model"])), r["pipeline"]))
    tutorial_rows = [r for r in rows if r["pipeline"] != "PawLab"]
    out = [
        "# Training benchmark",
        "",
        f"Started {meta['started_utc']}, finished {meta.get('finished_utc', '(still running)')}. "
        f"{meta['machine']}. Load average (1 min) at start {meta['load_start']}"
        + (f", at end {meta['load_end']}" if "load_end" in meta else "")
        + " (other agents were running tests on the same 2 cores: absolute times are pessimistic, "
        "and pipelines were run one after the other, not in isolation).",
        "",
        f"Settings: {meta['image_size']} px, batch {meta['batch_size']}; from-scratch models "
        f"**{meta['epochs']} epochs** (the tutorial trains 20)"
        + (" — cut to fit the time available" if meta["epochs"] < 20 else "")
        + f"; frozen-base heads {meta['head_epochs']}; fine-tuning {meta['fine_tune_epochs']} epochs"
        + (f"; **training subset {meta['subset']} photos per class**" if meta["subset"] else "")
        + ". PAWLAB_HOME was a fresh temp folder, so feature caches were cold: "
        "the transfer models' times include extracting MobileNetV2 features.",
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
        table_rows.append({
            "pipeline": r["pipeline"], "model": r["model"], "mode": r.get("mode", "—"),
            "state": r.get("state", "—"),
            "epochs": f"{r.get('epochs_done', 0)}/{r.get('epochs_planned', '?')}",
            "best val acc": fmt(r.get("best_val_accuracy"), 3),
            "test acc": fmt(r.get("test_accuracy"), 3),
            "epoch s (median)": fmt(r.get("median_epoch_s")),
            "epoch s (max)": fmt(r.get("max_epoch_s")),
            "max/median": fmt(r["max_epoch_s"] / r["median_epoch_s"], 2)
            if r.get("max_epoch_s") and r.get("median_epoch_s") else "—",
            "img/s": fmt(r.get("median_images_per_s"), 0),
            "fine-tune epoch s": fmt(r.get("median_fine_tune_epoch_s")),
            "launch→epoch 1 s": fmt(r.get("to_first_epoch_s")),
            "wall s": fmt(r.get("wall_s"), 0),
            "peak MB": fmt(r.get("peak_mb"), 0),
            "load before/after": f"{fmt(r.get('load_before'))}/{fmt(r.get('load_after'))}",
        })
    columns = ["pipeline", "model", "mode", "state", "epochs", "best val acc", "test acc",
               "epoch s (median)", "epoch s (max)", "max/median", "img/s", "fine-tune epoch s",
               "launch→epoch 1 s", "wall s", "peak MB", "load before/after"]
    out += [table(table_rows, columns), ""]
    out += [
        "PawLab validates on 800 photos and tests on 200 held-out photos of validation/; "
        "the tutorial's pipeline validates on all 1000 (its test set overlaps validation, "
        "so it has no clean test accuracy). img/s: training images per second of the "
        "training part of an epoch (PawLab's metrics.jsonl). Epoch seconds include validation. "
        "For cached_features rows, epoch seconds are the head's epochs on cached features; "
        "launch→epoch 1 includes Python/TensorFlow start-up and feature extraction.",
        "",
    ]
    by_key = {(r["pipeline"], r["model"]): r for r in rows}
    for model in TUTORIAL_PIPELINE:
        ours = by_key.get(("PawLab", model))
        theirs = [r for r in tutorial_rows if r["model"] == model and r["epochs"]]
        if not (ours and theirs):
            continue
        ours_epochs = [e for e in ours["epochs"] if e.get("phase", "train") == "train"]
        count = max(len(ours_epochs), *(len(r["epochs"]) for r in theirs))
        epoch_rows = []
        columns = ["epoch", "PawLab s"] + [f"{r['pipeline']} s" for r in theirs] + [
            f"{r['pipeline']} / PawLab" for r in theirs] + ["PawLab val acc"] + [
            f"{r['pipeline']} val acc" for r in theirs]
        for index in range(count):
            mine = ours_epochs[index] if index < len(ours_epochs) else {}
            line = {"epoch": index + 1, "PawLab s": fmt(mine.get("seconds")),
                    "PawLab val acc": fmt(mine.get("val_accuracy"), 3)}
            for r in theirs:
                tut = r["epochs"][index] if index < len(r["epochs"]) else {}
                line[f"{r['pipeline']} s"] = fmt(tut.get("seconds"))
                line[f"{r['pipeline']} / PawLab"] = (fmt(tut["seconds"] / mine["seconds"], 2)
                                                     if mine and tut else "—")
                line[f"{r['pipeline']} val acc"] = fmt(tut.get("val_accuracy"), 3)
            epoch_rows.append(line)
        out += [f"## Side by side, epoch by epoch: {model}", "",
                table(epoch_rows, columns), "",
                "Same model and settings; PawLab decodes each photo once (epoch 1) and reads "
                "decoded images from its cache afterwards, the tutorial decodes every photo every "
                "epoch, and validates on 1000 photos to our 800. Rows ran one after the other (a \"concurrent\" row: "
                "at the same time as PawLab's, see the notes) on a machine shared with other agents' tests.", ""]
    out += ["## Time to the tutorial's accuracy", ""]

    def reached(row):
        if row is None:
            return "not run"
        seconds = row.get("time_to_target_s")
        return f"{seconds:.0f} s" if seconds is not None else f"never (in {row.get('epochs_done', 0)} epochs)"

    target_rows = []
    tutorial_scratch = tutorial_rows
    tutorial_times = [r["time_to_target_s"] for r in tutorial_scratch
                      if r and r.get("time_to_target_s") is not None]
    ours_order = ("cnn", "cnn_aug", "cnn_aug_preproc", "cnn_plus", "mobilenet_v2", "mobilenet_v2_finetune")
    for row in tutorial_rows + sorted((r for r in rows if r["pipeline"] == "PawLab"),
                                      key=lambda r: ours_order.index(r["model"])):
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
            elif any(tutorial_scratch):
                verdict = "yes: the tutorial's pipeline never reached it in its epochs"
            else:
                verdict = "unknown: the tutorial's pipeline was not run"
        elif family == "transfer":
            goal = "< 60 s on 2 cores"
            verdict = "no (never reached)" if seconds is None else ("yes" if seconds < 60 else "no")
        target_rows.append({"pipeline": pipeline, "model": model, "family": family,
                            "target val acc": row["target"], "launch → target": reached(row),
                            "best val acc": fmt(row.get("best_val_accuracy"), 3),
                            "goal": goal, "met": verdict})
    out += [table(target_rows, ["pipeline", "model", "family", "target val acc", "launch → target",
                                "best val acc", "goal", "met"]), ""]
    out += ["Measured from launching the training process, so start-up (about as long for both "
            "pipelines) and, for transfer models, feature extraction with a cold cache are included. "
            "Validation sets differ (800 vs 1000 photos), so accuracies are close but not identical measures.",
            ""]
    return "\n".join(out)


def write_results(rows, meta, out_dir: Path) -> str:
    out_dir.mkdir(parents=True, exist_ok=True)
    text = render(rows, meta)
    (out_dir / "training.md").write_text(text)
    (out_dir / "training.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20, help="from-scratch models and the tutorial's pipeline")
    parser.add_argument("--head-epochs", type=int, default=0,
                        help="frozen-base phase of transfer models; 0 = tutorial's 20 / recipe's 10")
    parser.add_argument("--fine-tune-epochs", type=int, default=10)
    parser.add_argument("--models", default=",".join(OURS), help="PawLab models, comma separated")
    parser.add_argument("--tutorial", default="cnn,cnn_aug_preproc",
                        help="models to train with the tutorial's own pipeline too ('' for none)")
    parser.add_argument("--subset", type=int, default=0, help="training photos per class; 0 = all")
    parser.add_argument("--quick", action="store_true", help="2 epochs everywhere, 1 fine-tuning epoch")
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--stop-by", default=None,
                        help="UTC HH:MM: start nothing after it, stop a running model at it")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--render", action="store_true",
                        help="only rewrite training.md from training.json in --out")
    # Internal: the child process that trains one tutorial model.
    parser.add_argument("--tutorial-worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--data", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--report", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tutorial_worker:
        return tutorial_worker(args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stops the running child too
    if args.render:
        saved = json.loads((Path(args.out) / "training.json").read_text())
        print(write_results(saved["rows"], saved["meta"], Path(args.out)))
        return 0

    if args.quick:
        args.epochs, args.head_epochs, args.fine_tune_epochs = 2, args.head_epochs or 2, 1
    if args.stop_by:
        hours, minutes = map(int, args.stop_by.split(":"))
        now = datetime.now(timezone.utc)
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
        "started_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} CPU cores, no GPU",
        "load_start": [round(x, 2) for x in os.getloadavg()],
        "image_size": args.image_size, "batch_size": args.batch_size, "epochs": args.epochs,
        "head_epochs": args.head_epochs or "tutorial's 20 (mobilenet_v2) / recipe's 10 (finetune)",
        "fine_tune_epochs": args.fine_tune_epochs, "subset": args.subset,
        "data": str(args.data), "pawlab_home": os.environ["PAWLAB_HOME"],
    }
    print(f"load average at start: {meta['load_start']}", file=sys.stderr, flush=True)
    rows = []
    out_dir = Path(args.out)
    for pipeline, model in RUN_ORDER:
        if (pipeline == "ours" and model not in models) or (pipeline == "tutorial" and model not in tutorials):
            continue
        if args.stop_by and time.time() > args.stop_by:
            print(f"--stop-by reached: skipping {pipeline} {model}", file=sys.stderr, flush=True)
            meta.setdefault("skipped", []).append(f"{pipeline} {model}")
            continue
        print(f"== {pipeline} {model} (load {load()})", file=sys.stderr, flush=True)
        row = (train_ours(model, args, Path(os.environ["PAWLAB_HOME"]) / "runs", work) if pipeline == "ours"
               else train_tutorial(model, args, tutorial_data, work))
        rows.append(row)
        write_results(rows, meta, out_dir)
    meta["load_end"] = [round(x, 2) for x in os.getloadavg()]
    meta["finished_utc"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(write_results(rows, meta, out_dir))
    print(f"load average at end: {meta['load_end']}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
