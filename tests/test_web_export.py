"""The web page export: a folder a static server serves, classifying offline in Chromium like PawLab.

The page needs ONNX Runtime Web; tests never fetch it: they use the folder
named by PAWLAB_WEB_RUNTIME (.ci/run unpacks ``npm pack onnxruntime-web@VERSION``
there) and are skipped without it, or fail when CI=true. They drive Debian's
/usr/bin/chromium through Playwright, like tests/browser/.
"""

from __future__ import annotations

import http.server
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import IN_CI
from PIL import Image
from test_answers import strangers, transfer_run, unseen_pets  # noqa: F401 (transfer_run: a fixture)
from test_inference import install_trained_run

pytestmark = pytest.mark.browser

TEMPERATURE = 2.5
CONFIDENCE_THRESHOLD = 0.9
HOSTILE_NAME = "<img src=x onerror=alert(1)>"


def _unavailable(message: str):
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def runtime_dir() -> Path:
    """The unpacked onnxruntime-web dist/ folder that PAWLAB_WEB_RUNTIME names."""
    from core.serving import web_runtime

    named = os.environ.get(web_runtime.ENV_VAR, "")
    if not named or not (Path(named) / "ort.wasm.min.js").is_file():
        _unavailable(f"ONNX Runtime Web not found (set {web_runtime.ENV_VAR} to an unpacked onnxruntime-web dist/)")
    if not Path("/usr/bin/chromium").exists():
        _unavailable("/usr/bin/chromium not found; the web export is checked in Debian's chromium")
    return Path(named)


@pytest.fixture
def web_run(tmp_path_factory, pawlab_home, runtime_dir, monkeypatch) -> Path:
    """The tiny trained run with a temperature and an "unsure" threshold that both matter."""
    monkeypatch.setenv("PAWLAB_WEB_RUNTIME", str(runtime_dir))
    run_dir = install_trained_run(tmp_path_factory, pawlab_home)
    trust = {"temperature": TEMPERATURE, "confidence_threshold": CONFIDENCE_THRESHOLD}
    (run_dir / "trust.json").write_text(json.dumps(trust))
    return run_dir


def screenshot(page, name: str) -> Path:
    from browser.conftest import screenshot as save

    return save(page, name, full_page=True)


def predict_cli(run_dir: Path, photos: list[str]) -> list[dict]:
    """What ``python -m core predict`` answers, one JSON line per photo."""
    done = subprocess.run(
        [sys.executable, "-m", "core", "predict", str(run_dir), *photos],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ | {"TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


# --- the page answers like PawLab, offline ----------------------------------------------------


def test_the_page_answers_like_predict_offline_on_photos_never_trained_on(web_run, tmp_path):
    from core.runs.run_split import run_splits
    from core.runs.store import read_config
    from core.serving.web_export import WEB_TOLERANCE, check_web_export, export_web, open_page, serve_folder

    folder = export_web(web_run, tmp_path / "web")
    test_photos = [sample.path for sample in run_splits(web_run, read_config(web_run)).test]
    trained_on = {sample.path for sample in run_splits(web_run, read_config(web_run)).train}
    assert test_photos and not set(test_photos) & trained_on

    check = check_web_export(web_run, folder)

    assert check.agrees, check.describe()
    assert check.agreement.photos == len(test_photos) and check.reduced.photos == 0  # 48 px photos: exact
    assert check.agreement.same_label == len(test_photos) and check.same_answer == len(test_photos)
    assert check.agreement.max_difference <= WEB_TOLERANCE
    assert not check.foreign and not check.errors
    origin = check.requests[0]
    assert all(url.startswith(origin) for url in check.requests)
    assert {url.removeprefix(origin) for url in check.requests} >= {"", "model.onnx", "ort-wasm-simd-threaded.wasm"}

    # The same photos through the page, answer by answer, against the CLI.
    expected = predict_cli(web_run, test_photos)
    with serve_folder(folder) as url, open_page(url) as page:
        answers = [page.classify(photo, count) for count, photo in enumerate(test_photos, start=1)]
        screenshot(page.page, "web-export-photo")
    for want, got in zip(expected, answers):
        assert got["file"] == Path(want["file"]).name
        assert (got["label"], got["answer"]) == (want["label"], want["answer"])
        assert got["abstained"] == (want["abstained"] or "")
        for name, probability in want["probabilities"].items():
            assert abs(got["probabilities"][name] - probability) <= WEB_TOLERANCE
    assert "unsure" in {want["abstained"] for want in expected}  # T = 2.5, a 90% threshold: "Not sure" is tested


def test_a_request_to_another_host_or_a_changed_answer_fails_the_check(web_run, tmp_path):
    from core.serving.web_export import check_web_export, export_web

    folder = export_web(web_run, tmp_path / "web")
    page = (folder / "index.html").read_text()
    # Without its Content-Security-Policy the page could ask anyone; the check must notice.
    leaky = page.split("<meta http-equiv")[0] + page.split("'self'\">", 1)[1]
    leaky = leaky.replace("</body>", '<img src="http://203.0.113.9/pixel.png" alt=""></body>')
    (folder / "index.html").write_text(leaky)
    check = check_web_export(web_run, folder)
    assert check.foreign == ["http://203.0.113.9/pixel.png"] and not check.agrees
    assert "it asked another host for http://203.0.113.9/pixel.png" in check.describe()

    (folder / "index.html").write_text(page)
    config = json.loads((folder / "pawlab.json").read_text())
    config["classes"].reverse()  # the page names the other class
    (folder / "pawlab.json").write_text(json.dumps(config))
    check = check_web_export(web_run, folder)
    assert not check.foreign and not check.agrees
    assert check.agreement.same_label < check.agreement.photos


def test_a_class_name_with_html_shows_as_text(web_run, tmp_path):
    from core.runs.run_split import run_splits
    from core.runs.store import read_config
    from core.serving.web_export import export_web, open_page, serve_folder

    facts = json.loads((web_run / "facts.json").read_text())
    facts["classes"] = [HOSTILE_NAME, "squares"]
    (web_run / "facts.json").write_text(json.dumps(facts))
    folder = export_web(web_run, tmp_path / "web")
    photo = run_splits(web_run, read_config(web_run)).test[0].path

    with serve_folder(folder) as url, open_page(url) as page:
        dialogs = []
        page.page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        answer = page.classify(photo, 1)
        classes_text = page.page.locator("#classes").inner_text()
        table_text = page.page.locator("#probabilities").inner_text()
        images = page.page.locator("img").count()
        screenshot(page.page, "web-export-hostile-class")

    assert HOSTILE_NAME in classes_text and HOSTILE_NAME in table_text
    assert HOSTILE_NAME in answer["probabilities"]
    assert images == 0 and not dialogs
    assert "\\<img src=x onerror=alert\\(1\\)\\>" in (folder / "README.md").read_text()  # escaped Markdown


# --- the camera ---------------------------------------------------------------------------------


def write_y4m(path: Path, rgb: np.ndarray, frames: int = 30) -> Path:
    """A YUV4MPEG2 video (4:2:0, BT.601 limited range) showing ``rgb`` still, for Chromium's fake camera."""
    height, width, _ = rgb.shape
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128 + 0.439 * r - 0.368 * g - 0.071 * b

    def quarter(plane):  # 2x2 averages: 4:2:0 chroma
        return plane.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3))

    planes = [np.clip(np.round(p), 0, 255).astype(np.uint8).tobytes() for p in (y, quarter(u), quarter(v))]
    header = f"YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\n".encode()
    path.write_bytes(header + b"".join(b"FRAME\n" + b"".join(planes) for _ in range(frames)))
    return path


def test_a_fake_camera_gets_live_answers_at_5_fps_or_more(web_run, tmp_path):
    from core.runs.run_split import run_splits
    from core.runs.store import read_config
    from core.serving.inference import Predictor
    from core.serving.web_export import export_web, open_page, serve_folder

    folder = export_web(web_run, tmp_path / "web")
    photo = run_splits(web_run, read_config(web_run)).test[0].path
    frame = np.asarray(Image.open(photo).convert("RGB").resize((640, 480), Image.Resampling.BILINEAR))
    video = write_y4m(tmp_path / "camera.y4m", frame)
    camera_args = [
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={video}",
    ]
    expected = Predictor.from_run(web_run).predict([photo])[0]

    with serve_folder(folder) as url, open_page(url, camera_args) as page:
        page.page.select_option("#facing", "user")  # the front camera: the fake one answers either
        page.page.locator("#camera").click()
        page.page.wait_for_function("() => document.getElementById('result').dataset.fps", timeout=60_000)
        time.sleep(3)  # a few seconds of frames for a steady rate
        live = page.page.locator("#result").evaluate("element => ({...element.dataset})")
        screenshot(page.page, "web-export-camera")
        page.page.locator("#camera").click()  # stop
        stopped = page.page.locator("#result").get_attribute("data-fps")

    print(f"camera: {live['fps']} frames per second, {os.cpu_count()} cores")
    assert live["file"] == "camera" and int(live["count"]) >= 10
    assert float(live["fps"]) >= 5, live
    assert live["label"] == expected.label
    assert stopped is None  # no rate once the camera is off


# --- the unknown-photo check, on real photos ------------------------------------------------


def test_a_transfer_run_says_none_of_these_in_the_browser_as_in_python(
    transfer_run,  # noqa: F811
    cats_and_dogs,
    keras_home,
    runtime_dir,
    tmp_path,
    monkeypatch,
):
    from core.models.novelty import NoveltyDetector
    from core.runs.run_split import run_splits
    from core.runs.store import read_config
    from core.serving.web_export import REFERENCE_FILE, check_web_export, export_web

    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    monkeypatch.setenv("PAWLAB_WEB_RUNTIME", str(runtime_dir))
    folder = export_web(transfer_run, tmp_path / "web")
    config = json.loads((folder / "pawlab.json").read_text())
    reference = NoveltyDetector.load(transfer_run / "novelty.npz").reference
    assert config["novelty"]["count"] == len(reference) and config["novelty"]["k"] == 5
    assert (folder / REFERENCE_FILE).stat().st_size == reference.size * 2  # float16, as novelty.npz keeps it
    odd = []
    for name, data in strangers():
        (tmp_path / name).write_bytes(data)
        odd.append(str(tmp_path / name))
    pets = [sample.path for sample in run_splits(transfer_run, read_config(transfer_run)).test]
    pets += [str(path) for path in unseen_pets(cats_and_dogs)]

    check = check_web_export(transfer_run, folder, photos=odd + pets)

    assert check.agrees, check.describe()
    assert check.same_answer == check.photos == len(odd) + len(pets)  # strangers: "unknown" both
    assert check.max_distance_difference is not None and check.max_distance_difference < 5e-3
    assert check.agreement.photos >= len(odd)  # PNGs: decoded exactly as Pillow does
    print(check.describe())


# --- the runtime ---------------------------------------------------------------------------------


def test_a_missing_runtime_is_one_sentence_naming_what_to_fetch(web_run, tmp_path, monkeypatch):
    import core.data.download
    from core.serving import web_runtime
    from core.serving.web_export import export_web

    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PAWLAB_WEB_RUNTIME", str(empty))
    with pytest.raises(web_runtime.WebRuntimeMissingError) as named:
        export_web(web_run, tmp_path / "web")
    # Nothing set, and no network: the download fails at once on a closed loopback port.
    monkeypatch.delenv("PAWLAB_WEB_RUNTIME")
    monkeypatch.setattr(web_runtime, "TARBALL_URL", f"http://127.0.0.1:{closed_port()}/onnxruntime-web.tgz")
    monkeypatch.setattr(core.data.download, "RETRY_WAIT_S", 0)
    with pytest.raises(web_runtime.WebRuntimeMissingError) as offline:
        export_web(web_run, tmp_path / "web")

    for error, why in ((named, f"PAWLAB_WEB_RUNTIME={empty} has no ort.wasm.min.js"), (offline, "could not be")):
        message = str(error.value)
        assert message.startswith("The web page needs ONNX Runtime Web 1.31.1, but ") and why in message
        assert "`npm pack onnxruntime-web@1.31.1`" in message and "PAWLAB_WEB_RUNTIME" in message
        assert message.endswith(".") and "\n" not in message and ". " not in message  # one sentence
    assert not (tmp_path / "web").exists()


def test_the_runtime_is_downloaded_once_with_progress_and_its_integrity_checked(runtime_dir, monkeypatch):
    from core.serving import web_runtime

    monkeypatch.delenv("PAWLAB_WEB_RUNTIME", raising=False)
    tarball = package_tarball(runtime_dir)
    with serve_bytes({"/good.tgz": tarball, "/bad.tgz": tarball[:-1] + bytes([tarball[-1] ^ 1])}) as (url, requests):
        monkeypatch.setattr(web_runtime, "TARBALL_BYTES", len(tarball))
        monkeypatch.setattr(web_runtime, "TARBALL_INTEGRITY", web_runtime.integrity_of(tarball))
        monkeypatch.setattr(web_runtime, "TARBALL_URL", url + "/bad.tgz")
        with pytest.raises(web_runtime.WebRuntimeMissingError, match="is not the registry's onnxruntime-web@1.31.1"):
            web_runtime.runtime_folder()
        assert not list(web_runtime.cache_folder().glob("*.wasm"))

        monkeypatch.setattr(web_runtime, "TARBALL_URL", url + "/good.tgz")
        seen = []
        folder = web_runtime.runtime_folder(progress=lambda done, total: seen.append((done, total)))
        assert folder == web_runtime.cache_folder() and seen[-1] == (len(tarball), len(tarball))
        assert sorted(path.name for path in folder.iterdir()) == sorted(web_runtime.FILES)  # no tarball kept
        assert web_runtime.runtime_folder() == folder
        assert requests == ["/bad.tgz", "/good.tgz"]  # the second call downloaded nothing


def test_a_runtime_of_another_version_is_refused(runtime_dir, tmp_path, monkeypatch):
    from core.serving import web_runtime

    other = tmp_path / "package" / "dist"
    other.mkdir(parents=True)
    for name in web_runtime.FILES:
        (other / name).write_bytes((runtime_dir / name).read_bytes())
    (other / "ort.wasm.min.js").write_text("// another version")
    monkeypatch.setenv("PAWLAB_WEB_RUNTIME", str(tmp_path / "package"))  # the package folder will do too
    with pytest.raises(web_runtime.WebRuntimeMissingError, match="holds a ort.wasm.min.js that is not version 1.31.1"):
        web_runtime.runtime_folder()


def test_an_existing_out_folder_is_refused(web_run, tmp_path):
    from core.serving.web_export import export_web

    out = tmp_path / "web"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="exists already"):
        export_web(web_run, out)
    assert [path.name for path in out.iterdir()] == ["mine.txt"]
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".web-")]  # no leftovers


# --- offered by the Classify page only once checked ---------------------------------------------


def test_the_classify_page_prepares_checks_and_then_offers_the_web_page(web_run, monkeypatch):
    from test_classify_page import classify_page_alone

    from core.serving.export_check import ExportState
    from core.serving.web_export import offered_web_export, web_export_status
    from pages._classify.export import EXPORT_TAB

    app = classify_page_alone(tab=EXPORT_TAB)
    assert not [b for b in app.get("download_button") if "web" in b.proto.label]
    app.button(key="web_page_prepare").click().run()
    assert not app.exception and not app.error
    deadline = time.monotonic() + 300
    while web_export_status(web_run).state.running and time.monotonic() < deadline:
        time.sleep(1)
    status = web_export_status(web_run)
    log = (web_run / "exports" / "web.log").read_text()
    assert status.state == ExportState.AGREES, (status, log[-3000:])
    archive = offered_web_export(web_run)
    with zipfile.ZipFile(archive) as zipped:
        names = set(zipped.namelist())
    assert {"web/index.html", "web/app.js", "web/model.onnx", "web/pawlab.json", "web/README.md"} <= names
    assert "web/MODEL_CARD.md" in names and "web/ort-wasm-simd-threaded.wasm" in names

    app.run()
    assert [b.proto.label for b in app.get("download_button") if "web" in b.proto.label] == ["⬇️ web.zip"]
    assert any(c.value.startswith("✅ Checked in Chromium, same label on") for c in app.caption)
    assert not [b for b in app.button if b.key == "web_page_prepare"]

    with zipfile.ZipFile(archive, "a") as zipped:  # changed after its check: withdrawn
        zipped.writestr("web/extra.js", "alert(1)")
    assert offered_web_export(web_run) is None


def test_a_web_page_that_disagrees_is_not_offered(web_run, monkeypatch):
    from test_classify_page import classify_page_alone

    import core.serving.web_export as web_export
    from core.serving.export_check import Agreement, ExportState
    from pages._classify.export import EXPORT_TAB

    check = web_export.WebCheck(Agreement(4, 3, 0.4), Agreement(0, 0, 0.0, 0.3), 3, None)
    refused = web_export.WebExportStatus(ExportState.DISAGREES, check=check, reason=f"Not offered: {check.describe()}.")
    monkeypatch.setattr(web_export, "web_export_status", lambda run_dir: refused)
    monkeypatch.setattr(web_export, "offered_web_export", lambda run_dir: None)

    app = classify_page_alone(tab=EXPORT_TAB)
    assert not [b for b in app.get("download_button") if "web" in b.proto.label]
    assert any("Not offered: in Chromium, same label on 3 of 4" in w.value.replace("\\", "") for w in app.warning)
    assert [b.label for b in app.button if b.key == "web_page_prepare"] == ["Prepare again"]


# --- helpers ---------------------------------------------------------------------------------


def closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the block ends


def package_tarball(dist: Path) -> bytes:
    """An npm-like .tgz holding package/dist/<the runtime files>."""
    from core.serving import web_runtime

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name in web_runtime.FILES:
            archive.add(dist / name, arcname=f"package/dist/{name}")
    return buffer.getvalue()


class serve_bytes:
    """A loopback server answering fixed bytes by path; records the paths asked for."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.requests = files, []

    def __enter__(self):
        files, requests = self.files, self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                requests.append(self.path)
                body = files.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}", self.requests

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
