"""A network of one's own: loopback only, for the Ray that PawLab starts itself.

Ray's servers (GCS, raylet, workers) listen on every interface and talk over
the machine's address; nothing in Ray's settings binds them to loopback, and a
Ray cluster runs whatever code a client sends it. So a process that starts an
embedded Ray first moves into a new network namespace whose only interface is
loopback: Ray then finds no address but 127.0.0.1 and uses it for everything,
and nothing outside this process tree can reach it.

Measured with the pinned Ray (2.60.0, 2026-12-02, ``python3
benchmarks/ray_bindings.py``): ``ray.init(_node_ip_address="127.0.0.1")``,
Ray's own setting, still leaves all 6 of its listening sockets off loopback:
the GCS, the raylet (twice), the driver and an idle worker on every interface
(``*:PORT``), and the runtime-env agent on the machine's own address. The
namespace stays until that script prints none.

    enter_loopback_only_network()   # first thing in a fresh, single-threaded process

Linux only. Root needs no more than a new network namespace; anyone else also
gets a user namespace (their own uid mapped to itself), which Linux allows
unprivileged users unless the administrator turned it off. Files are reached
as before: only the network is private.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import socket
import struct
from pathlib import Path

# ``python -m core worker --loopback-only RUN_DIR``: core.__main__ enters the network
# before anything else (core.runs.sweep_driver starts a sweep's driving child this way).
LOOPBACK_ONLY_FLAG = "--loopback-only"

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
_IFREQ = "16sH14s"  # struct ifreq: the interface name, then its flags


class NetworkIsolationError(OSError):
    """The process could not get a loopback-only network; the message says why and what to do."""


def _unshare(flags: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(flags) != 0:
        code = ctypes.get_errno()
        raise NetworkIsolationError(
            code,
            f"PawLab could not give its embedded Ray a loopback-only network "
            f"({os.strerror(code)}). Allow unprivileged user namespaces "
            f"(sysctl kernel.unprivileged_userns_clone=1), run as root, or set "
            f"RAY_ADDRESS to a Ray cluster you have secured.",
        )


def _map_own_ids() -> None:
    """In a new user namespace: stay the same uid and gid, so files keep their owner."""
    uid, gid = os.getuid(), os.getgid()
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
    Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")


def bring_up_loopback() -> None:
    """``ip link set lo up``: a new network namespace starts with loopback down."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack(_IFREQ, b"lo", 0, b"")
        _, flags, _ = struct.unpack(_IFREQ, fcntl.ioctl(sock, SIOCGIFFLAGS, request))
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", flags | IFF_UP, b""))


def enter_loopback_only_network() -> None:
    """Move this process (and all it starts from now on) into a loopback-only network.

    Call it before starting threads: a user namespace can only be entered by
    a single-threaded process. Raises NetworkIsolationError if Linux refuses.
    """
    as_root = os.geteuid() == 0
    _unshare(CLONE_NEWNET if as_root else CLONE_NEWNET | CLONE_NEWUSER)
    if not as_root:
        _map_own_ids()
    try:
        bring_up_loopback()
    except OSError as error:
        raise NetworkIsolationError(
            error.errno or errno.EPERM, f"PawLab could not bring up loopback in its own network: {error}"
        ) from error


def network_namespace(pid: int | str = "self") -> str:
    """Which network namespace a process is in (``net:[4026531840]``); equal means shared."""
    return os.readlink(f"/proc/{pid}/ns/net")


def interfaces() -> list[str]:
    """The network interfaces this process sees."""
    return [name for _, name in socket.if_nameindex()]


def in_loopback_only_network() -> bool:
    return interfaces() == ["lo"]
