"""Take the model with you: a web page that classifies offline, in the browser, with a live camera.

    export_web(run_dir, out_dir)        # the folder: any static server serves it
    check_web_export(run_dir, folder)   # WebCheck: the page in headless Chromium vs the Keras model
    start_web_export(run_dir)           # the Classify page's "Prepare": both, out of process
    offered_web_export(run_dir)         # <run>/exports/web.zip, only once its check passed

The folder holds

    index.html, app.js, style.css     the page (templates in core/serving/web/)
    model.onnx                        the run's ONNX export (core.serving.export): float32
                                      [0, 255] NHWC in, calibrated probabilities out
    pawlab.json                       WebConfig: classes, image size, thresholds, file names
    embedder.onnx, novelty.f16        the unknown-photo check, when the run has one: the
                                      frozen ImageNet MobileNetV2 (224 px, pooled 1280) and the
                                      training photos' unit embeddings as float16 (NoveltyWeb)
    ort.wasm.min.js, ort-wasm-*.mjs/.wasm   ONNX Runtime Web (core.serving.web_runtime)
    MODEL_CARD.md, model_card.json, labels.txt, README.md

and loads nothing from anywhere else. The page decodes a photo with the
browser's own decoder (EXIF orientation applied, no colour management, as
Pillow), then resizes it with Pillow's antialiased bilinear resample
reimplemented in JavaScript to the same integer arithmetic. Where it differs
from PawLab: a JPEG at least twice the model's size is decoded by Pillow at
reduced scale (draft, libjpeg's scaled IDCT); the browser cannot do that, so
the page averages blocks of the full decode instead (DRAFT_NOTE says what that costs).

The check serves the folder on 127.0.0.1, opens it in headless Chromium
with every request recorded (one to another host fails the check), feeds
the run's test photos through the file input and compares each answer in
``#result`` with what ``python -m core predict`` answers (Predictor).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from core.data.download import ProgressCallback, format_size
from core.fileio import FileLock, atomic_write, file_sha256, read_json, write_json
from core.processes import REPO_ROOT, child_environment
from core.runs.store import pid_alive, read_config, read_facts, short_message
from core.runs.trust import NOVELTY_FILE, read_trust
from core.serving import web_runtime
from core.serving.export import EXPORTS_DIR, LABELS_FILE, ExportFormat, extract_model, make_export
from core.serving.export_check import Agreement, ExportState, source_of
from core.serving.inference import model_path
from core.serving.model_card import CARD_JSON, CARD_MARKDOWN, card_json, card_markdown, escape, model_card

TEMPLATES = Path(__file__).with_name("web")
PAGE_FILES = ("index.html", "app.js", "style.css")
CONFIG_FILE = "pawlab.json"
MODEL_FILE = "model.onnx"
EMBEDDER_FILE = "embedder.onnx"
REFERENCE_FILE = "novelty.f16"
README_FILE = "README.md"
# Largest probability difference the checked page may have where its pixels are Pillow's exactly
# (every photo but a JPEG at least twice the model's size): the ONNX exports' own bound.
WEB_TOLERANCE = 1e-3
# ... and for a JPEG PawLab decodes at reduced scale (DRAFT_NOTE): block averages instead of
# libjpeg's scaled IDCT move pixels by 0.1-0.4 levels on average (at most 2-6), and measured on
# 100 unseen cats and dogs at 160 px (a 60-photo MobileNetV2 run) that moved a probability by up
# to 0.16, on photos the model was unsure of (p = 0.52 and 0.61); 95 of the 100 moved less than 0.01.
DRAFT_TOLERANCE = 0.3
# Test photos fed through the page by the check (the first ones of the run's test split).
MAX_CHECK_PHOTOS = 100
# Seconds the page may take to load its model(s), and to answer one photo.
LOAD_TIMEOUT_S = 120
ANSWER_TIMEOUT_S = 60
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# The Classify page's zip of a checked folder, and the child's files, in <run>/exports/.
WEB_ARCHIVE = "web.zip"
STATUS_FILE = "web.status.json"
LOG_FILE = "web.log"
LOCK_FILE = ".web.lock"
DRAFT_NOTE = (
    "A JPEG at least twice the model's input size is decoded by PawLab (Pillow) at 1/2, 1/4 or 1/8 "
    "scale inside libjpeg; a browser decodes it whole, so the page averages 2x2 (4x4, 8x8) blocks "
    "instead, which moves a pixel by a few levels."
)


# --- what is written into the folder ---------------------------------------------------


@dataclass(frozen=True)
class NoveltyWeb:
    """The unknown-photo check as the page runs it (core.models.novelty.NoveltyDetector)."""

    model: str  # the embedding extractor, ONNX
    image_size: int  # the photos are resized to this for it (the detector's own, NoveltyDetector.image_size)
    reference: str  # count x dims float16, little-endian: the training photos' unit embeddings
    count: int
    dims: int
    k: int  # neighbours averaged
    threshold: float  # mean cosine distance above which the answer is "None of these"

    @property
    def reference_bytes(self) -> int:
        return self.count * self.dims * 2


@dataclass(frozen=True)
class WebConfig:
    """pawlab.json: everything the page needs to answer as PawLab does."""

    run: str
    classes: list[str]
    image_size: int
    temperature: float  # already inside model.onnx; shown, not applied again
    confidence_threshold: float  # below it: "Not sure"
    novelty: NoveltyWeb | None
    model: str = MODEL_FILE
    runtime_version: str = web_runtime.VERSION
    format_version: int = 1

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)


def export_web(
    run_dir: str | os.PathLike, out_dir: str | os.PathLike, progress: ProgressCallback | None = None
) -> Path:
    """Write the run's web page into the new folder ``out_dir``; returns it.

    FileExistsError when ``out_dir`` exists; WebRuntimeMissingError (one sentence) when ONNX Runtime
    Web is neither here nor downloadable. ``progress`` follows its download, if one is needed.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} exists already; the web page is written into a new folder.")
    if not model_path(run_dir).is_file():
        raise FileNotFoundError(f"Run {run_dir.name} has no saved model to export.")
    runtime = web_runtime.runtime_folder(progress)  # first: its sentence before minutes of conversion
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}-"))
    try:
        _write_folder(run_dir, scratch, runtime)
        os.chmod(scratch, 0o755)  # noqa: S103 -- mkdtemp makes it private; a served folder is read by all
        os.rename(scratch, out_dir)  # whole or not at all
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out_dir


def _write_folder(run_dir: Path, folder: Path, runtime: Path) -> None:
    for name in PAGE_FILES:
        shutil.copyfile(TEMPLATES / name, folder / name)
    for name in web_runtime.FILES:
        shutil.copyfile(runtime / name, folder / name)
    _write_model(run_dir, folder / MODEL_FILE)
    novelty = _write_novelty(run_dir, folder)
    trust, classes = read_trust(run_dir), read_facts(run_dir).classes
    config = WebConfig(
        run=run_dir.name,
        classes=list(classes),
        image_size=read_config(run_dir).image_size,
        temperature=float(trust.temperature),
        confidence_threshold=float(trust.confidence_threshold),
        novelty=novelty,
    )
    atomic_write(folder / CONFIG_FILE, config.to_json())
    card = model_card(run_dir)
    atomic_write(folder / CARD_MARKDOWN, card_markdown(card))
    atomic_write(folder / CARD_JSON, card_json(card))
    atomic_write(folder / LABELS_FILE, "\n".join(classes) + "\n")
    atomic_write(folder / README_FILE, folder_readme(config, folder))


def _write_model(run_dir: Path, target: Path) -> None:
    """The run's ONNX export (made once per model.keras and trust.json, in exports/onnx.zip)."""
    archive = make_export(run_dir, ExportFormat.ONNX)
    with tempfile.TemporaryDirectory(dir=target.parent) as unzipped:
        shutil.move(extract_model(archive, ExportFormat.ONNX, Path(unzipped)), target)


def _write_novelty(run_dir: Path, folder: Path) -> NoveltyWeb | None:
    """embedder.onnx and novelty.f16 when the run checks for unknown photos (as Predictor decides)."""
    trust = read_trust(run_dir)
    if trust.novelty_threshold is None or not (run_dir / NOVELTY_FILE).is_file():
        return None
    from core.models.embeddings import pooled_extractor
    from core.models.novelty import NoveltyDetector
    from core.serving.export import WRITERS

    detector = NoveltyDetector.load(run_dir / NOVELTY_FILE)
    # novelty.npz keeps the reference as float16 already: the page gets those very numbers.
    reference = np.ascontiguousarray(detector.reference, dtype="<f2")
    atomic_write(folder / REFERENCE_FILE, reference.tobytes())
    WRITERS[ExportFormat.ONNX](pooled_extractor(detector.image_size), folder / EMBEDDER_FILE)
    count, dims = reference.shape
    return NoveltyWeb(
        EMBEDDER_FILE, detector.image_size, REFERENCE_FILE, count, dims, detector.k, float(trust.novelty_threshold)
    )


def folder_readme(config: WebConfig, folder: Path) -> str:
    """README.md of the folder: how to serve it and what it answers (class names escaped)."""
    sizes = {path.name: path.stat().st_size for path in folder.iterdir() if path.is_file()}
    lines = [
        f"# PawLab classifier: {escape(config.run)}",
        "",
        f"Classifies photos into {', '.join(escape(name) for name in config.classes)} in the browser, "
        "offline: the model runs in ONNX Runtime Web (WebAssembly, one thread) and nothing is sent anywhere.",
        "",
        "## Serve it",
        "",
        "```bash",
        "python3 -m http.server 8000 --bind 127.0.0.1",
        "```",
        "",
        "in this folder, then open http://localhost:8000. Any static server will do; opened as a file "
        "(file://) the browser refuses to load the model. The camera needs http://localhost or https.",
        "",
        "## What it answers",
        "",
        f"Drop photos or start the camera: each photo is resized to {config.image_size} px as PawLab resizes "
        "it and gets every class's calibrated probability (the run's temperature "
        f"{config.temperature:.3f} is inside model.onnx), and an answer: the most likely class, "
        f"**Not sure** when its probability is below {config.confidence_threshold:.0%}, or"
        + (
            " **None of these** when the photo looks like none of the training photos (mean cosine distance "
            f"of its ImageNet embedding to its {config.novelty.k} nearest training photos above "
            f"{config.novelty.threshold:.3f})."
            if config.novelty
            else " (a model trained from scratch has no unknown-photo check)."
        ),
        "",
        f"Where it differs from PawLab: {DRAFT_NOTE}",
        "",
        "Programs read the latest answer from the `#result` element: `data-file`, `data-label`, "
        "`data-answer`, `data-abstained` (empty, `unsure` or `unknown`), `data-probabilities` (JSON, class "
        "to probability), and `data-fps` while the camera runs.",
        "",
        "## Files",
        "",
        *(f"- `{name}` ({format_size(size)})" for name, size in sorted(sizes.items())),
        f"- `{README_FILE}` (this file)",
        "",
        "MODEL_CARD.md says what the model was trained and tested on and how far to trust it.",
        "",
    ]
    return "\n".join(lines)


# --- the check: the page in Chromium against the Keras model ----------------------------


@dataclass(frozen=True)
class WebCheck:
    """How the page's answers in Chromium compare with PawLab's on the run's test photos."""

    agreement: Agreement  # labels and probabilities, photos whose pixels are Pillow's exactly
    reduced: Agreement  # ... JPEGs PawLab decodes at reduced scale (DRAFT_NOTE), DRAFT_TOLERANCE
    same_answer: int  # photos with the same answer (class, unsure or unknown)
    max_distance_difference: float | None  # of the unknown-photo check (None: the run has none)
    worst_photo: str = ""  # the photo with the largest probability difference
    differences: list[float] = field(default_factory=list)  # each photo's largest probability difference
    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    foreign: list[str] = field(default_factory=list)  # ... of them, those to another host
    errors: list[str] = field(default_factory=list)  # the page's console errors

    @property
    def photos(self) -> int:
        return self.agreement.photos + self.reduced.photos

    @property
    def agrees(self) -> bool:
        parts = [part for part in (self.agreement, self.reduced) if part.photos]
        return bool(parts) and all(part.agrees for part in parts) and not self.foreign

    def describe(self) -> str:
        parts = [
            f"{part.describe()}{where}"
            for part, where in ((self.agreement, ""), (self.reduced, " where PawLab decodes the JPEG at reduced scale"))
            if part.photos
        ]
        text = f"in Chromium, {'; '.join(parts)}"
        if self.max_distance_difference is not None:
            text += f", largest unknown-photo distance difference {self.max_distance_difference:.1e}"
        if self.foreign:
            text += f"; it asked another host for {self.foreign[0]}"
        return text

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> WebCheck:
        return cls(**{**data, "agreement": Agreement(**data["agreement"]), "reduced": Agreement(**data["reduced"])})


class PageError(RuntimeError):
    """The exported page did not load or did not answer; the message is one sentence."""


def check_web_export(
    run_dir: str | os.PathLike,
    folder: str | os.PathLike,
    progress: Callable[[int, int], None] = lambda done, total: None,
    photos: Sequence[str] | None = None,
) -> WebCheck:
    """Feed the run's test photos (up to MAX_CHECK_PHOTOS) through the served page; compare with Predictor."""
    from core.serving.export_check import _test_photos
    from core.serving.inference import Predictor

    run_dir = Path(run_dir)
    photos = list(photos) if photos is not None else _test_photos(run_dir)[:MAX_CHECK_PHOTOS]
    expected = Predictor.from_run(run_dir).predict(photos)
    with serve_folder(folder) as url, open_page(url) as page:
        answers = []
        for done, photo in enumerate(photos, start=1):
            answers.append(page.classify(photo, done))
            progress(done, len(photos))
        requests, foreign, errors = list(page.requests), list(page.foreign), list(page.errors)
    same_answer = 0
    differences, worst_distance = [], None
    for want, got in zip(expected, answers):
        same_answer += int(want.answer == got["answer"])
        wanted = want.probabilities or {}
        differences.append(max(abs(float(got["probabilities"].get(name, np.inf)) - p) for name, p in wanted.items()))
        if want.novelty_distance is not None:
            difference = abs(float(got.get("distance") or np.inf) - want.novelty_distance)
            worst_distance = max(worst_distance or 0.0, difference)
    worst = int(np.argmax(differences)) if differences else 0

    def agreement_of(reduced: bool, tolerance: float) -> Agreement:
        picked = [i for i, got in enumerate(answers) if (got.get("draft", "1") != "1") == reduced]
        same_label = sum(expected[i].label == answers[i]["label"] for i in picked)
        return Agreement(len(picked), same_label, max((differences[i] for i in picked), default=0.0), tolerance)

    return WebCheck(
        agreement_of(False, WEB_TOLERANCE),
        agreement_of(True, DRAFT_TOLERANCE),
        same_answer,
        worst_distance,
        worst_photo=Path(photos[worst]).name if photos else "",
        differences=differences,
        requests=requests,
        foreign=foreign,
        errors=errors,
    )


@contextlib.contextmanager
def serve_folder(folder: str | os.PathLike) -> Iterator[str]:
    """A static server on 127.0.0.1 (a free port) in a thread; yields its URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="web-export-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass  # the check records requests itself


class ExportedPage:
    """The page open in Chromium: every request recorded, the latest answer read from #result."""

    def __init__(self, page, origin: str):
        self.page, self.origin = page, origin.rstrip("/")
        self.requests: list[str] = []
        self.foreign: list[str] = []
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.context.route("**/*", self._route)

    def _console(self, message) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def _route(self, route):
        url = route.request.url
        self.requests.append(url)
        if url == self.origin or url.startswith(self.origin + "/"):
            route.continue_()
        else:
            self.foreign.append(url)
            route.abort("blockedbyclient")

    def load(self) -> None:
        self.page.goto(self.origin + "/")
        self.page.wait_for_function(
            "() => document.getElementById('status').dataset.ready !== 'false'", timeout=LOAD_TIMEOUT_S * 1000
        )
        status = self.page.locator("#status")
        if status.get_attribute("data-ready") != "true":
            raise PageError(f"The exported page did not load: {status.inner_text()}")

    def classify(self, photo: str | os.PathLike, count: int) -> dict:
        """Choose ``photo`` in the file input; the page's answer, the ``count``-th one."""
        self.page.locator("#photos").set_input_files(str(photo))
        self.page.wait_for_function(
            f"() => Number(document.getElementById('result').dataset.count) >= {count}",
            timeout=ANSWER_TIMEOUT_S * 1000,
        )
        return read_result(self.page)


def read_result(page) -> dict:
    """#result's data-* attributes, probabilities parsed."""
    data = page.locator("#result").evaluate("element => ({...element.dataset})")
    if data.get("error"):
        raise PageError(f"The exported page could not answer {data.get('file')}: {data['error']}")
    return data | {"probabilities": json.loads(data.get("probabilities") or "{}")}


@contextlib.contextmanager
def open_page(url: str, chromium_args: Sequence[str] = ()) -> Iterator[ExportedPage]:
    """Headless Chromium (Debian's, driven by Playwright) on ``url``, loaded."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(executable), args=[*CHROMIUM_ARGS, *chromium_args])
        try:
            context = browser.new_context(viewport={"width": 900, "height": 900})
            exported = ExportedPage(context.new_page(), url)
            exported.load()
            yield exported
        finally:
            browser.close()


def chromium_path() -> Path:
    found = CHROMIUM if CHROMIUM.exists() else (shutil.which("chromium") or shutil.which("chromium-browser"))
    if not found:
        raise PageError(f"The web page is checked in Chromium, which is not at {CHROMIUM}: apt-get install chromium.")
    return Path(found)


# --- out of process, for the Classify page ---------------------------------------------------


@dataclass(frozen=True)
class WebExportStatus:
    state: ExportState = ExportState.NONE
    detail: str = ""  # what it is doing now (a download, for one)
    done: int = 0  # test photos checked so far
    total: int = 0
    check: WebCheck | None = None
    reason: str | None = None  # why it is refused or failed, one sentence
    source: str = ""  # what it was made from (_source_of)
    archive_sha256: str = ""
    pid: int | None = None
    updated: float = 0.0

    @property
    def offered(self) -> bool:
        return self.state == ExportState.AGREES

    def to_dict(self) -> dict:
        return asdict(self) | {"check": self.check.to_dict() if self.check else None}

    @classmethod
    def from_dict(cls, data: dict) -> WebExportStatus:
        known = {key: value for key, value in data.items() if key in cls.__dataclass_fields__}
        check = WebCheck.from_dict(known["check"]) if known.get("check") else None
        return cls(**{**known, "state": ExportState(known["state"]), "check": check})


def web_export_status(run_dir: str | os.PathLike) -> WebExportStatus:
    """Where the web page export stands for the run's current model."""
    run_dir = Path(run_dir)
    record = read_json(_exports(run_dir) / STATUS_FILE)
    try:
        status = WebExportStatus.from_dict(record.value) if record.ok else None
    except (KeyError, TypeError, ValueError):
        status = None  # damaged: as if never made
    if status is None:
        return WebExportStatus()
    if status.state.running:
        if pid_alive(status.pid):
            return status
        return replace(status, state=ExportState.FAILED, reason=f"The check stopped early (see {LOG_FILE}).")
    if status.source != _source_of(run_dir):
        return WebExportStatus()  # made from an older model
    return status


def offered_web_export(run_dir: str | os.PathLike) -> Path | None:
    """exports/web.zip when its folder was checked in Chromium, agreed, and is that very zip."""
    run_dir = Path(run_dir)
    status = web_export_status(run_dir)
    archive = _exports(run_dir) / WEB_ARCHIVE
    if status.offered and archive.is_file() and file_sha256(archive) == status.archive_sha256:
        return archive
    return None


def start_web_export(run_dir: str | os.PathLike) -> WebExportStatus:
    """Make and check the web page in a child process (unless running, or checked already)."""
    run_dir = Path(run_dir)
    status = web_export_status(run_dir)
    if status.state.running or offered_web_export(run_dir):
        return status
    if not model_path(run_dir).is_file():
        raise FileNotFoundError(f"Run {run_dir.name} has no saved model to export.")
    folder = _exports(run_dir)
    folder.mkdir(exist_ok=True)
    with open(folder / LOG_FILE, "ab") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "core.serving.web_export", str(run_dir.resolve())],
            cwd=REPO_ROOT,
            env=child_environment(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # survives the page's rerun and a server restart
    status = WebExportStatus(ExportState.STARTING, pid=child.pid, updated=time.time())
    write_json(folder / STATUS_FILE, status.to_dict())
    return status


def make_and_check(run_dir: str | os.PathLike) -> WebExportStatus:
    """The child's work: export the folder, check it in Chromium, zip it when it agrees."""
    run_dir = Path(run_dir)
    folder = _exports(run_dir)
    folder.mkdir(exist_ok=True)
    with FileLock(folder / LOCK_FILE, timeout=0, what=f"the web page export of run {run_dir.name}"):
        status = WebExportStatus(ExportState.EXPORTING, source=_source_of(run_dir), pid=os.getpid())
        say = _status_writer(run_dir)
        say(status)
        try:
            with tempfile.TemporaryDirectory(dir=folder, prefix=".web-") as scratch:
                page = export_web(run_dir, Path(scratch) / "web", _download_progress(say, status))
                status = replace(status, state=ExportState.CHECKING, detail="")
                check = check_web_export(
                    run_dir, page, lambda done, total: say(replace(status, done=done, total=total))
                )
                if check.agrees:
                    status = replace(status, archive_sha256=_zip_folder(page, folder / WEB_ARCHIVE))
        except Exception as error:
            say(replace(status, state=ExportState.FAILED, reason=short_message(f"The web page export failed: {error}")))
            raise
        status = replace(
            status,
            state=ExportState.AGREES if check.agrees else ExportState.DISAGREES,
            done=check.photos,
            total=check.photos,
            check=check,
            reason=None if check.agrees else f"Not offered: {check.describe()}.",
        )
        say(status)
        return status


def _download_progress(say: Callable[[WebExportStatus], None], status: WebExportStatus) -> ProgressCallback:
    last = 0.0

    def progress(done: int, total: int | None) -> None:
        nonlocal last
        if time.monotonic() - last >= 0.5 or done == total:
            last = time.monotonic()
            what = f"Downloading ONNX Runtime Web {web_runtime.VERSION}: {format_size(done)} of {format_size(total)}"
            say(replace(status, detail=what))

    return progress


def _status_writer(run_dir: Path) -> Callable[[WebExportStatus], None]:
    def say(status: WebExportStatus) -> None:
        write_json(_exports(run_dir) / STATUS_FILE, replace(status, updated=time.time()).to_dict())

    return say


def _zip_folder(folder: Path, archive: Path) -> str:
    """The folder as a zip (one top-level folder named after it), written atomically; its sha256."""
    part = archive.with_name(f".{archive.name}.part")
    with zipfile.ZipFile(part, "w", zipfile.ZIP_DEFLATED) as zipped:
        for path in sorted(folder.iterdir()):
            zipped.write(path, f"web/{path.name}")
    os.replace(part, archive)
    return file_sha256(archive)


def _exports(run_dir: Path) -> Path:
    return run_dir / EXPORTS_DIR


def _source_of(run_dir: Path) -> str:
    """Which model.keras, trust.json, novelty.npz and runtime the web page is made from."""
    return f"onnxruntime-web:{web_runtime.VERSION} {source_of(run_dir, run_dir / NOVELTY_FILE)}"


def main(argv: list[str] | None = None) -> int:
    """``python -m core.serving.web_export RUN_DIR``: exit 0 when the page agrees with the model."""
    [run_dir] = sys.argv[1:] if argv is None else argv
    status = make_and_check(run_dir)
    print(f"web: {status.state}: {status.reason or (status.check.describe() if status.check else '')}")
    return 0 if status.offered else 1


if __name__ == "__main__":
    sys.exit(main())
