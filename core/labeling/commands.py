"""``python -m core label``: the labelling loop for scripts and tests.

    python -m core label --data DIR --next 50            # up to 50 JSON lines, in the order to label them
    python -m core label --data DIR --set FILE=CLASS ... --exclude FILE ...   # one JSON summary line

``--next`` prints one ``{file, suggested, confidence, probabilities, unknown,
reason}`` line per photo (nothing when none are left); with ``--set`` or
``--exclude`` too, the labels are recorded first. FILE is the path inside the
dataset that ``--next`` printed; the last ``=`` of FILE=CLASS splits the two.
A bad request (a file not in the dataset, a class it does not have) is one
line on stderr and exit status 2, and nothing is recorded. When every
embedding is cached (any round after the first), nothing imports TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import sys

from core.defaults import EXIT_USAGE

PROG = "python -m core label"


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number.") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"'{text}' must be a whole number of at least 1.")
    return value


def _assignment(text: str) -> tuple[str, str]:
    file, equals, class_name = text.rpartition("=")
    if not equals or not file or not class_name:
        raise argparse.ArgumentTypeError(f"--set takes FILE=CLASS (e.g. unlabeled/photo_ab12.jpg=cats), not '{text}'.")
    return file, class_name


def _labels(args) -> dict[str, str | None]:
    """Every --set and --exclude, refusing a file given twice (which one would count?)."""
    labels: dict[str, str | None] = {}
    for file, label in [*args.set, *((file, None) for file in args.exclude)]:
        if file in labels:
            raise ValueError(f"{file!r} is given twice; give each photo one class (or --exclude).")
        labels[file] = label
    return labels


def cmd_label(args) -> int:
    from core.data.dataset import DatasetError
    from core.labeling.suggest import record_labels, suggest_next

    try:
        labels = _labels(args)
        if not labels and args.next is None:
            raise ValueError("say what to do: --next N, --set FILE=CLASS or --exclude FILE.")
        if labels:
            report = record_labels(args.data, labels, author=args.author)
            print(json.dumps(report.to_dict()), flush=True)
        if args.next is not None:
            for suggestion in suggest_next(args.data, args.next):
                print(json.dumps(suggestion.to_json()))
    except (DatasetError, ValueError, OSError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def add_label_command(commands) -> None:
    """Add ``label`` to the subparsers of ``python -m core`` (core.cli.build_parser)."""
    label = commands.add_parser(
        "label",
        help="label unlabelled photos with the model's suggestions; JSON lines",
        description="Suggest classes for a dataset's unlabeled/ photos, in the order to label them, "
        "and record labels: a dataset made in PawLab has its photos moved into their class "
        "folders; any other gets corrections (its files stay as they are).",
    )
    label.add_argument("--data", required=True, metavar="DIR", help="the dataset folder")
    label.add_argument(
        "--next",
        type=_count,
        metavar="N",
        help="print up to N suggestions as JSON lines, the photo to label first first (nothing when none are left)",
    )
    label.add_argument(
        "--set",
        type=_assignment,
        action="append",
        default=[],
        metavar="FILE=CLASS",
        help="give the photo FILE (its path inside the dataset) the class CLASS; repeatable",
    )
    label.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="FILE",
        help="the photo FILE is none of the classes: leave it out of training; repeatable",
    )
    label.add_argument("--author", default="cli", help="who records the labels, for Undo (default: %(default)s)")
    label.set_defaults(func=cmd_label)
