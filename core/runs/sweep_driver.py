"""Drive a sweep with Ray Tune, in the sweep's own worker process (core.runs.jobs.work).

    isolate     no RAY_ADDRESS: the ImageNet weights are fetched, then a child process
                drives the sweep in a loopback-only network (core.netns) and starts an
                embedded Ray there, with no dashboard and so no job API
    features    head-only knobs on a frozen base: one pass of the base over the
                photos, as one Ray task, so every trial reads cached features
    trials      Ray Tune samples the knobs (core.runs.search); each trial is a PawLab
                run folder trained by execute_run in a Ray worker, reporting every
                epoch's val_accuracy; ASHA stops the worst trials early
    results     trials the scheduler stopped are marked "stopped"; sweep.json
                (core.runs.sweep) lists every trial and the best by validation

With RAY_ADDRESS set, the sweep connects to that cluster instead and its
trials spread over the nodes. Cancelling the sweep stops every trial.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from core.models.zoo import ARCHITECTURES, Family
from core.netns import LOOPBACK_ONLY_FLAG, in_loopback_only_network
from core.runs.control import RunCancelled, RunControl
from core.runs.executors import configured_executor, connect_to_cluster, ray_control, worker_environment
from core.runs.recipes import TrainConfig, with_knobs
from core.runs.run_split import prepare_data
from core.runs.search import Cost, KnobSpace, SweepSpec
from core.runs.store import (
    CANCEL_FILE,
    Executor,
    Phase,
    RunState,
    create_run,
    read_config,
    read_status,
    summarize,
    update_status,
)
from core.runs.sweep import SweepResult, TrialResult, trials_of, write_sweep_result
from core.runs.worker import execute_run, human_message, log_traceback

TUNE_DIR = "tune"  # Ray Tune's own experiment state, inside the sweep's folder
TRIAL_CPUS = 1.0  # what one trial asks of Ray: a sweep runs CPUs / TRIAL_CPUS trials at once
_IN_SWEEP_NETWORK = "_PAWLAB_IN_SWEEP_NETWORK"  # the child's mark: never a second child
EMBEDDED = "embedded (loopback only)"
# A worker is reused for the next trial only once the stopped trial's thread has ended, which
# happens at its next epoch; Tune's 2 s default gives up too soon, and Tune then loses the trial.
TRIAL_ENVIRONMENT = {"TUNE_FUNCTION_THREAD_TIMEOUT_S": "60"}
STOPPED_EARLY = "Stopped early by the sweep's scheduler (ASHA) after {epochs} epochs: other trials were ahead."


# --- in the Ray workers -----------------------------------------------------------


def _trial(knobs: dict, sweep_dir: str) -> None:
    """One Tune trial: a PawLab run of the sweep's config with ``knobs``, reporting each epoch."""
    folder = Path(sweep_dir)
    trial = with_knobs(read_config(folder), knobs, sweep=folder.name)
    run_dir = create_run(trial, folder.parent, state=RunState.RUNNING)
    control = ray_control(run_dir)
    # Tune ends a trial as soon as it reports its last epoch (ASHA's max_t), which would
    # cut calibration and the test evaluation short: the last epoch is reported after them.
    last_epoch = []

    def report(record: dict) -> None:
        if record["epoch"] >= trial.total_epochs:
            last_epoch.append(record)
            return
        # A trial the scheduler stopped ends here (Tune raises SystemExit in it); the driver
        # marks its run "stopped" (MarkStoppedTrials).
        tune.report({"val_accuracy": record.get("val_accuracy") or 0.0, "run": run_dir.name})

    control.epoch_listeners.append(report)
    execute_run(run_dir, control=control)
    for record in last_epoch:
        tune.report({"val_accuracy": record.get("val_accuracy") or 0.0, "run": run_dir.name})


def _cache_features(config: TrainConfig) -> None:
    """The sweep's one feature pass: its trials then train their heads on cached features."""
    from core.models.distribute import configure_devices

    configure_devices()
    from core.runs.training import cache_frozen_features

    cache_frozen_features(config, prepare_data(config))


class MarkStoppedTrials(tune.Callback):
    """In the driver: a trial the scheduler stopped is marked "stopped" in its run folder at
    once (its Ray worker may be ended before it can say so itself)."""

    def __init__(self, runs_dir: Path):
        self.runs_dir = runs_dir

    def on_trial_complete(self, iteration, trials, trial, **info):
        run, epochs = trial.last_result.get("run"), trial.last_result.get("training_iteration", 0)
        if run:
            update_status(
                self.runs_dir / run,
                when=lambda status: status.state.active,
                state=RunState.STOPPED,
                finished=time.time(),
                error=STOPPED_EARLY.format(epochs=epochs),
            )


class CancelStopper(tune.Stopper):
    """Tune stops every trial once the sweep's cancel file appears (core.runs.jobs.cancel)."""

    def __init__(self, cancel_file: Path):
        self.cancel_file = str(cancel_file)

    def __call__(self, trial_id, result) -> bool:
        return self.stop_all()

    def stop_all(self) -> bool:
        return os.path.exists(self.cancel_file)


# --- the driver -------------------------------------------------------------------


def _drive_in_private_network(run_dir: Path, config: TrainConfig) -> RunState:
    """Fetch what needs the network here, then drive the sweep in a child process that has a
    loopback-only network of its own (core.__main__ enters it first thing, single-threaded).

    This process keeps the machine's network: when the child is done, the queue's next
    worker is started from here (core.runs.jobs.work), never from inside the sweep's network.
    """
    if os.environ.get(_IN_SWEEP_NETWORK):
        raise RuntimeError("The sweep could not move into a loopback-only network for its embedded Ray.")
    if ARCHITECTURES[config.arch].family is Family.TRANSFER:
        from core.models.weights import ensure_imagenet_weights

        for size in _image_sizes(config):
            ensure_imagenet_weights(size)
    sys.stdout.flush()
    sys.stderr.flush()
    subprocess.run(
        [sys.executable, "-m", "core", "worker", LOOPBACK_ONLY_FLAG, str(run_dir)],
        env={**os.environ, _IN_SWEEP_NETWORK: "1"},
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return read_status(run_dir).state


def _search(config: TrainConfig) -> SweepSpec:
    """The sweep's spec: a sweep's config always has one (recipes checks it when made)."""
    if config.search is None:
        raise ValueError("This run is not a sweep: its config has no search.")
    return config.search


def _image_sizes(config: TrainConfig) -> list[int]:
    sizes = _search(config).knobs.get("image_size")
    return sorted(set(sizes.values)) if sizes and sizes.values else [config.image_size]


def _tune_space(knobs: dict[str, KnobSpace]) -> dict:
    space = {}
    for name, knob in knobs.items():
        if knob.values:
            space[name] = tune.grid_search(list(knob.values)) if knob.grid else tune.choice(list(knob.values))
        else:
            assert knob.low is not None and knob.high is not None  # KnobSpace: a range or values
            space[name] = (tune.loguniform if knob.log else tune.uniform)(knob.low, knob.high)
    return space


def _max_epochs(config: TrainConfig) -> int:
    epochs = _search(config).knobs.get("epochs")
    return max(epochs.values) if epochs and epochs.values else config.total_epochs


def _start_ray(config: TrainConfig) -> str:
    if configured_executor() == Executor.RAY:
        connect_to_cluster(TRIAL_ENVIRONMENT)
        return os.environ.get("RAY_ADDRESS", "")
    if not in_loopback_only_network():
        raise RuntimeError("PawLab starts its embedded Ray only in a loopback-only network.")
    ray.init(
        num_cpus=max(1, int(config.cpus)),
        include_dashboard=False,
        log_to_driver=True,
        runtime_env={"env_vars": {**worker_environment(), **TRIAL_ENVIRONMENT}},
    )
    return EMBEDDED


def _run_trials(run_dir: Path, config: TrainConfig) -> None:
    spec = _search(config)
    slots = max(1, int(ray.cluster_resources().get("CPU", 1) // TRIAL_CPUS))
    trainable = tune.with_resources(tune.with_parameters(_trial, sweep_dir=str(run_dir)), {"cpu": TRIAL_CPUS})
    tuner = tune.Tuner(
        trainable,
        param_space=_tune_space(spec.knobs),
        tune_config=tune.TuneConfig(
            metric="val_accuracy",
            mode="max",
            num_samples=spec.samples_per_grid_point,
            max_concurrent_trials=spec.concurrent or slots,
            # Head trials last seconds: a worker that keeps TensorFlow imported saves most of
            # each one. Long trials start fresh workers, which never wait on a stopped trial.
            reuse_actors=config.sweep_cost() == Cost.HEAD,
            scheduler=ASHAScheduler(
                time_attr="training_iteration",
                max_t=_max_epochs(config),
                grace_period=spec.grace_epochs,
                reduction_factor=2,
            ),
        ),
        run_config=tune.RunConfig(
            name="sweep",
            storage_path=str(run_dir / TUNE_DIR),
            verbose=0,
            stop=CancelStopper(run_dir / CANCEL_FILE),
            callbacks=[MarkStoppedTrials(run_dir.parent)],
        ),
    )
    tuner.fit()


def _settle_trials(run_dir: Path, cancelled: bool) -> list[TrialResult]:
    """Trials Tune stopped are still "running" on disk: mark them; then every trial's line."""
    results, searched = [], _search(read_config(run_dir)).knobs
    for trial_dir in trials_of(run_dir):
        summary = summarize(trial_dir)
        if summary.active:
            state = RunState.CANCELLED if cancelled else RunState.STOPPED
            reason = None if cancelled else STOPPED_EARLY.format(epochs=summary.epochs)
            update_status(
                trial_dir, when=lambda status: status.state.active, state=state, finished=time.time(), error=reason
            )
        results.append(TrialResult.from_run(trial_dir, searched))
    return results


def _best(trials: list[TrialResult], run_dir: Path) -> tuple[str | None, dict | None]:
    finished = [t for t in trials if t.state == RunState.COMPLETED and t.best_val_accuracy is not None]
    if not finished:
        return None, None
    best = max(finished, key=lambda t: t.best_val_accuracy or 0.0)  # all set: filtered above
    config = read_config(run_dir.parent / best.run)
    config.sweep, config.created = "", 0.0  # trained again, it is a run of its own
    return best.run, config.to_dict()


def drive_sweep(run_dir: str | os.PathLike) -> RunState:
    """The sweep's worker: isolate, start Ray, run the trials, record the result."""
    run_dir = Path(run_dir).resolve()
    config = read_config(run_dir)
    if configured_executor() == Executor.LOCAL and not in_loopback_only_network():
        return _drive_in_private_network(run_dir, config)
    control = RunControl(run_dir)
    if not control.claim():
        return read_status(run_dir).state
    started, error_message, where = time.time(), None, ""
    try:
        with control:
            where = _start_ray(config)
            if config.sweep_cost() != Cost.END_TO_END:
                control.status(phase=Phase.FEATURES)
                ray.get(ray.remote(_cache_features).options(num_cpus=config.cpus, max_retries=0).remote(config))
            control.status(phase=Phase.TRAIN)
            _run_trials(run_dir, config)
            control.check()
        state = RunState.COMPLETED
    except (RunCancelled, KeyboardInterrupt):
        state = RunState.CANCELLED
    except Exception as error:  # a failed sweep must not take the queue down
        state, error_message = RunState.FAILED, human_message(error, run_dir)
        log_traceback(error, also_to=None)
    finally:
        trials = _settle_trials(run_dir, cancelled=control.cancel_requested())
        best_run, best_config = _best(trials, run_dir)
        write_sweep_result(
            run_dir,
            SweepResult(
                trials=trials,
                best_run=best_run,
                best_config=best_config,
                seconds=time.time() - started,
                cost=str(config.sweep_cost()),
                ray=where,
            ),
        )
        if ray.is_initialized():
            ray.shutdown()
    update_status(run_dir, state=state, finished=time.time(), heartbeat=time.time(), error=error_message)
    return state
