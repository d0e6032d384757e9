"""Export sizes and checks: every format of ``python -m core export`` on one transfer run.

    python benchmarks/export_sizes.py [--train 100] [--validation 100] [--epochs 1]

Trains the frozen MobileNetV2 recipe (``mobilenet_v2``, 160 px) on a small
symlinked copy of ../shared/data/cats_and_dogs: the first ``--train`` photos
of each class of train/ and the first ``--validation`` of validation/ (which
PawLab splits into validation and test). Then exports it in every format with
the command line, in this process (core.cli.main), each into a new folder,
checked as the Classify page checks it.

Prints one row per format: the model's size (a SavedModel's whole folder),
the zip the Classify page offers, the check and the seconds the export and
its check took; then the int8 model's test accuracy next to the float
model's and their share of same labels; the load averages and the command.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

from _common import cats_and_dogs, table, use_temp_homes

FORMATS = ("keras", "savedmodel", "tflite", "tflite-int8", "onnx")
COLUMNS = ["format", "model", "zip", "check", "seconds"]


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def small_copy(root: Path, train: int, validation: int) -> Path:
    """Symlinks to the first photos of each class folder, by name."""
    source = cats_and_dogs()
    for split, count in (("train", train), ("validation", validation)):
        for folder in sorted((source / split).iterdir()):
            target = root / split / folder.name
            target.mkdir(parents=True)
            for photo in sorted(folder.iterdir())[:count]:
                (target / photo.name).symlink_to(photo)
    return root


def train(data: Path, epochs: int) -> Path:
    from core.runs.recipes import make_config
    from core.runs.store import RunState, create_run, read_status
    from core.runs.worker import execute_run

    run_dir = create_run(make_config(data, "mobilenet_v2", epochs, image_size=160), state=RunState.RUNNING)
    if execute_run(run_dir) != RunState.COMPLETED:
        sys.exit(f"run {run_dir}: {read_status(run_dir).error}")
    return run_dir


def export(run_dir: Path, export_format: str, out: Path) -> dict:
    """``python -m core export`` in this process: its exit status, JSON summary and seconds."""
    from core import cli

    printed = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(printed):
        status = cli.main(["export", str(run_dir), "--format", export_format, "--out", str(out)])
    seconds = time.perf_counter() - start
    summary = json.loads(printed.getvalue())
    if status != 0:
        sys.exit(f"{export_format}: {summary['error']}")
    return summary | {"seconds": seconds}


def row(run_dir: Path, export_format: str, summary: dict) -> dict:
    from core.serving.export_commands import ZIPPED_FORMATS

    check = summary["check"]
    zipped = ZIPPED_FORMATS.get(export_format)
    model_files = [f for f in summary["files"] if f["file"].startswith(("model", "saved_model"))]
    if check["max_accuracy_drop"] is None:
        result = f"same label {check['same_label']}/{check['photos']}, max diff {check['max_difference']:.1e}"
    else:
        result = (
            f"accuracy {check['accuracy']:.1%} vs {check['keras_accuracy']:.1%}, same label {check['agreement']:.1%}"
        )
    return {
        "format": export_format,
        "model": f"{sum(f['bytes'] for f in model_files) / 1e6:.2f} MB",
        "zip": f"{(run_dir / 'exports' / zipped.archive).stat().st_size / 1e6:.2f} MB" if zipped else "-",
        "check": result,
        "seconds": round(summary["seconds"], 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=100, help="photos per class to train on (default: %(default)s)")
    parser.add_argument(
        "--validation", type=int, default=100, help="photos per class of validation/ (default: %(default)s)"
    )
    parser.add_argument("--epochs", type=int, default=1, help="default: %(default)s")
    args = parser.parse_args()
    command_line = shlex.join(["python", "benchmarks/export_sizes.py", *sys.argv[1:]])

    use_temp_homes()
    work = Path(tempfile.mkdtemp(prefix="pawlab-export-sizes-"))
    load_before = load()
    run_dir = train(small_copy(work / "data", args.train, args.validation), args.epochs)
    summaries = {fmt: export(run_dir, fmt, work / "out" / fmt) for fmt in FORMATS}
    load_after = load()

    print(table([row(run_dir, fmt, summary) for fmt, summary in summaries.items()], COLUMNS))
    int8 = summaries["tflite-int8"]["check"]
    drop = (int8["keras_accuracy"] - int8["accuracy"]) * 100
    print(
        f"int8 on {int8['photos']} test photos: accuracy {int8['accuracy']:.1%}, float model "
        f"{int8['keras_accuracy']:.1%} (a drop of {drop:+.1f} points; at most {int8['max_accuracy_drop'] * 100:g} "
        f"allowed), same label {int8['agreement']:.1%}, largest probability difference {int8['max_difference']:.3f}"
    )
    print(f"Load average (1/5/15 min, os.getloadavg): {load_before} before, {load_after} after; {os.cpu_count()} CPUs.")
    print(f"Command: {command_line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
