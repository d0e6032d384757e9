"""How the HTTP API holds up under a bounded load: 8 clients, 500 requests, real photos.

    python benchmarks/bench_api.py [--run RUN_DIR] [--clients 8] [--requests 500] [--photos-per-request 1]

Starts ``python -m core.serving.api RUN_DIR`` on a free 127.0.0.1 port in its
own process (without --run it first trains a quick cnn, one epoch on 100
photos per class of cats vs dogs, in this process), waits for /healthz, then
``--clients`` threads, each with its own HTTP connection, send ``--requests``
POST /v1/predict requests between them, round-robin over the real photos in
``shared/data/cats_and_dogs/validation``. Prints the throughput, p50 and p95
latency, the error count (a non-200 answer or a file answered with an
error), the load averages sampled before the server started and after the
load ended, and os.cpu_count(); nothing else.
"""

from __future__ import annotations

import argparse
import itertools
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from _common import REPO, cats_and_dogs, use_temp_homes

STARTUP_SECONDS = 180


@dataclass
class Outcome:
    seconds: float
    ok: bool


def load_average() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def quick_run() -> Path:
    """A cnn trained for one epoch on 100 photos per class: enough to answer like a real run."""
    from core.runs.recipes import make_config
    from core.runs.store import RunState, create_run
    from core.runs.worker import execute_run

    config = make_config(str(cats_and_dogs()), "cnn", 1, subset=100)
    run_dir = create_run(config, state=RunState.RUNNING)
    state = execute_run(run_dir)
    if state != RunState.COMPLETED:
        sys.exit(f"The quick run {run_dir} ended {state}; see {run_dir / 'log.txt'}.")
    return run_dir


def start_server(run_dir: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    server = subprocess.Popen(
        [sys.executable, "-m", "core.serving.api", str(run_dir), "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return server, f"http://127.0.0.1:{port}"


def wait_until_healthy(server: subprocess.Popen, base_url: str) -> None:
    import httpx

    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"The API exited with status {server.returncode} before answering.")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.5)
    sys.exit(f"The API did not answer /healthz within {STARTUP_SECONDS} s.")


def drive(
    base_url: str, photos: list[tuple[str, bytes]], clients: int, requests: int, per_request: int
) -> tuple[list[Outcome], float]:
    """``clients`` threads send ``requests`` requests between them; (outcomes, wall seconds)."""
    import httpx

    tickets = iter(range(requests))
    ticket_lock, outcomes = threading.Lock(), []
    cycle = itertools.cycle(photos)

    def client():
        with httpx.Client(base_url=base_url, timeout=120) as http:
            while True:
                with ticket_lock:
                    if next(tickets, None) is None:
                        return
                    batch = [next(cycle) for _ in range(per_request)]
                start = time.perf_counter()
                try:
                    response = http.post("/v1/predict", files=[("files", photo) for photo in batch])
                    ok = response.status_code == 200 and all("error" not in line for line in response.json())
                except (httpx.HTTPError, ValueError):
                    ok = False
                outcomes.append(Outcome(time.perf_counter() - start, ok))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a completed run folder (default: train a quick one)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--photos-per-request", type=int, default=1)
    args = parser.parse_args()

    load_before = load_average()
    if args.run is None:
        use_temp_homes()
    run_dir = args.run or quick_run()
    photos = [(path.name, path.read_bytes()) for path in sorted((cats_and_dogs() / "validation").rglob("*.jpg"))]
    server, base_url = start_server(run_dir)
    try:
        wait_until_healthy(server, base_url)
        outcomes, wall = drive(base_url, photos, args.clients, args.requests, args.photos_per_request)
    finally:
        server.terminate()
        server.wait(timeout=30)
    load_after = load_average()

    latencies_ms = np.array([outcome.seconds for outcome in outcomes]) * 1000
    print(f"run: {run_dir.name}")
    print(
        f"requests: {len(outcomes)} from {args.clients} clients, {args.photos_per_request} photo(s) each, "
        f"{len(photos)} distinct validation photos"
    )
    print(
        f"wall: {wall:.1f} s; throughput: {len(outcomes) / wall:.1f} requests/s, "
        f"{len(outcomes) * args.photos_per_request / wall:.1f} photos/s"
    )
    print(f"latency: p50 {np.percentile(latencies_ms, 50):.0f} ms, p95 {np.percentile(latencies_ms, 95):.0f} ms")
    print(f"errors: {sum(not outcome.ok for outcome in outcomes)}")
    print(f"load average (1/5/15 min): before {load_before}, after {load_after}; os.cpu_count(): {os.cpu_count()}")


if __name__ == "__main__":
    main()
