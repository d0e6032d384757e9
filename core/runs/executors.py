"""Where a run trains: a local worker process, or a Ray task on a cluster.

PawLab's queue (core.runs.jobs) starts one worker process per run, always::

    python -m core worker RUN_DIR

With ``RAY_ADDRESS`` unset (the default), that process trains the run itself.
With ``RAY_ADDRESS`` set (Ray's own variable: ``auto``, ``HOST:6379`` or
``ray://HOST:10001``), the same process becomes the run's launcher: it hands
the run to the cluster as one Ray task, sized by the run's config (``cpus``,
``gpus``, ``ray_resources``), and waits for it. Status, live metrics, cancel
and the queue work the same either way, because both read and write the run
folder, which lives on storage every node shares (``PAWLAB_HOME``, mounted
at the same path on each node).

Why a launcher process and not a task sent from the Streamlit server: Ray
ties a task's life to the process that submitted it, and runs must outlive
a server restart. The launcher outlives it as a local worker does.

Ray's automatic retries are off (``max_retries=0``): a run whose worker died
is interrupted, not silently restarted. Liveness is the run's heartbeat: the
launcher beats until a Ray worker takes the run (it may wait for a node with
the resources it asked for), the worker from then on. If the Ray worker dies,
the launcher sees the task fail and marks the run interrupted at once.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

from core.processes import python_path
from core.runs.control import RunControl
from core.runs.store import (
    HEARTBEAT_SECONDS,
    Executor,
    RunFileError,
    RunState,
    read_config,
    read_status,
    update_status,
)
from core.runs.worker import execute_run

RAY_ADDRESS_VARIABLE = "RAY_ADDRESS"
# Passed to the cluster's workers with each run, so they find the same home and weights.
FORWARDED_PREFIXES = ("PAWLAB_", "KERAS_HOME", "TF_CPP_MIN_LOG_LEVEL")


def configured_executor() -> Executor:
    """Ray when RAY_ADDRESS names a cluster, else this machine's worker processes."""
    return Executor.RAY if os.environ.get(RAY_ADDRESS_VARIABLE, "").strip() else Executor.LOCAL


def worker_environment() -> dict[str, str]:
    """What a Ray worker needs from this process's environment: PawLab's code, home and caches."""
    forwarded = {name: value for name, value in os.environ.items() if name.startswith(FORWARDED_PREFIXES)}
    return {**forwarded, "PYTHONPATH": python_path()}


def connect_to_cluster(extra_env: dict[str, str] | None = None) -> None:
    """ray.init on RAY_ADDRESS, with PawLab's code and settings (and ``extra_env``) for its workers."""
    import ray

    if not ray.is_initialized():
        ray.init(
            address=os.environ[RAY_ADDRESS_VARIABLE],
            log_to_driver=True,
            runtime_env={"env_vars": {**worker_environment(), **(extra_env or {})}},
        )


def ray_node_name() -> str:
    """This Ray worker's node, for a person: its address and the start of its id
    (two nodes on one machine share the address)."""
    import ray

    return f"{ray.util.get_node_ip_address()} · {ray.get_runtime_context().get_node_id()[:8]}"


def ray_control(run_dir: str | os.PathLike) -> RunControl:
    """The RunControl of a run that a Ray worker trains."""
    control = RunControl(Path(run_dir))
    control.executor, control.ray_node = Executor.RAY, ray_node_name()
    return control


def _train_in_ray_worker(run_dir: str) -> str:
    """The Ray task: train the run in this Ray worker, recording the node it runs on."""
    return str(execute_run(run_dir, control=ray_control(run_dir)))


def _beat_until_taken(run_dir: Path, done: threading.Event) -> None:
    """The launcher's heartbeat while the run waits in Ray's queue for a node."""
    while not done.wait(HEARTBEAT_SECONDS):
        try:
            if read_status(run_dir).ray_node:
                return  # a Ray worker took it and beats itself
            update_status(run_dir, heartbeat=time.time())
        except (OSError, RunFileError):
            continue


def run_on_ray(run_dir: str | os.PathLike) -> RunState:
    """The launcher's whole job: one Ray task for the run, then its outcome."""
    import ray

    run_dir = Path(run_dir).resolve()
    try:
        config = read_config(run_dir)
        connect_to_cluster()
        task = ray.remote(max_calls=1)(_train_in_ray_worker).options(  # a fresh process per run
            num_cpus=config.cpus,
            num_gpus=config.gpus,
            resources=config.ray_resources or None,
            max_retries=0,  # a dead worker means an interrupted run, never a silent second run
            name=f"pawlab-run-{run_dir.name}",
        )
        result = task.remote(str(run_dir))
    except Exception as error:  # no cluster, a refused token, resources Ray cannot parse
        return _end_active(
            run_dir,
            RunState.FAILED,
            f"The run could not be handed to the Ray cluster at "
            f"{os.environ.get(RAY_ADDRESS_VARIABLE)}: {type(error).__name__}: {error}",
        )
    waiting = threading.Event()
    threading.Thread(target=_beat_until_taken, args=(run_dir, waiting), daemon=True).start()
    try:
        return RunState(ray.get(result))
    except ray.exceptions.RayError as error:
        return _end_active(
            run_dir,
            RunState.INTERRUPTED,
            f"The Ray worker training this run stopped unexpectedly ({type(error).__name__}); "
            f"its launcher ran on {socket.gethostname()}.",
        )
    finally:
        waiting.set()


def _end_active(run_dir: Path, state: RunState, message: str) -> RunState:
    """End a run that is still queued or running with ``state`` and one sentence."""
    update_status(run_dir, when=lambda status: status.state.active, state=state, finished=time.time(), error=message)
    return read_status(run_dir).state
