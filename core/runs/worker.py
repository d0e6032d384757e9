"""One training run in this process, start to end: claim it, run its steps, record the outcome.

``execute_run(run_dir)`` is what a worker process (core.runs.jobs) and
``python -m core train`` both do::

    claim          status.json: running, this process's pid
    prepare data   the dataset scanned once and split; split.json    (core.runs.run_split),
                   in a child process while this one imports TensorFlow
    build          strategy, facts.json, the model                    (core.runs.training)
                   (in cached-features mode the photos start decoding first, in the background)
    fit            the first phase: the whole model, or the head on cached features
    fine_tune      the top of the base, for architectures that fine-tune
    calibrate      the best saved model on validation: temperature, "unsure" threshold, and for
                   a frozen ImageNet base the unknown-photo check; trust.json (core.runs.trust)
    evaluate       the best saved model on the test split: evaluation.json
    outcome        completed | cancelled | failed

The data step needs no TensorFlow: it runs in a child process while this one
imports it, so a wrong folder still fails in a second. A failed run keeps one
short sentence in status.json; its traceback goes to log.txt.

Stopping: a ``cancel`` file in the run folder (core.runs.jobs.cancel writes it)
or SIGTERM stop training after the current batch; the run ends "cancelled".
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import sys
import threading
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from core.data.dataset import DatasetError
from core.data.splits import Splits
from core.fileio import CANNOT_WRITE, append_line
from core.models.distribute import configure_devices
from core.models.weights import WeightsUnavailableError
from core.runs.control import DECODED_CACHE_DIR, RunCancelled, RunControl
from core.runs.recipes import TrainConfig
from core.runs.run_split import prepare_data
from core.runs.store import (
    LOG_FILE,
    RunsFolderError,
    RunState,
    read_config,
    read_status,
    update_status,
    write_split,
)


def _run_steps(run_dir: Path, control: RunControl) -> None:
    """The steps of the module docstring, top to bottom."""
    config = read_config(run_dir)
    splits = prepare_data_while_tensorflow_imports(config)  # the run's one scan of the dataset
    write_split(run_dir, splits.to_record())
    control.check()

    configure_devices()  # TensorFlow from here on; devices before its runtime starts
    from core.runs.training import Training

    training = Training(run_dir, config, splits, control)
    training.decode_ahead()
    try:
        training.build()
        training.fit()
    finally:
        training.stop_decoding()  # a run that fails or stops before its feature pass
    training.fine_tune()
    training.calibrate()
    training.evaluate()


def prepare_data_while_tensorflow_imports(config: TrainConfig) -> Splits:
    """prepare_data, in a child process while this one imports TensorFlow and Keras.

    The import takes seconds of one core and the scan decodes every photo; in one
    process they fight over the GIL (a thread for the import made the scan slower
    than both one after the other), in two they share the cores. A wrong folder
    still fails as soon as the scan does. In-process when TensorFlow is imported
    already (nothing to overlap) or the child cannot be had.
    """
    if "tensorflow" in sys.modules:
        return prepare_data(config)
    importing = threading.Thread(target=_import_training, name="import-tensorflow", daemon=True)
    try:
        with scan_pool() as pool:
            scanning = pool.submit(prepare_data, config)
            importing.start()  # the main thread only waits: the import has the GIL to itself
            splits = scanning.result()
    except (DatasetError, FileNotFoundError, WeightsUnavailableError) as error:
        raise error from None  # the data's own sentence, as in-process; not the child's traceback too
    except Exception as error:  # no child here (no /dev/shm, a sandbox): scan in-process
        print(f"Scanning in this process ({type(error).__name__}: {error})", file=sys.stderr, flush=True)
        splits = prepare_data(config)
    if importing.ident is not None:  # started
        importing.join()
    return splits


def scan_pool() -> ProcessPoolExecutor:
    """One fresh interpreter (spawned: this process may hold threads) that ends with this one."""
    context = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(1, mp_context=context, initializer=_end_with_parent, initargs=(os.getpid(),))


def _end_with_parent(parent_pid: int) -> None:
    """In the child: be killed when the run's process ends, even by SIGKILL (Linux's
    PR_SET_PDEATHSIG); else an orphan would wait for work forever."""
    with contextlib.suppress(Exception):  # not Linux: a killed run may leave its child waiting
        import ctypes
        import signal

        pr_set_pdeathsig = 1
        ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)  # the parent ended before the line above took effect


def _import_training() -> None:
    with contextlib.suppress(Exception):  # the import after the scan raises it again, in the run
        import core.runs.training  # noqa: F401


def human_message(error: BaseException, run_dir: str | os.PathLike | None = None) -> str:
    """A sentence for the Train page; the traceback goes to log.txt."""
    if isinstance(error, (ValueError, FileNotFoundError, WeightsUnavailableError, RunsFolderError)):
        return str(error)
    if isinstance(error, OSError) and error.errno in CANNOT_WRITE:
        return str(RunsFolderError(run_dir or "the run folder", error))
    if isinstance(error, MemoryError) or _is_out_of_memory(error):
        return "Training ran out of memory. Try a smaller batch size or image size."
    return f"Training failed: {type(error).__name__}: {error}"


def _is_out_of_memory(error: BaseException) -> bool:
    tf = sys.modules.get("tensorflow")  # not imported: not TensorFlow's error
    return tf is not None and isinstance(error, tf.errors.ResourceExhaustedError)


def log_traceback(error: BaseException, also_to: Path | None) -> None:
    text = "".join(traceback.format_exception(error))
    print(text, file=sys.stderr, flush=True)
    if also_to is not None:
        with contextlib.suppress(OSError):  # a full disk must not turn "failed" into "interrupted"
            append_line(also_to, text)


def execute_run(
    run_dir: str | os.PathLike, *, stderr_is_log: bool = False, control: RunControl | None = None
) -> RunState:
    """Train the run in ``run_dir`` in this process; returns its final state.

    Never raises for a failing run: status.json gets one sentence, the
    traceback goes to stderr and to log.txt (``stderr_is_log``: the worker's
    stderr is log.txt already, so it is written once). ``control``: the run's
    RunControl when the caller sets it up (a Ray task, a sweep's trial).
    """
    run_dir = Path(run_dir)
    control = control or RunControl(run_dir)
    if not control.claim():
        return read_status(run_dir).state
    error_message = None
    try:
        with control:
            _run_steps(run_dir, control)
        state = RunState.COMPLETED
    except (RunCancelled, KeyboardInterrupt):
        state = RunState.CANCELLED
    except Exception as error:  # a failed run must not take its caller down
        state, error_message = RunState.FAILED, human_message(error, run_dir)
        log_file = run_dir / LOG_FILE if not stderr_is_log else None
        log_traceback(error, also_to=log_file)
    finally:
        shutil.rmtree(run_dir / DECODED_CACHE_DIR, ignore_errors=True)
    now = time.time()
    update_status(run_dir, state=state, finished=now, heartbeat=now, error=error_message)
    return state


def fail_run(run_dir: str | os.PathLike, message: str) -> None:
    """End a run that could not even start with one sentence (its log gets it too)."""
    print(message, file=sys.stderr, flush=True)
    update_status(
        run_dir, when=lambda status: status.state.active, state=RunState.FAILED, finished=time.time(), error=message
    )
