"""A two-node Ray cluster on loopback, as an operator starts one, and PawLab runs on it.

    python tests/_ray_cluster.py WORK_DIR     (tests/test_ray_cluster.py runs it)

First thing, this process moves into a network namespace whose only
interface is loopback (core.netns: ``unshare -n`` + ``ip link set lo up``),
so Ray's servers and workers have no address but 127.0.0.1 and no test
traffic reaches any other. Then, with Ray's own CLI:

    ray start --head      --resources '{"node_a": 1}'
    ray start --address   --resources '{"node_b": 1}'   (a second node)

and with RAY_ADDRESS set, PawLab's queue (core.runs.jobs) sends two runs,
one pinned to each node by its custom resource, and a third long one whose
Ray worker is killed mid-run. ``ray stop`` at the end. What happened is
written to WORK_DIR/outcome.json for the test to check.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from core.netns import enter_loopback_only_network, interfaces, network_namespace

enter_loopback_only_network()  # before anything starts a thread

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
from conftest import make_separable_dataset  # noqa: E402

WAIT_SECONDS = 240


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Ray's own command line, from the Python that runs the tests (whatever is on PATH).
RAY = [sys.executable, "-m", "ray.scripts.scripts"]


def ray_cli(*args: str) -> None:
    subprocess.run([*RAY, *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def wait_until(condition, what: str, timeout: float = WAIT_SECONDS):
    from core.runs import jobs

    deadline = time.time() + timeout
    while time.time() < deadline:
        jobs.tick()
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise TimeoutError(what)


def processes_in_this_network() -> list[str]:
    """Other processes that share this private network: what `ray stop` should leave none of."""
    mine, found = network_namespace(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in (os.getpid(),):
            continue
        try:
            if network_namespace(entry.name) == mine:
                found.append((entry / "comm").read_text().strip())
        except OSError:
            continue
    return found


def main(work: Path) -> dict:
    outcome: dict = {"interfaces": interfaces()}
    os.environ["PAWLAB_HOME"] = str(work / "home")
    os.environ["PAWLAB_MAX_CONCURRENT_RUNS"] = "3"
    # Ray 2.60 turns token authentication on for a head node; every node and client of the
    # cluster must then present the same token (what the README asks operators to set up).
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    data = make_separable_dataset(work / "data", per_class=8, size=32)
    port = free_port()
    ray_cli(
        "start",
        "--head",
        f"--port={port}",
        "--num-cpus=1",
        '--resources={"node_a": 1}',
        "--include-dashboard=false",
        "--disable-usage-stats",
    )
    ray_cli(
        "start", f"--address=127.0.0.1:{port}", "--num-cpus=1", '--resources={"node_b": 1}', "--disable-usage-stats"
    )
    os.environ["RAY_ADDRESS"] = f"127.0.0.1:{port}"

    import ray

    from core.runs import jobs
    from core.runs.recipes import make_config
    from core.runs.store import list_runs, read_status

    ray.init()
    outcome["nodes"] = {
        name: node["NodeID"][:8]
        for node in ray.nodes()
        if node["Alive"]
        for name in node["Resources"]
        if name.startswith("node_")
    }
    outcome["listening"] = sorted(listening_addresses())
    ray.shutdown()

    # One run through the queue as the Train page sends it, one as a person types it.
    pinned = {"node_a": jobs.submit(make_config(data, "cnn", 2, image_size=32, ray_resources={"node_a": 1}))}
    typed = subprocess.run(
        [
            sys.executable,
            "-m",
            "core",
            "train",
            "--queue",
            "--data",
            str(data),
            "--arch",
            "cnn",
            "--epochs",
            "2",
            "--image-size",
            "32",
            "--ray-resources",
            "node_b=1",
        ],
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
    )
    outcome["cli"] = {"exit": typed.returncode, "stderr": typed.stderr[-2000:]}
    pinned["node_b"] = Path(typed.stdout.strip().splitlines()[-1])
    wait_until(lambda: all(not read_status(run).state.active for run in pinned.values()), "pinned runs")
    outcome["where"] = {run.id: run.where for run in list_runs()}
    outcome["pinned"] = {
        node: {
            "id": run.name,
            "state": str(read_status(run).state),
            "ray_node": read_status(run).ray_node,
            "executor": str(read_status(run).executor),
            "files": sorted(path.name for path in run.iterdir()),
            "metrics_lines": len((run / "metrics.jsonl").read_text().splitlines()),
        }
        for node, run in pinned.items()
    }

    doomed = jobs.submit(make_config(data, "cnn", 500, image_size=32, ray_resources={"node_a": 1}))
    status = wait_until(lambda: (s := read_status(doomed)).epoch >= 1 and s.ray_node and s, "doomed run starts")
    os.kill(status.pid, signal.SIGKILL)  # the Ray worker that trains it
    killed_at = time.time()
    wait_until(lambda: not read_status(doomed).state.active, "doomed run ends", timeout=120)
    outcome["killed"] = {
        "state": str(read_status(doomed).state),
        "error": read_status(doomed).error,
        "seconds_to_notice": round(time.time() - killed_at, 1),
    }
    return outcome


def listening_addresses() -> set[str]:
    """Addresses of every listening TCP socket in this network (/proc/net/tcp{,6}, state 0A)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A":
                address = bytes.fromhex(local.split(":")[0])
                # The kernel prints each 32-bit word in host (little-endian) order.
                words = b"".join(address[i : i + 4][::-1] for i in range(0, len(address), 4))
                family = socket.AF_INET if len(words) == 4 else socket.AF_INET6
                found.add(socket.inet_ntop(family, words))
    return found


if __name__ == "__main__":
    work = Path(sys.argv[1])
    try:
        result = main(work)
    finally:
        subprocess.run([*RAY, "stop", "--force"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        time.sleep(1.0)
    result["left_behind"] = processes_in_this_network()
    (work / "outcome.json").write_text(json.dumps(result, indent=2))
