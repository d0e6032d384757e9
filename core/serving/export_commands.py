"""``python -m core export``: a run's model as files in a folder, checked first (registered by core.cli).

    python -m core export RUN_DIR --format tflite-int8 --out OUT_DIR [--force]

Formats: ``keras`` (model.keras as trained: logits, with the temperature in
the card), ``savedmodel``, ``tflite``, ``tflite-int8``, ``onnx``
(core.serving.export) and ``web`` (core.serving.web_export). OUT_DIR receives
the export unzipped: the model, labels.txt, MODEL_CARD.md and
model_card.json. The export is checked against the run's Keras model on its
test photos as the Classify page checks it (core.serving.export_check; the web
page in headless Chromium, core.serving.web_export); what it prints last is
JSON: format, folder, files and their sizes, the check.

A run without a model, an existing OUT_DIR without ``--force``, a format this
PawLab cannot make: one ``{"error": ...}`` line and exit status 2. A
conversion that fails, or an export that does not agree: the sentence and
exit status 1, and OUT_DIR is left as it was. The export is written beside
OUT_DIR and renamed into place, so it is never half-written.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from core.defaults import EXIT_FAILED, EXIT_USAGE
from core.runs.store import short_message
from core.serving.export import ExportFormat, extract_model, require_model, write_keras_folder

KERAS, WEB = "keras", "web"
# The command line's names of the checked zip formats (core.serving.export).
ZIPPED_FORMATS = {
    "savedmodel": ExportFormat.SAVED_MODEL,
    "tflite": ExportFormat.TFLITE,
    "tflite-int8": ExportFormat.TFLITE_INT8,
    "onnx": ExportFormat.ONNX,
}
FORMATS = (KERAS, *ZIPPED_FORMATS, WEB)


class ExportRefused(Exception):
    """The export cannot be made as asked; the message is one sentence, the exit status comes with it."""

    def __init__(self, message: str, exit_status: int = EXIT_USAGE, check: dict | None = None):
        super().__init__(message)
        self.exit_status, self.check = exit_status, check


# --- one writer per format: makes the folder, returns the check's summary -----------


def _export_zipped(export_format: ExportFormat) -> Callable[[Path, Path], dict | None]:
    def export(run_dir: Path, folder: Path) -> dict | None:
        from core.serving.export_check import check_export, offered_export

        status = check_export(run_dir, export_format)  # makes the zip in <run>/exports/ and scores it
        agreement = status.agreement
        archive = offered_export(run_dir, export_format)
        if archive is None or agreement is None:
            check = agreement.to_summary() if agreement else None
            raise ExportRefused(status.reason or "The export was not checked.", EXIT_FAILED, check)
        extract_model(archive, export_format, folder)
        return agreement.to_summary()

    return export


def _export_keras(run_dir: Path, folder: Path) -> dict | None:
    from core.serving.export_check import score_keras_folder

    write_keras_folder(run_dir, folder)
    agreement = score_keras_folder(run_dir, folder)
    if not agreement.agrees:
        raise ExportRefused(f"Not offered: {agreement.describe()}.", EXIT_FAILED, agreement.to_summary())
    return agreement.to_summary()


def _export_web(run_dir: Path, folder: Path) -> dict | None:
    try:
        from core.serving.web_export import check_web_export, export_web
    except ModuleNotFoundError as error:
        if error.name != "core.serving.web_export":
            raise
        raise ExportRefused("The web export is not available in this PawLab.") from None
    export_web(run_dir, folder)
    check = check_web_export(run_dir, folder)  # the page in headless Chromium against the run's answers
    per_photo = ("differences", "requests")  # one entry per photo or file: the worst and foreign ones stay
    summary = {key: value for key, value in check.to_dict().items() if key not in per_photo} | {"agrees": check.agrees}
    if not check.agrees:
        raise ExportRefused(f"Not offered: {check.describe()}.", EXIT_FAILED, summary)
    return summary


WRITERS: dict[str, Callable[[Path, Path], dict | None]] = {
    KERAS: _export_keras,
    **{name: _export_zipped(export_format) for name, export_format in ZIPPED_FORMATS.items()},
    WEB: _export_web,
}


# --- the command -------------------------------------------------------------------


def cmd_export(args) -> int:
    run_dir, out = Path(args.run_dir), Path(args.out)
    try:
        require_model(run_dir)
        _check_target(out, run_dir, args.force)
        print(f"exporting {args.format} and checking it on the run's test photos", file=sys.stderr, flush=True)
        with _scratch_beside(out) as scratch:
            check = _write(args.format, run_dir, scratch / "export")
            _move_into_place(scratch / "export", out, scratch)
    except (FileNotFoundError, FileExistsError) as error:
        return _fail(str(error), EXIT_USAGE)
    except ExportRefused as refused:
        return _fail(str(refused), refused.exit_status, check=refused.check)
    print(json.dumps({"format": args.format, "folder": str(out), "files": _files(out), "check": check}, indent=2))
    return 0


def _write(name: str, run_dir: Path, folder: Path) -> dict | None:
    """The format's writer (it makes ``folder``); a conversion that raises is one sentence, as on the
    Classify page."""
    try:
        return WRITERS[name](run_dir, folder)
    except ExportRefused:
        raise
    except Exception as error:  # a converter can raise anything (tf2onnx, the TFLite converter)
        raise ExportRefused(short_message(f"The export failed: {error}"), EXIT_FAILED) from error


def _check_target(out: Path, run_dir: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} is a file; --out names the folder the export goes into.")
    if out.exists() and not force:
        raise FileExistsError(f"{out} already exists; pass --force to replace it.")
    if run_dir.resolve().is_relative_to(out.resolve()):
        raise FileExistsError(f"{out} holds the run itself; choose another --out.")


@contextlib.contextmanager
def _scratch_beside(out: Path):
    """A temporary folder beside ``out`` (same disk, so the rename into place is atomic)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _move_into_place(made: Path, out: Path, scratch: Path) -> None:
    if out.exists():  # --force: the old folder goes away with the scratch folder
        os.replace(out, scratch / "replaced")
    os.replace(made, out)


def _files(folder: Path) -> list[dict]:
    return [
        {"file": str(path.relative_to(folder)), "bytes": path.stat().st_size}
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    ]


def _fail(message: str, exit_status: int, **details) -> int:
    print(json.dumps({"error": message, **{key: value for key, value in details.items() if value is not None}}))
    return exit_status


def add_export_command(commands) -> None:
    """``export``, on core.cli's subparsers."""
    export = commands.add_parser(
        "export",
        help="export a run's model to a folder, checked against the run; prints a JSON summary last",
        description="Write the run's model in FORMAT to OUT_DIR (model, labels.txt, model card), after checking "
        "on the run's test photos that it answers like the run: float formats give the same labels and "
        "probabilities within 1e-3, tflite-int8 at most 1 point less accuracy.",
    )
    export.add_argument("run_dir", metavar="RUN_DIR", help="the run folder")
    export.add_argument(
        "--format",
        required=True,
        choices=FORMATS,
        help="keras: model.keras as trained (logits; the temperature is in the card); savedmodel: TF Serving; "
        "tflite, tflite-int8: TensorFlow Lite, float32 or quantized; onnx: onnxruntime; web: a web page",
    )
    # OUT_DIR, not DIR: DIR is a dataset folder, always --data (tests/test_cli.py).
    export.add_argument("--out", required=True, metavar="OUT_DIR", help="the new folder the export goes into")
    export.add_argument("--force", action="store_true", help="replace OUT_DIR when it exists")
    export.set_defaults(func=cmd_export)
