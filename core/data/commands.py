"""The command line of making and importing datasets (registered by core.cli).

    python -m core dataset new NAME --classes a,b,c
    python -m core dataset add NAME [--class a] PHOTO...     (no --class: unlabelled)
    python -m core import SOURCE --name NAME [--labels CSV] [--file-column C] [--label-column L]

Each prints JSON; the last stdout line of ``import`` is its summary. A bad
name, a dataset PawLab did not make, a labels file without usable columns:
one ``{"error": ...}`` line and exit status 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from core.config import get_settings
from core.data.acquire import ACQUIRE_ERRORS
from core.data.dataset import DatasetError
from core.defaults import EXIT_USAGE


def _fail(error: BaseException) -> int:
    print(json.dumps({"error": str(error)}))
    return EXIT_USAGE


def cmd_dataset_new(args) -> int:
    from core.data.maker import new_dataset

    classes = [name for name in args.classes.split(",") if name.strip()]
    if not classes:
        return _fail(DatasetError("Name at least one class, e.g. --classes cats,dogs."))
    try:
        root = new_dataset(args.name, classes)
    except (*ACQUIRE_ERRORS, FileExistsError) as error:
        return _fail(error)
    print(json.dumps({"dataset": str(root), "classes": sorted(classes)}))
    return 0


def cmd_dataset_add(args) -> int:
    from core.data.acquire import safe_dataset_name
    from core.data.maker import add_photos

    try:
        root = get_settings().datasets_dir / safe_dataset_name(args.name)
        photos = []
        for file in args.photos:
            path = Path(file)
            if not path.is_file():
                raise DatasetError(f"There is no photo at {path}.")
            photos.append((path.name, path.read_bytes()))
        report = add_photos(root, args.class_name, photos)
    except ACQUIRE_ERRORS as error:
        return _fail(error)
    print(json.dumps(report.to_dict()))
    return 0


def cmd_import(args) -> int:
    from core.data.importing import import_labelled
    from core.data.label_file import LabelColumns

    if bool(args.file_column) != bool(args.label_column):
        return _fail(DatasetError("Give both --file-column and --label-column, or neither (they are guessed)."))
    columns = LabelColumns(args.file_column, args.label_column) if args.file_column else None

    def progress(done: int, total: int) -> None:
        print(f"\rcopying photos: {done}/{total}", end="", file=sys.stderr, flush=True)

    try:
        summary = import_labelled(args.source, args.name, labels=args.labels, columns=columns, progress=progress)
    except (*ACQUIRE_ERRORS, FileExistsError) as error:
        return _fail(error)
    print(file=sys.stderr)
    for note in summary.notes:
        print(note, file=sys.stderr)
    print(json.dumps(summary.to_dict()))
    return 0


def add_dataset_commands(commands) -> None:
    """``dataset new``, ``dataset add`` and ``import``, on core.cli's subparsers."""
    dataset = commands.add_parser("dataset", help="make a dataset in PawLab and add photos to it")
    actions = dataset.add_subparsers(
        dest="action", required=True, parser_class=type(dataset), help="new: make one; add: add photos to one"
    )
    new = actions.add_parser("new", help="an empty dataset with these classes; prints JSON")
    new.add_argument("name", metavar="NAME", help="the dataset's name (a folder under PAWLAB_HOME/datasets)")
    new.add_argument("--classes", required=True, metavar="A,B,C", help="its classes, comma-separated")
    new.set_defaults(func=cmd_dataset_new)

    add = actions.add_parser("add", help="add photos to a dataset PawLab made; prints JSON: added, skipped")
    add.add_argument("name", metavar="NAME", help="the dataset's name")
    add.add_argument("--class", dest="class_name", metavar="CLASS", help="their class (default: unlabelled)")
    add.add_argument("photos", nargs="+", metavar="PHOTO", help="photo files")
    add.set_defaults(func=cmd_dataset_add)

    imports = commands.add_parser(
        "import",
        help="import a zip or folder of photos, with labels from a CSV; prints a JSON summary last",
        description="Photos plus labels.csv (Kaggle) or metadata.csv (Hugging Face), found at the source's "
        "root or given with --labels; the columns are guessed unless given. Photos without a row are "
        "kept unlabelled. Without a labels file, class folders are imported as they are.",
    )
    imports.add_argument("source", metavar="SOURCE", help="a zip or a folder of photos")
    imports.add_argument("--name", required=True, help="the new dataset's name")
    imports.add_argument(
        "--labels", metavar="CSV", help="the labels file (default: labels.csv or metadata.csv in SOURCE)"
    )
    imports.add_argument("--file-column", metavar="C", help="the column naming each photo (default: guessed)")
    imports.add_argument("--label-column", metavar="L", help="the column holding its class (default: guessed)")
    imports.set_defaults(func=cmd_import)
