"""Command line: everything the app does, without a browser.

    python -m core data --root DIR
    python -m core fetch
    python -m core train --data DIR --arch NAME --epochs N [...]
    python -m core evaluate RUN_DIR
    python -m core runs [--runs-dir D]
    python -m core predict RUN_DIR FILE...
    python -m core worker RUN_DIR      (used by the job manager)
"""

from __future__ import annotations

import argparse
import json
import sys


def cmd_data(args) -> int:
    from core.data.dataset import DatasetError, scan_dataset
    from core.data.splits import make_splits

    try:
        info = scan_dataset(args.root)
    except DatasetError as error:
        print(json.dumps({"error": str(error)}))
        return 2
    summary = info.summary()
    summary["splits"] = make_splits(info, seed=args.seed).counts()
    print(json.dumps(summary, indent=2))
    return 0


def cmd_fetch(args) -> int:
    from core.data.acquire import fetch_official_dataset

    def progress(stage, done, total):
        if total:
            print(f"\r{stage}: {done / total:6.1%}", end="", file=sys.stderr, flush=True)

    root = fetch_official_dataset(progress=progress)
    print(file=sys.stderr)
    print(root)
    return 0


def cmd_runs(args) -> int:
    from core.runs.store import list_runs

    summaries = list_runs(getattr(args, "runs_dir", None))
    print(json.dumps([summary.to_dict() for summary in summaries], indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core", description="PawLab engine")
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="summarise a dataset folder as JSON")
    data.add_argument("--root", required=True)
    data.add_argument("--seed", type=int, default=1337)
    data.set_defaults(func=cmd_data)

    fetch = commands.add_parser("fetch", help="download the official cats and dogs dataset")
    fetch.set_defaults(func=cmd_fetch)

    train = commands.add_parser("train", help="train a model; prints the run folder last")
    train.add_argument("--data", required=True)
    train.add_argument("--arch", required=True)
    train.add_argument("--epochs", type=int, required=True)
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--image-size", type=int, default=160)
    train.add_argument("--lr", type=float, default=None, help="default: the architecture's")
    train.add_argument("--fine-tune-epochs", type=int, default=None,
                       help="default: as many as --epochs for architectures that fine-tune, else 0")
    train.add_argument("--seed", type=int, default=1337)
    train.add_argument("--augment", default=None, help="augmentation config name; default: the architecture's")
    train.add_argument("--patience", type=int, default=0, help="early stopping patience; 0 = off")
    train.add_argument("--subset", type=int, default=0, help="at most this many training images per class; 0 = all")
    train.add_argument("--runs-dir", default=None)
    train.set_defaults(func=lambda args: __import__("core.runs.training", fromlist=["cli_train"]).cli_train(args))

    evaluate = commands.add_parser("evaluate", help="print a run's test-split evaluation as JSON")
    evaluate.add_argument("run_dir")
    evaluate.set_defaults(func=lambda args: __import__("core.runs.evaluation", fromlist=["cli_evaluate"]).cli_evaluate(args))

    runs = commands.add_parser("runs", help="list runs as JSON")
    runs.add_argument("--runs-dir", default=None)
    runs.set_defaults(func=cmd_runs)

    predict = commands.add_parser("predict", help="classify image files with a run's model")
    predict.add_argument("run_dir")
    predict.add_argument("files", nargs="+")
    predict.set_defaults(func=lambda args: __import__("core.serving.inference", fromlist=["cli_predict"]).cli_predict(args))

    worker = commands.add_parser("worker", help=argparse.SUPPRESS)
    worker.add_argument("run_dir")
    worker.set_defaults(func=lambda args: __import__("core.runs.jobs", fromlist=["cli_worker"]).cli_worker(args))

    args = parser.parse_args(argv)
    return args.func(args)

