"""Where an embedded Ray listens when asked for loopback by Ray's own setting.

    python3 benchmarks/ray_bindings.py

Starts ``ray.init(num_cpus=1, include_dashboard=False, _node_ip_address="127.0.0.1")``
in the machine's own network (no namespace), lists every listening TCP socket
of this process tree with ``ss -ltnp``, and prints those not bound to
loopback. core/netns.py keeps Ray in a loopback-only network namespace for as
long as this prints any. Run it on a machine whose other interfaces are
private: for the few seconds it runs, Ray listens on them.
"""

from __future__ import annotations

import subprocess
import time

import ray

LOOPBACK = (" 127.0.0.1:", " [::1]:")


def listening_sockets() -> list[str]:
    table = subprocess.run(["ss", "-ltnp"], capture_output=True, text=True, check=True).stdout
    return [line for line in table.splitlines()[1:] if "users:" in line]


def main() -> None:
    before = set(listening_sockets())
    ray.init(num_cpus=1, include_dashboard=False, _node_ip_address="127.0.0.1")
    time.sleep(3)  # the raylet starts its workers and agents after init returns
    ray_sockets = [line for line in listening_sockets() if line not in before]
    ray.shutdown()
    open_ones = [line for line in ray_sockets if not any(address in line for address in LOOPBACK)]
    print(f"ray {ray.__version__}: {len(ray_sockets)} listening sockets, {len(open_ones)} not on loopback")
    for line in open_ones:
        print("  " + " ".join(line.split()))


if __name__ == "__main__":
    main()
