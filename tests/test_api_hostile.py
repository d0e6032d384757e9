"""Hostile input, second round: slow clients, strange Host headers, Starlette's own errors, and
numbers on the command line that make no sense.

Servers are real uvicorns on a free 127.0.0.1 port (core.serving.api.server_config, the one
`python -m core serve` runs), with small timeouts so a stalled client is dropped in seconds.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
from test_inference import install_trained_run, validation_files

from core import cli

# --- numbers on the command line ------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, option",
    [
        (["predict", "RUN", "a.jpg", "--confidence-threshold", "nan"], "--confidence-threshold"),
        (["predict", "RUN", "a.jpg", "--confidence-threshold", "inf"], "--confidence-threshold"),
        (["predict", "RUN", "a.jpg", "--confidence-threshold", "1.5"], "--confidence-threshold"),
        (["predict", "RUN", "a.jpg", "--confidence-threshold", "-0.1"], "--confidence-threshold"),
        (["predict", "RUN", "a.jpg", "--novelty-threshold", "nan"], "--novelty-threshold"),
        (["predict", "RUN", "a.jpg", "--novelty-threshold", "-1"], "--novelty-threshold"),
        (["serve", "RUN", "--port", "0"], "--port"),
        (["serve", "RUN", "--port", "70000"], "--port"),
        (["serve", "RUN", "--port", "nan"], "--port"),
        (["train", "--data", "D", "--arch", "cnn", "--epochs", "-1"], "--epochs"),
        (["train", "--data", "D", "--arch", "cnn", "--image-size", "0"], "--image-size"),
        (["train", "--data", "D", "--arch", "cnn", "--batch-size", "0"], "--batch-size"),
        (["train", "--data", "D", "--arch", "cnn", "--lr", "nan"], "--lr"),
        (["train", "--data", "D", "--arch", "cnn", "--lr", "-0.001"], "--lr"),
        (["train", "--data", "D", "--arch", "cnn", "--subset", "-3"], "--subset"),
        (["train", "--data", "D", "--arch", "cnn", "--cpus", "inf"], "--cpus"),
        (["train", "--data", "D", "--arch", "cnn", "--gpus", "-1"], "--gpus"),
        (["train", "--data", "D", "--arch", "cnn", "--patience", "-1"], "--patience"),
        (["sweep", "--data", "D", "--arch", "cnn", "--trials", "0"], "--trials"),
        (["sweep", "--data", "D", "--arch", "cnn", "--epochs", "inf"], "--epochs"),
        (["sweep", "--data", "D", "--arch", "cnn", "--cpus", "nan"], "--cpus"),
        (["sweep", "--data", "D", "--arch", "cnn", "--concurrent", "-2"], "--concurrent"),
        (["sweep", "--data", "D", "--arch", "cnn", "--image-size", "-5"], "--image-size"),
    ],
)
def test_a_number_that_makes_no_sense_is_one_sentence_naming_its_option(tmp_path, capsys, argv, option):
    argv = [{"RUN": str(tmp_path / "run"), "D": str(tmp_path / "data")}.get(arg, arg) for arg in argv]

    assert cli.main(argv) == cli.EXIT_USAGE
    out, err = capsys.readouterr()
    assert out == "", out  # refused by the parser, before any run was read
    [line] = err.strip().splitlines()
    assert f"argument {option}: '{argv[argv.index(option) + 1]}'" in line, line


def test_sensible_numbers_still_parse():
    args = cli.build_parser().parse_args(
        ["predict", "RUN", "a.jpg", "--confidence-threshold", "1", "--novelty-threshold", "0"]
    )
    assert (args.confidence_threshold, args.novelty_threshold) == (1.0, 0.0)
    assert cli.build_parser().parse_args(["serve", "RUN", "--port", "65535"]).port == 65535
    train = cli.build_parser().parse_args(["train", "--data", "D", "--arch", "cnn", "--lr", "3e-4", "--subset", "0"])
    assert (train.lr, train.subset) == (3e-4, 0)


# --- a real server with small timeouts ------------------------------------------------------

HEADER_TIMEOUT, BODY_TIMEOUT, MAX_CONNECTIONS = 2.0, 3.0, 8
DROPPED_WITHIN = 30  # seconds; the bound, far above the timeouts here


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def api_run(tmp_path_factory) -> Path:
    return install_trained_run(tmp_path_factory, tmp_path_factory.mktemp("hostile_home"))


@pytest.fixture(scope="module")
def server(api_run):
    """(base url, port) of `python -m core serve`'s uvicorn, in a thread, with small timeouts."""
    import uvicorn

    from core.serving.api import ServeLimits, create_app, server_config

    port = free_port()
    limits = ServeLimits(
        header_timeout=HEADER_TIMEOUT, body_timeout=BODY_TIMEOUT, keep_alive=1, max_connections=MAX_CONNECTIONS
    )
    app = create_app(api_run, allowed_hosts=["pawlab.lan"], limits=limits)
    running = uvicorn.Server(server_config(app, "127.0.0.1", port, limits))
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not running.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running.started
    yield f"http://127.0.0.1:{port}", port
    running.should_exit = True
    thread.join(timeout=10)


def stalled_client(port: int, sent: bytes) -> socket.socket:
    client = socket.create_connection(("127.0.0.1", port))
    client.sendall(sent)
    return client


def read_until_closed(client: socket.socket, within: float) -> bytes:
    """What the server sent before it closed the connection; fails if it is still open after ``within``."""
    client.settimeout(within)
    received = b""
    try:
        while chunk := client.recv(65536):
            received += chunk
    except TimeoutError:
        pytest.fail(f"the server kept a stalled connection open for {within} s (sent {received[:200]!r})")
    except ConnectionResetError:
        pass
    finally:
        client.close()
    return received


def trickle(client: socket.socket, stop: threading.Event) -> None:
    """One more header byte a second, as a slowloris client sends."""
    while not stop.wait(1.0):
        try:
            client.sendall(b"x")
        except OSError:
            return


HEADERS_BEGUN = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
BODY_BEGUN = (
    b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\n"
    b"Content-Length: 100000\r\n\r\n--x\r\n"
)


def test_stalled_clients_are_dropped_while_other_requests_are_served(server):
    base_url, port = server
    trickling, silent, slow_body = (stalled_client(port, sent) for sent in (HEADERS_BEGUN, b"", BODY_BEGUN))
    stop = threading.Event()
    threading.Thread(target=trickle, args=(trickling, stop), daemon=True).start()
    start = time.monotonic()
    try:
        for _ in range(3):  # meanwhile, everyone else is answered at once
            assert httpx.get(f"{base_url}/healthz", timeout=5).status_code == 200
        answers = [read_until_closed(client, DROPPED_WITHIN) for client in (trickling, silent, slow_body)]
    finally:
        stop.set()
    assert time.monotonic() - start < DROPPED_WITHIN
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
        assert b'"code":"request_timeout"' in answer, answer
    assert httpx.get(f"{base_url}/healthz", timeout=5).status_code == 200


def test_too_many_connections_are_refused_in_json_until_they_go(server):
    base_url, port = server
    idle = [stalled_client(port, b"") for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.3)
        refused = httpx.get(f"{base_url}/healthz", timeout=5)
        assert refused.status_code == 503
        assert set(refused.json()) == {"error", "code"} and refused.json()["code"] == "busy"
    finally:
        for client in idle:
            client.close()
    deadline = time.monotonic() + 10
    while (answer := httpx.get(f"{base_url}/healthz", timeout=5)).status_code == 503:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert answer.status_code == 200


# --- Host headers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host, allowed",
    [
        ("127.0.0.1", True),
        ("localhost:8000", True),
        ("[::1]:1234", True),
        ("PawLab.lan:80", True),
        ("evil.example", False),
        ("127.0.0.1.evil.example", False),
        ("localhost.evil.example:8000", False),
        ("", False),
    ],
)
def test_only_the_hosts_the_server_was_started_for_are_answered(server, host, allowed):
    base_url, _ = server
    response = httpx.get(f"{base_url}/healthz", headers={"Host": host}, timeout=5)

    if allowed:
        assert response.status_code == 200, response.text
    else:
        assert response.status_code == 400
        assert set(response.json()) == {"error", "code"} and response.json()["code"] == "unknown_host"


def test_binding_beyond_loopback_warns_that_there_is_no_authentication(api_run, monkeypatch, capsys, caplog):
    import uvicorn

    from core.serving import api

    configs = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: configs.append(self.config))
    # uvicorn's log handlers would keep writing to the stderr capsys closes after this test.
    monkeypatch.setattr(uvicorn.Config, "configure_logging", lambda self: None)
    api.serve(api_run, host="127.0.0.1", port=free_port())
    assert capsys.readouterr().err == ""

    api.serve(api_run, host="0.0.0.0", port=free_port(), allowed_hosts=["pawlab.lan"])
    [warning] = capsys.readouterr().err.strip().splitlines()
    assert "no authentication" in warning and "0.0.0.0" in warning
    assert any("no authentication" in record.getMessage() for record in caplog.records)
    assert [config.host for config in configs] == ["127.0.0.1", "0.0.0.0"]


# --- every error is {error, code} -----------------------------------------------------------


@pytest.fixture
def few_photos(monkeypatch):
    monkeypatch.setenv("PAWLAB_MAX_DROP_PHOTOS", "5")


def test_thousands_of_parts_are_too_many_photos(server, few_photos):
    base_url, _ = server
    parts = [("files", (f"{n}.jpg", b"x")) for n in range(3000)]

    response = httpx.post(f"{base_url}/v1/predict", files=parts, timeout=30)

    assert response.status_code == 413, response.text
    assert response.json()["code"] == "too_many_photos" and "at most 5" in response.json()["error"]


@pytest.mark.parametrize(
    "case, status, code",
    [
        ("long file name", 400, "bad_request"),
        ("no boundary", 400, "bad_request"),
        ("many text fields", 400, "bad_request"),
        ("unknown path", 404, "not_found"),
        ("wrong method", 405, "method_not_allowed"),
    ],
)
def test_starlettes_own_refusals_are_error_and_code(server, case, status, code):
    base_url, _ = server
    url = f"{base_url}/v1/predict"
    response = {
        "long file name": lambda: httpx.post(url, files=[("files", ("a" * 5000 + ".jpg", b"\xff\xd8\xff"))]),
        "no boundary": lambda: httpx.post(url, content=b"abc", headers={"content-type": "multipart/form-data"}),
        "many text fields": lambda: httpx.post(
            url, data={f"field{n}": "x" for n in range(3000)}, files=[("files", ("a.jpg", b"x"))]
        ),
        "unknown path": lambda: httpx.get(f"{base_url}/nope"),
        "wrong method": lambda: httpx.get(url),
    }[case]()

    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "code"} and body["code"] == code
    assert body["error"].endswith(".") and "\n" not in body["error"]


def test_head_healthz_is_200(server):
    base_url, _ = server
    assert httpx.head(f"{base_url}/healthz", timeout=5).status_code == 200


def test_a_photo_is_still_classified(server, api_run):
    base_url, _ = server
    photo = Path(validation_files(api_run)[0])

    response = httpx.post(f"{base_url}/v1/predict", files=[("files", (photo.name, photo.read_bytes()))], timeout=60)

    assert response.status_code == 200
    assert response.json()[0]["label"] in ("circles", "squares")
