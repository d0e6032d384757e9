"""A sweep's record: its trials and its result, as the Train page and the CLI read them.

A sweep trains many runs of one architecture that differ in a few knobs
(core.runs.search) and keeps the best by validation accuracy. It is one
entry in PawLab's queue: a run folder whose config carries a ``search``.
Its trials are run folders too, each naming the sweep in its config, so
they show in the runs table and compare like any run. When the sweep ends
(core.runs.sweep_driver, with Ray Tune) it writes ``sweep.json``:
``SweepResult``, every trial and the best.

No Ray here: the app imports this module.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.fileio import read_json, write_json
from core.runs.recipes import TrainConfig
from core.runs.store import RunFileError, RunState, read_config, run_dirs, summarize

SWEEP_FILE = "sweep.json"


@dataclass
class TrialResult:
    """One trial's line in sweep.json."""

    run: str
    knobs: dict
    state: str
    epochs: int
    best_val_accuracy: float | None
    test_accuracy: float | None

    @classmethod
    def from_run(cls, trial_dir: str | os.PathLike, knob_names) -> TrialResult:
        """A trial's line from its run folder (a RunFileError when it cannot be read)."""
        summary, config = summarize(trial_dir), read_config(trial_dir)
        return cls(
            run=summary.id,
            knobs=knob_values(config, knob_names),
            state=str(summary.state),
            epochs=summary.epochs,
            best_val_accuracy=summary.best_val_accuracy,
            test_accuracy=summary.test_accuracy,
        )

    @property
    def active(self) -> bool:
        return RunState(self.state).active


@dataclass
class SweepResult:
    """sweep.json: every trial, and the best one by validation accuracy."""

    trials: list[TrialResult] = field(default_factory=list)
    best_run: str | None = None
    best_config: dict | None = None  # the best trial's TrainConfig, to train again as a run
    seconds: float = 0.0  # the sweep's wall time, Ray start-up and feature pass included
    cost: str = ""  # core.runs.search.Cost
    ray: str = ""  # "embedded (loopback only)", or the cluster's address

    def to_dict(self) -> dict:
        return asdict(self)


def write_sweep_result(run_dir: str | os.PathLike, result: SweepResult) -> None:
    write_json(Path(run_dir) / SWEEP_FILE, result.to_dict())


def read_sweep_result(run_dir: str | os.PathLike) -> SweepResult | None:
    """The sweep's result; None before it ends, or if the file is damaged."""
    record = read_json(Path(run_dir) / SWEEP_FILE, dict)
    if not record.ok:
        return None
    try:
        data = dict(record.value)
        data["trials"] = [TrialResult(**trial) for trial in data.get("trials", [])]
        return SweepResult(**data)
    except TypeError:
        return None


def knob_values(config: TrainConfig, knob_names) -> dict:
    """A trial's value of each searched knob, read from its config (an augmentation by its name)."""
    return {name: config.augment.name if name == "augment" else getattr(config, name, None) for name in knob_names}


def trials_of(sweep_dir: str | os.PathLike) -> list[Path]:
    """The run folders of a sweep's trials, oldest first."""
    sweep_dir = Path(sweep_dir)
    trials = []
    for run_dir in run_dirs(sweep_dir.parent):
        try:
            if read_config(run_dir).sweep == sweep_dir.name:
                trials.append(run_dir)
        except (RunFileError, OSError):
            continue  # a damaged run is no trial of ours
    return trials
