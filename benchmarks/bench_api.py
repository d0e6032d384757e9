"""How the HTTP API holds up under load: 8 clients posting 4 real photos each, for 30 s.

    python benchmarks/bench_api.py [--run RUN_DIR] [--seconds 30] [--clients 8] [--photos-per-request 4]
                                   [--out benchmarks/results/api] [--py-spy FILE]

Starts ``python -m core serve RUN_DIR`` on a free 127.0.0.1 port in its own
process. Without --run it first trains a quick transfer run in this process
(``mobilenet_v2`` at its recipe's 160 px, 2 epochs on 100 photos per class of
cats vs dogs), so the server has the unknown-photo check a transfer run has.
Once /healthz answers, ``--clients`` threads, each with its own HTTP
connection, post requests of ``--photos-per-request`` photos (round-robin over
the real photos of ``shared/data/cats_and_dogs/validation``) back to back for
``--seconds``, while one more thread asks GET /healthz every 100 ms.

Prints: predict latency p50/p95/max, errors (a non-200 answer or a file
answered with an error), throughput, /healthz latency p50/max during the
load, the server process's CPU seconds during the load (user + system, from
/proc), the load averages sampled before and after, and os.cpu_count().
With --out the same lines go to ``OUT/results.md`` with the command.
``--py-spy FILE`` records the server with py-spy during the load (flame graph).
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

STARTUP_SECONDS = 300
HEALTH_EVERY = 0.1  # seconds between /healthz probes during the load
QUICK_RUN = {"arch": "mobilenet_v2", "epochs": 2, "subset": 100}


@dataclass
class Outcome:
    seconds: float
    ok: bool


def load_average() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def quick_run() -> Path:
    """A frozen-MobileNetV2 run on a subset: answers, and checks for unknown photos, like a real one."""
    from core.runs.recipes import make_config
    from core.runs.store import RunState, create_run
    from core.runs.worker import execute_run

    config = make_config(str(cats_and_dogs()), QUICK_RUN["arch"], QUICK_RUN["epochs"], subset=QUICK_RUN["subset"])
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
        [sys.executable, "-m", "core", "serve", str(run_dir), "--host", "127.0.0.1", "--port", str(port)],
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its finished children so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    ticks = sum(int(value) for value in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def drive(
    base_url: str, photos: list[tuple[str, bytes]], clients: int, seconds: float, per_request: int
) -> tuple[list[Outcome], list[float], float]:
    """``clients`` threads post back to back for ``seconds``; (outcomes, /healthz seconds, wall seconds)."""
    import httpx

    lock, outcomes, health = threading.Lock(), [], []
    cycle = itertools.cycle(photos)
    end = time.perf_counter() + seconds

    def client():
        with httpx.Client(base_url=base_url, timeout=120) as http:
            while time.perf_counter() < end:
                with lock:
                    batch = [next(cycle) for _ in range(per_request)]
                start = time.perf_counter()
                try:
                    response = http.post("/v1/predict", files=[("files", photo) for photo in batch])
                    ok = response.status_code == 200 and all("error" not in line for line in response.json())
                    ok = ok and len(response.json()) == per_request
                except (httpx.HTTPError, ValueError):
                    ok = False
                outcomes.append(Outcome(time.perf_counter() - start, ok))

    def prober():
        with httpx.Client(base_url=base_url, timeout=60) as http:
            while time.perf_counter() < end:
                start = time.perf_counter()
                ok = http.get("/healthz").status_code == 200
                health.append(time.perf_counter() - start if ok else float("inf"))
                time.sleep(HEALTH_EVERY)

    threads = [threading.Thread(target=client) for _ in range(clients)] + [threading.Thread(target=prober)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes, health, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a completed run folder (default: train a quick transfer run)")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long the clients post")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--photos-per-request", type=int, default=4)
    parser.add_argument("--out", type=Path, help="write results.md into this folder")
    parser.add_argument("--py-spy", type=Path, help="record the server with py-spy during the load into this file")
    args = parser.parse_args()

    load_before = load_average()
    use_temp_homes()  # KERAS_HOME with the shared weights: the unknown-photo check needs them
    run_dir = args.run or quick_run()
    photos = [(path.name, path.read_bytes()) for path in sorted((cats_and_dogs() / "validation").rglob("*.jpg"))]
    server, base_url = start_server(run_dir)
    spy = None
    try:
        wait_until_healthy(server, base_url)
        if args.py_spy:
            spy = subprocess.Popen(
                ["py-spy", "record", "--pid", str(server.pid), "--duration", str(int(args.seconds)), "--threads"]
                + ["--output", str(args.py_spy), "--format", "flamegraph" if args.py_spy.suffix == ".svg" else "raw"],
                stdout=subprocess.DEVNULL,
            )
        cpu_before, load_start = cpu_seconds(server.pid), load_average()
        outcomes, health, wall = drive(base_url, photos, args.clients, args.seconds, args.photos_per_request)
        server_cpu = cpu_seconds(server.pid) - cpu_before
    finally:
        server.terminate()
        server.wait(timeout=30)
        if spy is not None:
            spy.wait(timeout=60)
    load_after = load_average()

    latencies_ms = np.array([outcome.seconds for outcome in outcomes]) * 1000
    health_ms = np.array(health) * 1000
    photos_done = len(outcomes) * args.photos_per_request
    lines = [
        f"run: {run_dir.name} ({run_description(run_dir)})",
        f"requests: {len(outcomes)} in {wall:.1f} s from {args.clients} clients, {args.photos_per_request} photo(s) "
        f"each, {len(photos)} distinct validation photos",
        f"throughput: {len(outcomes) / wall:.1f} requests/s, {photos_done / wall:.1f} photos/s",
        f"predict latency: p50 {np.percentile(latencies_ms, 50):.0f} ms, p95 {np.percentile(latencies_ms, 95):.0f} ms, "
        f"max {latencies_ms.max():.0f} ms",
        f"errors: {sum(not outcome.ok for outcome in outcomes)}",
        f"/healthz during the load: {len(health_ms)} probes, p50 {np.percentile(health_ms, 50):.1f} ms, "
        f"max {health_ms.max():.1f} ms",
        f"server CPU during the load: {server_cpu:.1f} s (user + system), {server_cpu / max(photos_done, 1) * 1000:.1f} "
        "ms per photo",
        f"load average (1/5/15 min): {load_before} before, {load_start} at the load's start, {load_after} after; "
        f"os.cpu_count(): {os.cpu_count()}",
    ]
    print("\n".join(lines))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        command = " ".join(["python", "benchmarks/bench_api.py", *sys.argv[1:]])
        text = (
            "```\n"
            + "\n".join(lines)
            + f"\nCommand: {command}\nDate: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n```\n"
        )
        (args.out / "results.md").write_text(text)


def run_description(run_dir: Path) -> str:
    """The run's architecture and sizes: what the numbers were measured on."""
    from core.models.novelty import NoveltyDetector
    from core.runs.store import read_config
    from core.runs.trust import NOVELTY_FILE

    config = read_config(run_dir)
    novelty = run_dir / NOVELTY_FILE
    check = f"unknown-photo check at {NoveltyDetector.load(novelty).image_size} px" if novelty.is_file() else "no check"
    return f"{config.arch}, {config.image_size} px, {check}"


if __name__ == "__main__":
    main()
