"""When to trust a run's answers: its calibration and its abstain thresholds, on disk.

At the end of every run the training process fits a temperature on the
validation split (core.runs.calibration), chooses the confidence below which
the answer is "unsure", and, for a model with a frozen ImageNet backbone,
fits the unknown-photo check on the training photos' embeddings
(core.models.novelty). They are kept in the run folder:

``trust.json``
    ``RunTrust`` (``calibrate(val_logits, val_labels)`` makes all but the last): temperature, expected calibration error before and after,
    the reliability bins, the abstain policy (threshold, target precision,
    cross-validated coverage and precision, the trade-off curve) and the
    unknown-photo threshold.
``novelty.npz``
    The unknown-photo check's reference embeddings (core.models.novelty).

Classify, the CLI, the HTTP API and the exports read them through
``read_trust``; a run made before trust.json existed answers uncalibrated
(temperature 1) and never abstains.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np

from core.fileio import read_json, write_json
from core.runs import calibration

TRUST_FILE = "trust.json"
NOVELTY_FILE = "novelty.npz"


class Abstain(StrEnum):
    """The two answers besides a class name."""

    UNSURE = "unsure"  # calibrated confidence below the run's threshold
    UNKNOWN = "unknown"  # the photo looks like none of the training photos


@dataclass
class RunTrust:
    temperature: float = 1.0  # probabilities are softmax(logits / temperature)
    # The saved model's accuracy on the validation photos calibration saw: with its
    # test-time flips, when it has them (the per-epoch figures are without).
    val_accuracy: float | None = None
    ece_before: float | None = None  # expected calibration error on validation, T = 1
    ece_after: float | None = None  # ... and with the fitted temperature
    reliability_before: list[dict] = field(default_factory=list)  # calibration.ReliabilityBin dicts
    reliability_after: list[dict] = field(default_factory=list)
    confidence_threshold: float = 0.0  # below it: "unsure" (0: never)
    target_precision: float | None = None
    cv_coverage: float | None = None  # share of validation photos answered (cross-validated)
    cv_precision: float | None = None  # share right among them (cross-validated)
    trade_off: list[dict] = field(default_factory=list)  # calibration.TradeOff dicts
    novelty_threshold: float | None = None  # None: no unknown-photo check (from-scratch models)

    def to_dict(self) -> dict:
        return asdict(self)


def calibrate(
    val_logits: np.ndarray, val_labels: np.ndarray, target_precision: float = calibration.TARGET_PRECISION
) -> RunTrust:
    """Temperature, calibration error and "unsure" threshold, all from the validation photos.

    The unknown-photo check is fitted separately (it needs the training
    photos' embeddings); ``novelty_threshold`` is left None here.
    """
    temperature = calibration.fit_temperature(val_logits, val_labels)
    before = calibration.softmax(val_logits)
    after = calibration.softmax(val_logits, temperature)
    policy = calibration.choose_threshold(after, val_labels, target_precision)
    return RunTrust(
        temperature=temperature,
        val_accuracy=float(np.mean(np.argmax(val_logits, axis=1) == val_labels)),
        ece_before=calibration.expected_calibration_error(before, val_labels),
        ece_after=calibration.expected_calibration_error(after, val_labels),
        reliability_before=[asdict(b) for b in calibration.reliability(before, val_labels)],
        reliability_after=[asdict(b) for b in calibration.reliability(after, val_labels)],
        confidence_threshold=policy.threshold,
        target_precision=policy.target_precision,
        cv_coverage=policy.cv_coverage,
        cv_precision=policy.cv_precision,
        trade_off=[asdict(point) for point in policy.curve],
    )


def write_trust(run_dir: str | os.PathLike, trust: RunTrust) -> None:
    write_json(Path(run_dir) / TRUST_FILE, trust.to_dict())


def read_trust(run_dir: str | os.PathLike) -> RunTrust:
    """The run's trust record; an uncalibrated, never-abstaining one when there is none."""
    record = read_json(Path(run_dir) / TRUST_FILE)
    if not record.ok:
        return RunTrust()
    known = RunTrust.__dataclass_fields__
    try:
        return RunTrust(**{key: value for key, value in record.value.items() if key in known})
    except TypeError:
        return RunTrust()
