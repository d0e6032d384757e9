"""Imbalanced classes: training with and without the loss weighted by inverse class frequency.

    python benchmarks/bench_imbalance.py [--arch mobilenet_v2] [--majority 1000] [--minority 100]
                                         [--test-fraction 0.5] [--epochs N]

Makes an imbalanced copy of ../shared/data/cats_and_dogs in a temp folder, by
symlinks: ``--majority`` cats and ``--minority`` dogs in train/ (the first of
each folder, by name), and all of validation/ (500 + 500), which PawLab splits
into validation and test (``--test-fraction`` of it, per class). Then trains the
same run twice, one after the other in this process, exactly as
``python -m core train`` does (core.runs.worker.execute_run, same seed, same
split): once with ``balance_classes`` on (the default: the loss weighted by
inverse class frequency, core.runs.recipes.ClassBalance) and once with
``--no-balance-classes``. The default architecture is the tutorial's frozen
ImageNet MobileNetV2, the cheapest transfer recipe (a head on cached 160 px
features; the second run reuses the first one's features).

Prints, per run, test accuracy, balanced accuracy and each class's recall
(the minority class's is the one to watch), the seconds each run took, the
load averages before and after (os.getloadavg: the machine is shared) and the
command line.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

from _common import cats_and_dogs, table, use_temp_homes

MAJORITY, MINORITY = "cats", "dogs"


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def link_photos(source: Path, target: Path, count: int | None = None) -> int:
    """Symlinks to the first ``count`` photos of ``source`` (all when None), by name."""
    target.mkdir(parents=True)
    photos = sorted(path for path in source.iterdir() if path.is_file())[:count]
    for photo in photos:
        (target / photo.name).symlink_to(photo)
    return len(photos)


def imbalanced_copy(root: Path, majority: int, minority: int) -> Path:
    source = cats_and_dogs()
    for name, count in ((MAJORITY, majority), (MINORITY, minority)):
        link_photos(source / "train" / name, root / "train" / name, count)
        link_photos(source / "validation" / name, root / "validation" / name)
    return root


def train(data: Path, args, *, balance_classes: bool) -> dict:
    from core.runs.recipes import make_config
    from core.runs.store import RunState, create_run, read_evaluation, read_status
    from core.runs.worker import execute_run

    config = make_config(
        data, args.arch, args.epochs, test_fraction=args.test_fraction, balance_classes=balance_classes
    )
    run_dir = create_run(config, state=RunState.RUNNING)
    start = time.perf_counter()
    state = execute_run(run_dir)
    seconds = time.perf_counter() - start
    if state != RunState.COMPLETED:
        sys.exit(f"run {run_dir} {state}: {read_status(run_dir).error}")
    evaluation = read_evaluation(run_dir)
    assert evaluation is not None and evaluation.balanced_accuracy is not None
    return {
        "balance classes": "on" if balance_classes else "off",
        "test accuracy": f"{evaluation.accuracy:.1%}",
        "balanced accuracy": f"{evaluation.balanced_accuracy:.1%}",
        f"{MINORITY} recall (minority)": f"{evaluation.per_class[MINORITY].recall:.1%}",
        f"{MAJORITY} recall": f"{evaluation.per_class[MAJORITY].recall:.1%}",
        "test photos": evaluation.count,
        "seconds": round(seconds, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="mobilenet_v2", help="architecture (default: %(default)s)")
    parser.add_argument("--majority", type=int, default=1000, help=f"{MAJORITY} to train on (default: %(default)s)")
    parser.add_argument("--minority", type=int, default=100, help=f"{MINORITY} to train on (default: %(default)s)")
    parser.add_argument(
        "--test-fraction", type=float, default=0.5, help="of validation/, per class (default: %(default)s)"
    )
    parser.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    args = parser.parse_args()
    command_line = shlex.join(["python", "benchmarks/bench_imbalance.py", *sys.argv[1:]])

    use_temp_homes()
    from core.runs.recipes import ClassBalance

    data = imbalanced_copy(Path(tempfile.mkdtemp(prefix="pawlab-imbalance-")) / "data", args.majority, args.minority)
    print(ClassBalance({MAJORITY: args.majority, MINORITY: args.minority}).describe(), flush=True)
    load_before = load()
    rows = [train(data, args, balance_classes=balance) for balance in (True, False)]
    load_after = load()

    print(table(rows, list(rows[0])))
    print(f"Load average (1/5/15 min, os.getloadavg): {load_before} before, {load_after} after; {os.cpu_count()} CPUs.")
    print(f"Command: {command_line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
