"""Command line: everything the app does, without a browser.

    python -m core fetch
    python -m core data --data DIR
    python -m core dataset new NAME --classes a,b  |  dataset add NAME --class a PHOTO...
    python -m core import SOURCE --name NAME [--labels CSV]
    python -m core train --data DIR --arch NAME [--epochs N ...]
    python -m core evaluate RUN_DIR
    python -m core runs [--runs-dir DIR]
    python -m core predict RUN_DIR FILE...
    python -m core doctor --data DIR [--save]
    python -m core serve RUN_DIR [--host 127.0.0.1] [--port 8000]
    python -m core sweep --data DIR --arch NAME --trials N [--grid KNOB=V1,V2 ...]
    python -m core worker RUN_DIR      (the job manager's; not listed in --help)

Defaults come from where they live: the architecture's recipe
(core.runs.recipes) for epochs, learning rate, augmentation and the rest,
core.defaults for image size, batch size and seed. A bad value is one line
on stderr and exit status 2. Modules that import TensorFlow are imported by
the commands that need them, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path

from core import defaults
from core.defaults import EXIT_FAILED, EXIT_USAGE, SERVE_HOST, SERVE_PORT
from core.netns import LOOPBACK_ONLY_FLAG
from core.runs.recipes import IMBALANCE_RATIO, RECIPES, recipe_for

PROG = "python -m core"
PUBLIC_COMMANDS = (
    "fetch",
    "data",
    "dataset",
    "import",
    "train",
    "evaluate",
    "runs",
    "predict",
    "doctor",
    "serve",
    "sweep",
    "export",
    "label",
)


class UsageError(Exception):
    """A bad command line; the message is one line for a person."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is a one-line message, not usage text and an exit."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: error: {message} (see --help)")


# --- the commands -------------------------------------------------------------


def cmd_fetch(args) -> int:
    from core.data.acquire import fetch_official_dataset

    def progress(stage, done, total):
        if total:
            print(f"\r{stage}: {done / total:6.1%}", end="", file=sys.stderr, flush=True)

    root = fetch_official_dataset(progress=progress)
    print(file=sys.stderr)
    print(root)
    return 0


def cmd_data(args) -> int:
    from core.data.dataset import DatasetError
    from core.data.splits import split_dataset

    try:
        info, splits = split_dataset(args.data, seed=args.seed)
    except DatasetError as error:
        print(json.dumps({"error": str(error)}))
        return EXIT_USAGE
    summary = info.summary()
    summary["splits"] = splits.counts()
    print(json.dumps(summary, indent=2))
    return 0


def cmd_train(args) -> int:
    from core.runs.recipes import make_config, parse_ray_resources
    from core.runs.search import check_knobs
    from core.runs.store import RunState, create_run, read_status
    from core.runs.worker import execute_run

    try:
        config = make_config(
            args.data,
            args.arch,
            args.epochs,
            batch_size=args.batch_size,
            image_size=args.image_size,
            learning_rate=args.lr,
            fine_tune_epochs=args.fine_tune_epochs,
            patience=args.patience,
            seed=args.seed,
            augment=args.augment,
            subset=args.subset,
            balance_classes=args.balance_classes,
            cpus=args.cpus,
            gpus=args.gpus,
            ray_resources=parse_ray_resources(args.ray_resources),
        )
        check_knobs(config)  # in this process too, not only when queued: 10000 px is refused, not out of memory
    except ValueError as error:
        raise UsageError(f"{PROG} train: error: {error}") from None
    if args.queue:
        run_dir = _follow(_submit(config, args.runs_dir))
        state = read_status(run_dir).state
    else:
        run_dir = create_run(config, args.runs_dir, state=RunState.RUNNING)
        print(f"training {config.arch} in {run_dir}", file=sys.stderr, flush=True)
        state = execute_run(run_dir)
    if state == RunState.FAILED:
        print(f"error: {read_status(run_dir).error} (traceback in {run_dir / 'log.txt'})", file=sys.stderr)
    elif state != RunState.COMPLETED:
        print(f"run {state}", file=sys.stderr)
    print(run_dir, flush=True)
    return 0 if state == RunState.COMPLETED else EXIT_FAILED


def _submit(config, runs_dir) -> Path:
    from core.runs import jobs
    from core.runs.executors import configured_executor

    run_dir = jobs.submit(config, runs_dir)
    print(f"queued {run_dir} ({configured_executor()} executor)", file=sys.stderr, flush=True)
    return run_dir


def _follow(run_dir: Path) -> Path:
    """Wait for a queued run or sweep to end, keeping the queue moving; Ctrl-C cancels it."""
    from core.runs import jobs
    from core.runs.store import read_status

    try:
        while read_status(run_dir).state.active:
            jobs.tick(run_dir.parent)
            time.sleep(1.0)
    except KeyboardInterrupt:
        jobs.cancel(run_dir)
    return run_dir


def cmd_evaluate(args) -> int:
    from core.runs.evaluation import evaluate_run
    from core.serving.inference import RunNotReadyError, load_run_model, model_path

    try:
        # Loaded here for its one-sentence ModelLoadError; a run without one is evaluate_run's to name.
        model = load_run_model(args.run_dir) if model_path(args.run_dir).is_file() else None
        result = evaluate_run(args.run_dir, model=model)
    except (OSError, ValueError, RunNotReadyError) as error:
        print(json.dumps({"error": str(error)}))
        return EXIT_FAILED
    print(json.dumps(result, indent=2))
    return 0


def cmd_runs(args) -> int:
    from core.runs.store import list_runs

    summaries = list_runs(args.runs_dir)
    print(json.dumps([summary.to_dict() for summary in summaries], indent=2))
    return 0


def cmd_predict(args) -> int:
    """One JSON line per file, named as given, with its answer; exit 2 when any file (or the run)
    could not be used."""
    from core.serving.inference import Predictor, RunNotReadyError

    try:
        predictor = Predictor.from_run(args.run_dir)
    except (OSError, ValueError, RunNotReadyError) as error:
        print(json.dumps({"error": str(error)}))
        return EXIT_USAGE
    predictions = predictor.predict(
        args.files, confidence_threshold=args.confidence_threshold, novelty_threshold=args.novelty_threshold
    )
    for prediction in predictions:
        print(json.dumps(prediction.to_json()))
    return 0 if all(p.ok for p in predictions) else EXIT_USAGE


def cmd_doctor(args) -> int:
    """The data doctor's report as one JSON object; --save keeps it for the Review page."""
    from core.data.dataset import DatasetError

    try:
        if args.save:
            from core.review.runner import run_and_save

            report = run_and_save(args.data)
        else:
            from core.review.doctor import diagnose

            report = diagnose(args.data, seed=args.seed)
    except DatasetError as error:
        print(json.dumps({"error": str(error)}))
        return EXIT_USAGE
    print(json.dumps(report.to_dict(), indent=2))
    return 0


def cmd_serve(args) -> int:
    """The run's model over HTTP (core.serving.api) until Ctrl-C."""
    from core.serving.api import serve
    from core.serving.inference import RunNotReadyError

    try:
        serve(args.run_dir, args.host, args.port, allowed_hosts=args.allowed_host)
    except (OSError, ValueError, RunNotReadyError) as error:
        print(json.dumps({"error": str(error)}))
        return EXIT_USAGE
    return 0


def _parse_grid(items: list[str]) -> dict[str, list[str]]:
    grid = {}
    for item in items:
        name, _, values = item.partition("=")
        if not name or not values:
            raise UsageError(
                f"{PROG} sweep: error: --grid takes KNOB=V1,V2 (e.g. learning_rate=1e-3,3e-4), not '{item}'."
            )
        grid[name.strip()] = [value.strip() for value in values.split(",") if value.strip()]
    return grid


def cmd_sweep(args) -> int:
    """Queue a sweep, follow it on stderr, print the best trial's config as JSON last."""
    from core.models.zoo import ARCHITECTURES
    from core.runs.recipes import make_config
    from core.runs.search import COST_SENTENCES, SweepSpec, check_knobs
    from core.runs.store import read_status
    from core.runs.sweep import read_sweep_result

    try:
        spec = SweepSpec.from_grid(
            args.trials, _parse_grid(args.grid), concurrent=args.concurrent, arch_family=ARCHITECTURES[args.arch].family
        )
        config = make_config(
            args.data,
            args.arch,
            args.epochs,
            image_size=args.image_size,
            seed=args.seed,
            subset=args.subset,
            cpus=args.cpus,
            search=spec,
        )
        check_knobs(config)  # as jobs.submit will, but as this command's one line
    except ValueError as error:
        raise UsageError(f"{PROG} sweep: error: {error}") from None
    print(f"{spec.total_trials} trials; {COST_SENTENCES[config.sweep_cost()]}", file=sys.stderr, flush=True)
    run_dir = _follow(_submit(config, args.runs_dir))
    status, result = read_status(run_dir), read_sweep_result(run_dir)
    if result is not None:
        for trial in result.trials:
            print(json.dumps(asdict(trial)), file=sys.stderr)
    if status.error:
        print(f"error: {status.error} (log in {run_dir / 'log.txt'})", file=sys.stderr)
    if result is None or result.best_config is None:
        print(json.dumps({"error": f"the sweep ended {status.state} with no completed trial"}))
        return EXIT_FAILED
    print(
        json.dumps({"run": result.best_run, "seconds": round(result.seconds, 1), "config": result.best_config}),
        flush=True,
    )
    return 0


def cmd_worker(args) -> int:
    from core.runs.jobs import work
    from core.runs.store import RunState

    return 0 if work(args.run_dir) == RunState.COMPLETED else EXIT_FAILED


# --- the parser ---------------------------------------------------------------


# Argument types: a number that makes no sense is refused by argparse, in one sentence naming
# the option. Only what every value of its kind must be (finite, positive, a probability);
# the training knobs' own ranges are checked where configs are (core.runs.search).


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number.") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"'{text}' is not a finite number.")
    return value


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number.") from None


def _probability(text: str) -> float:
    value = _number(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"'{text}' is not a probability: it must be a number from 0 to 1.")
    return value


def _positive_number(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"'{text}' must be a number above 0.")
    return value


def _non_negative_number(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"'{text}' must be a number of at least 0.")
    return value


def _positive_int(text: str) -> int:
    value = _whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"'{text}' must be a whole number of at least 1.")
    return value


def _non_negative_int(text: str) -> int:
    value = _whole_number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"'{text}' must be a whole number of at least 0.")
    return value


def _port(text: str) -> int:
    value = _whole_number(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"'{text}' is not a port: it must be a whole number from 1 to 65535.")
    return value


def _architecture(name: str) -> str:
    try:
        recipe_for(name)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return name


def _recipes_say(value) -> str:
    """'cnn: 20, cnn_aug: 20, ...' for one recipe field, for a help text."""
    return ", ".join(f"{arch}: {value(recipe)}" for arch, recipe in RECIPES.items())


def _add_train(commands) -> None:
    train = commands.add_parser(
        "train",
        help="train a model in the foreground; prints the run folder last",
        description="Train a model in this process. The last line of output is the run folder.",
    )
    train.add_argument("--data", required=True, metavar="DIR", help="the dataset folder")
    train.add_argument("--arch", required=True, type=_architecture, choices=list(RECIPES), help="the architecture")
    train.add_argument(
        "--epochs",
        type=_positive_int,
        metavar="N",
        help=f"epochs of the first phase; default: the recipe's ({_recipes_say(lambda r: r.epochs)})",
    )
    train.add_argument(
        "--fine-tune-epochs",
        type=_non_negative_int,
        metavar="N",
        help="epochs of the fine-tuning phase (mobilenet_v2_finetune only); default: "
        f"the recipe's ({recipe_for('mobilenet_v2_finetune').fine_tune_epochs})",
    )
    train.add_argument(
        "--lr",
        type=_positive_number,
        metavar="RATE",
        help=f"learning rate; default: the recipe's ({recipe_for('cnn').learning_rate:g})",
    )
    train.add_argument(
        "--patience",
        type=_non_negative_int,
        metavar="N",
        help="stop after N epochs without a better validation accuracy (0: never); "
        f"default: the recipe's ({_recipes_say(lambda r: r.patience)})",
    )
    train.add_argument(
        "--augment",
        metavar="NAME",
        help=f"augmentation preset or saved config; default: the recipe's ({_recipes_say(lambda r: r.augment)})",
    )
    train.add_argument(
        "--image-size",
        type=_positive_int,
        metavar="PX",
        help="side of the square images the model sees; default: the recipe's "
        f"({_recipes_say(lambda r: r.image_size)})",
    )
    train.add_argument(
        "--batch-size",
        type=_positive_int,
        default=defaults.BATCH_SIZE,
        metavar="N",
        help="images per batch (default: %(default)s)",
    )
    train.add_argument(
        "--seed",
        type=int,
        default=defaults.SEED,
        help="seed of the split, the shuffling and the weights (default: %(default)s)",
    )
    train.add_argument(
        "--subset",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="train on at most N images per class (default: 0, all of them)",
    )
    train.add_argument(
        "--no-balance-classes",
        dest="balance_classes",
        action="store_false",
        help="count every photo the same even when the classes are uneven (default: weight the loss "
        f"by inverse class frequency when the largest class has {IMBALANCE_RATIO:g}x the smallest's photos)",
    )
    train.add_argument("--runs-dir", metavar="DIR", help="where the run folder goes (default: PAWLAB_HOME/runs)")
    train.add_argument(
        "--queue",
        action="store_true",
        help="hand the run to PawLab's queue and wait for it, instead of training in this "
        "process: a worker on this machine, or a Ray task when RAY_ADDRESS is set",
    )
    train.add_argument(
        "--cpus",
        type=_positive_number,
        default=1.0,
        metavar="N",
        help="CPUs the run asks of a Ray node (default: %(default)s)",
    )
    train.add_argument(
        "--gpus",
        type=_non_negative_number,
        default=0.0,
        metavar="N",
        help="GPUs the run asks of a Ray node (default: %(default)s)",
    )
    train.add_argument(
        "--ray-resources",
        default="",
        metavar="NAME=N,...",
        help="custom Ray resources the run needs, e.g. gpu_box=1 (pins it to nodes that have them)",
    )
    train.set_defaults(func=cmd_train)


def _add_sweep(commands) -> None:
    from core.runs.search import DEFAULT_TRIALS, Knob

    sweep = commands.add_parser(
        "sweep",
        help="search a recipe's knobs with Ray Tune; prints the best config as JSON last",
        description="Queue a sweep (embedded Ray on this machine, loopback only; or the cluster "
        "RAY_ADDRESS names), follow it, and print the best trial's config as JSON on the "
        "last line. Every trial is a run in the runs folder.",
    )
    sweep.add_argument("--data", required=True, metavar="DIR", help="the dataset folder")
    sweep.add_argument("--arch", required=True, type=_architecture, choices=list(RECIPES), help="the architecture")
    sweep.add_argument(
        "--trials",
        type=_positive_int,
        default=DEFAULT_TRIALS,
        metavar="N",
        help="trials in all (default: %(default)s); with a grid, rounded up to a "
        "whole number of passes over its combinations",
    )
    sweep.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KNOB=V1,V2",
        help=f"try every listed value of a knob ({', '.join(Knob)}); repeatable. "
        "Without it, the head's learning rate, dropout and hidden units are sampled",
    )
    sweep.add_argument(
        "--epochs",
        type=_positive_int,
        metavar="N",
        help="epochs per trial, at most (default: the recipe's); ASHA stops bad trials sooner",
    )
    sweep.add_argument(
        "--cpus",
        type=_positive_number,
        metavar="N",
        help="CPUs the sweep may use, one per trial at a time (default: all of this machine's)",
    )
    sweep.add_argument(
        "--concurrent",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="trials at the same time (default: one per CPU)",
    )
    sweep.add_argument(
        "--image-size", type=_positive_int, metavar="PX", help="side of the square images (default: the recipe's)"
    )
    sweep.add_argument("--seed", type=int, default=defaults.SEED, help="seed of the split (default: %(default)s)")
    sweep.add_argument(
        "--subset",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="train on at most N images per class (default: 0, all of them)",
    )
    sweep.add_argument("--runs-dir", metavar="DIR", help="the runs folder (default: PAWLAB_HOME/runs)")
    sweep.set_defaults(func=cmd_sweep)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """``serve``'s arguments."""
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run folder")
    parser.add_argument(
        "--host",
        default=SERVE_HOST,
        help="address to listen on (default: %(default)s, this machine only; anything else lets every "
        "machine that can reach it use the API, which has no authentication)",
    )
    parser.add_argument("--port", type=_port, default=SERVE_PORT, help="port (default: %(default)s)")
    parser.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name clients may call the server by (their Host header); repeatable. --host, "
        "localhost, 127.0.0.1 and [::1] always are; other names are refused (DNS rebinding)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="PawLab engine: everything the app does, as commands.")
    # The worker is the job manager's, not a person's: a parser without help
    # is not listed, and the metavar names only the public commands.
    commands = parser.add_subparsers(
        dest="command",
        required=True,
        parser_class=_Parser,
        metavar="{" + ",".join(PUBLIC_COMMANDS) + "}",
        help=f"what to do; '{PROG} COMMAND --help' for its options",
    )

    fetch = commands.add_parser("fetch", help="download the official cats and dogs dataset")
    fetch.set_defaults(func=cmd_fetch)

    data = commands.add_parser("data", help="summarise a dataset folder as JSON")
    data.add_argument(
        "--data",
        "--root",
        dest="data",
        required=True,
        metavar="DIR",
        help="the dataset folder (--root is the older name)",
    )
    data.add_argument(
        "--seed",
        type=int,
        default=defaults.SEED,
        help="seed of the split whose counts are shown (default: %(default)s)",
    )
    data.set_defaults(func=cmd_data)

    _add_train(commands)

    evaluate = commands.add_parser("evaluate", help="evaluate a run on its test split; prints JSON")
    evaluate.add_argument("run_dir", metavar="RUN_DIR", help="the run folder")
    evaluate.set_defaults(func=cmd_evaluate)

    runs = commands.add_parser("runs", help="list the runs as JSON")
    runs.add_argument("--runs-dir", metavar="DIR", help="the runs folder (default: PAWLAB_HOME/runs)")
    runs.set_defaults(func=cmd_runs)

    predict = commands.add_parser("predict", help="classify photos with a run's model; one JSON line each")
    predict.add_argument("run_dir", metavar="RUN_DIR", help="the run folder")
    predict.add_argument("files", nargs="+", metavar="FILE", help="photos to classify")
    predict.add_argument(
        "--confidence-threshold",
        type=_probability,
        metavar="P",
        help='answer "unsure" below this calibrated probability (default: the run\'s)',
    )
    predict.add_argument(
        "--novelty-threshold",
        type=_non_negative_number,
        metavar="D",
        help='answer "unknown" above this distance to the training photos (default: the run\'s; transfer runs only)',
    )
    predict.set_defaults(func=cmd_predict)

    doctor = commands.add_parser("doctor", help="find label errors, duplicates, leaks and outliers; prints JSON")
    doctor.add_argument("--data", required=True, metavar="DIR", help="the dataset folder")
    doctor.add_argument(
        "--seed",
        type=int,
        default=defaults.SEED,
        help="seed of the split whose leaks are checked (default: %(default)s)",
    )
    doctor.add_argument("--save", action="store_true", help="also save the report (and progress) for the Review page")
    doctor.set_defaults(func=cmd_doctor)

    serve = commands.add_parser("serve", help="serve a run's model over HTTP: POST /v1/predict, GET /healthz, /docs")
    add_serve_arguments(serve)
    serve.set_defaults(func=cmd_serve)

    _add_sweep(commands)

    from core.data.commands import add_dataset_commands

    add_dataset_commands(commands)

    from core.serving.export_commands import add_export_command

    add_export_command(commands)

    from core.labeling.commands import add_label_command

    add_label_command(commands)

    worker = commands.add_parser("worker", description="Train a queued run (the job manager starts this).")
    worker.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the run folder")
    # Handled by core.__main__ before anything is imported (core.runs.sweep_driver).
    worker.add_argument(
        LOOPBACK_ONLY_FLAG, action="store_true", help="in a loopback-only network of its own (a sweep's embedded Ray)"
    )
    worker.set_defaults(func=cmd_worker)
    return parser


def main(argv: list[str] | None = None) -> int:
    from core.config import check_settings

    try:
        args = build_parser().parse_args(argv)
        problem = check_settings()
        if problem:
            raise UsageError(f"{PROG}: error: {problem}")
        if args.command != "worker":
            from core.data.acquire import sweep_abandoned_imports

            with contextlib.suppress(OSError):  # a read-only home: the command itself will say what it cannot do
                sweep_abandoned_imports()
        return args.func(args)
    except UsageError as error:
        print(error, file=sys.stderr)
        return EXIT_USAGE
