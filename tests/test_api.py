"""The HTTP API over a real loopback socket: the predict lines, the page's limits, 4xx not 500."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from test_inference import install_trained_run, sparse_png, validation_files, write_bad_and_unusual_files

REPO = Path(__file__).resolve().parent.parent
MAX_PHOTOS = 5
MAX_BYTES = 200_000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def api_run(tmp_path_factory) -> Path:
    return install_trained_run(tmp_path_factory, tmp_path_factory.mktemp("api_home"))


@pytest.fixture(scope="module")
def base_url(api_run):
    """uvicorn serving create_app(run) in a thread, on a free 127.0.0.1 port."""
    import uvicorn

    from core.serving.api import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(api_run), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(autouse=True)
def limits(monkeypatch):
    """Small drop limits (read per request, as the page reads them)."""
    monkeypatch.setenv("PAWLAB_MAX_DROP_PHOTOS", str(MAX_PHOTOS))
    monkeypatch.setenv("PAWLAB_MAX_DROP_BYTES", str(MAX_BYTES))


def post_files(base_url: str, files: list[tuple[str, bytes]], **kwargs) -> httpx.Response:
    return httpx.post(f"{base_url}/v1/predict", files=[("files", item) for item in files], timeout=60, **kwargs)


def test_healthz_names_the_run_and_its_limits(base_url, api_run):
    response = httpx.get(f"{base_url}/healthz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "run": api_run.name,
        "classes": ["circles", "squares"],
        "image_size": 32,
        "max_photos": MAX_PHOTOS,
        "max_bytes": MAX_BYTES,
    }


def test_one_photo_gets_the_cli_line(base_url, api_run):
    from core.serving.inference import Predictor

    path = validation_files(api_run)[0]
    response = post_files(base_url, [(Path(path).name, Path(path).read_bytes())])

    assert response.status_code == 200
    [line] = response.json()
    [expected] = [p.to_json() for p in Predictor.from_run(api_run).predict([path])]
    assert set(line) == set(expected)
    assert line["file"] == Path(path).name and line["label"] == expected["label"]
    assert line["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-6)


def test_many_photos_answer_in_order_and_bad_files_get_their_own_error(base_url, api_run, tmp_path):
    good = [Path(p) for p in validation_files(api_run)[:3]]
    bad = write_bad_and_unusual_files(tmp_path)
    sent = [
        (good[0].name, good[0].read_bytes()),
        ("notes.jpg", bad["bad_text"].read_bytes()),
        (good[1].name, good[1].read_bytes()),
        ("empty.jpg", b""),
        ("bomb.png", sparse_png(20000, 20000)),
    ]

    response = post_files(base_url, sent)

    assert response.status_code == 200
    lines = response.json()
    assert [line["file"] for line in lines] == [name for name, _ in sent]
    assert [("error" in line) for line in lines] == [False, True, False, True, True]
    assert "not an image" in lines[1]["error"] and "empty" in lines[3]["error"]
    assert "too large" in lines[4]["error"] or "pixel limit" in lines[4]["error"]
    assert all(line["label"] in ("circles", "squares") for line in lines if "error" not in line)


@pytest.mark.parametrize(
    "case", ["no body", "empty form", "text field", "no file name", "json body", "broken multipart"]
)
def test_bad_requests_are_a_4xx_with_a_sentence(base_url, case):
    url = f"{base_url}/v1/predict"
    response = {
        "no body": lambda: httpx.post(url),
        "empty form": lambda: httpx.post(url, files=[("other", ("a.jpg", b"x"))]),
        "text field": lambda: httpx.post(url, data={"files": "not a file"}, files=[("other", ("a.jpg", b"x"))]),
        # What a browser sends for an empty file input: a part without a file name is not a file.
        "no file name": lambda: httpx.post(url, files=[("files", ("", b"\xff\xd8\xff"))]),
        "json body": lambda: httpx.post(url, json={"files": ["cat.jpg"]}),
        "broken multipart": lambda: httpx.post(
            url, content=b"--x\r\nnonsense", headers={"content-type": "multipart/form-data; boundary=x"}
        ),
    }[case]()

    expected = {
        "no body": (415, "not_multipart"),
        "json body": (415, "not_multipart"),
        "empty form": (400, "no_files"),
        "text field": (400, "no_files"),
        "no file name": (400, "no_files"),
        "broken multipart": (400, None),
    }[case]
    assert response.status_code == expected[0], response.text
    body = response.json()
    assert body["error"] and body["code"] in ("no_files", "bad_request", "not_multipart")
    assert expected[1] is None or body["code"] == expected[1]


def test_too_many_photos_is_413(base_url, api_run):
    photo = Path(validation_files(api_run)[0])
    response = post_files(base_url, [(f"{n}.jpg", photo.read_bytes()) for n in range(MAX_PHOTOS + 1)])

    assert response.status_code == 413
    assert response.json()["code"] == "too_many_photos"
    assert f"at most {MAX_PHOTOS}" in response.json()["error"]


def test_oversize_requests_are_413_before_or_while_reading(base_url):
    big = os.urandom(MAX_BYTES + 50_000)  # over the limit plus the multipart allowance

    declared = post_files(base_url, [("big.jpg", big)])
    assert declared.status_code == 413 and declared.json()["code"] == "too_large"

    def chunks():  # no Content-Length: the limit is counted while the body streams in
        yield (
            b'--x\r\nContent-Disposition: form-data; name="files"; filename="big.jpg"\r\n'
            b"Content-Type: image/jpeg\r\n\r\n"
        )
        for start in range(0, len(big), 16_384):
            yield big[start : start + 16_384]
        yield b"\r\n--x--\r\n"

    streamed = httpx.post(
        f"{base_url}/v1/predict", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert streamed.status_code == 413 and streamed.json()["code"] == "too_large"

    # Under the body allowance but over the photo bytes: the page's own check_drop sentence.
    photos = post_files(
        base_url, [("a.jpg", os.urandom(MAX_BYTES // 2 + 1000)), ("b.jpg", os.urandom(MAX_BYTES // 2 + 1000))]
    )
    assert photos.status_code == 413 and "PawLab classifies at most" in photos.json()["error"]


def test_odd_files_and_names_are_never_a_500(base_url):
    sent = [
        ("../../etc/passwd", os.urandom(3000)),
        ("x.jpg", b"\xff\xd8\xff" + os.urandom(500)),
        ('名前 "quoted".png', b"\x89PNG\r\n\x1a\n" + os.urandom(200)),
        ("x.gif", b"GIF89a"),
    ]

    response = post_files(base_url, sent)

    assert response.status_code == 200
    lines = response.json()
    assert len(lines) == len(sent) and all("error" in line for line in lines)
    assert lines[0]["file"] == "passwd"  # a name, never a path


def test_openapi_page_documents_predict(base_url):
    schema = httpx.get(f"{base_url}/openapi.json").json()
    operation = schema["paths"]["/v1/predict"]["post"]

    assert "multipart/form-data" in operation["requestBody"]["content"]
    assert {"200", "400", "413", "415"} <= set(operation["responses"])
    assert httpx.get(f"{base_url}/docs").status_code == 200


def test_python_m_core_serve_listens_on_loopback(api_run):
    """The README's command: a real process on 127.0.0.1, stopped by its id."""
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    child = subprocess.Popen(
        [sys.executable, "-m", "core", "serve", str(api_run), "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert child.poll() is None, child.stderr.read().decode()[-2000:]
                time.sleep(0.5)
        assert health.json()["run"] == api_run.name
    finally:
        child.terminate()
        child.wait(timeout=30)


def test_a_run_without_a_model_cannot_be_served(api_run, tmp_path, capsys):
    import shutil

    from core import cli

    copy = tmp_path / api_run.name
    shutil.copytree(api_run, copy)
    (copy / "model.keras").unlink()
    assert cli.main(["serve", str(copy), "--port", str(free_port())]) == 2
    assert "has no saved model" in capsys.readouterr().out


@pytest.mark.parametrize("held", ["parsing the form", "classifying"])
def test_healthz_answers_while_a_request_is_parsed_and_classified(base_url, api_run, monkeypatch, held):
    """The event loop only moves bytes: a form being parsed, or photos being classified, in a
    worker thread never hold up /healthz (parsed on the loop, a large upload stalled it for seconds)."""
    import core.serving.api as api

    entered, release = threading.Event(), threading.Event()

    def hold(function):
        def held_function(*args, **kwargs):
            entered.set()
            assert release.wait(timeout=120)
            return function(*args, **kwargs)

        return held_function

    monkeypatch.setattr(api, "PARSE_EVERY_BYTES", 1024)  # a small photo is parsed as it streams in
    if held == "parsing the form":
        monkeypatch.setattr(api.PhotoForm, "write", hold(api.PhotoForm.write))
    else:
        monkeypatch.setattr(api, "classify", hold(api.classify))
    photo = Path(validation_files(api_run)[0])
    answers: list[httpx.Response] = []
    posting = threading.Thread(
        target=lambda: answers.append(post_files(base_url, [(photo.name, photo.read_bytes() + b"\0" * 4096)]))
    )
    posting.start()
    try:
        assert entered.wait(timeout=60)
        health = httpx.get(f"{base_url}/healthz", timeout=30)  # before the held request goes on
        assert health.status_code == 200 and not answers
    finally:
        release.set()
        posting.join(timeout=60)
    assert answers[0].status_code == 200 and answers[0].json()[0]["label"] in ("circles", "squares")
