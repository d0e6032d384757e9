"""Honest probabilities: temperature scaling, calibration error, and when to abstain.

A network trained with cross-entropy is over-confident: it says "100% cat"
for almost anything. The standard post-hoc fix is one scalar, a temperature
T, fitted on the validation split: probabilities are softmax(logits / T).
Then a confidence threshold is chosen on validation so that the answers the
model does give are right 99% of the time; below it the answer is "unsure".

    temperature = fit_temperature(val_logits, val_labels)
    ece_before, ece_after = expected_calibration_error(...), ...
    policy = choose_threshold(softmax(val_logits / temperature), val_labels, target_precision=0.99)

Pure NumPy (and SciPy's scalar minimiser); no TensorFlow.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field

import numpy as np

ECE_BINS = 15  # the usual choice (Guo et al., 2017)
TARGET_PRECISION = 0.99  # of the photos the model answers, this share must be right
CV_FOLDS = 5
# The temperature is searched in this range (log-space): 1/20 .. 20.
LOG_T_BOUNDS = (-3.0, 3.0)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    scaled = np.asarray(logits, np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def _nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    probabilities = softmax(logits, temperature)
    return float(-np.mean(np.log(probabilities[np.arange(len(labels)), labels] + 1e-12)))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of ``labels``."""
    from scipy.optimize import minimize_scalar

    labels = np.asarray(labels, int)
    result = minimize_scalar(
        lambda log_t: _nll(logits, labels, float(np.exp(log_t))), bounds=LOG_T_BOUNDS, method="bounded"
    )
    return float(np.exp(result.x))


@dataclass(frozen=True)
class ReliabilityBin:
    lower: float
    upper: float
    count: int
    confidence: float  # mean top probability in the bin
    accuracy: float  # share right in the bin


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> list[ReliabilityBin]:
    """Top-class confidence against accuracy, in equal-width bins (empty bins left out)."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    found = []
    for lower, upper in itertools.pairwise(edges):
        inside = (confidence > lower) & (confidence <= upper)
        if inside.any():
            found.append(
                ReliabilityBin(
                    float(lower),
                    float(upper),
                    int(inside.sum()),
                    float(confidence[inside].mean()),
                    float(correct[inside].mean()),
                )
            )
    return found


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Mean |accuracy - confidence| over bins, weighted by how many photos each holds."""
    total = len(labels)
    return float(
        sum(b.count / total * abs(b.accuracy - b.confidence) for b in reliability(probabilities, labels, bins))
    )


@dataclass(frozen=True)
class TradeOff:
    threshold: float
    coverage: float  # share of photos answered
    precision: float  # share right among the answered


def trade_off_curve(probabilities: np.ndarray, labels: np.ndarray) -> list[TradeOff]:
    """Coverage and precision for every distinct confidence used as the threshold."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(labels)
    order = np.argsort(-confidence)
    answered = np.arange(1, len(order) + 1)
    precision = np.cumsum(correct[order]) / answered
    curve = [
        TradeOff(float(confidence[order][i]), float(answered[i] / len(order)), float(precision[i]))
        for i in range(len(order))
        if i == len(order) - 1 or confidence[order][i + 1] < confidence[order][i]
    ]
    return curve


def _lowest_threshold(probabilities: np.ndarray, labels: np.ndarray, target: float) -> float:
    """The lowest threshold whose answered photos are at least ``target`` right (1.0 if none)."""
    meeting = [point.threshold for point in trade_off_curve(probabilities, labels) if point.precision >= target]
    return min(meeting) if meeting else 1.0


@dataclass
class AbstainPolicy:
    """When the model says "unsure": below ``threshold`` calibrated confidence."""

    threshold: float
    target_precision: float
    # Measured by cross-validation on the validation split: the threshold chosen
    # on the other folds, applied to the held-out fold.
    cv_coverage: float
    cv_precision: float
    curve: list[TradeOff] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def choose_threshold(
    probabilities: np.ndarray, labels: np.ndarray, target_precision: float = TARGET_PRECISION, seed: int = 0
) -> AbstainPolicy:
    """A confidence threshold for ``target_precision`` on answered photos, with an honest estimate.

    The threshold itself is chosen on all of ``probabilities``; its coverage
    and precision are estimated by choosing it on k-1 folds and applying it to
    the k-th, so the numbers are not measured on the photos that chose it.
    """
    labels = np.asarray(labels, int)
    folds = np.random.default_rng(seed).permutation(len(labels)) % CV_FOLDS
    answered = right = 0
    for fold in range(CV_FOLDS):
        held_out = folds == fold
        threshold = _lowest_threshold(probabilities[~held_out], labels[~held_out], target_precision)
        confident = probabilities[held_out].max(axis=1) >= threshold
        answered += int(confident.sum())
        right += int((probabilities[held_out].argmax(axis=1) == labels[held_out])[confident].sum())
    curve = trade_off_curve(probabilities, labels)
    return AbstainPolicy(
        threshold=_lowest_threshold(probabilities, labels, target_precision),
        target_precision=target_precision,
        cv_coverage=answered / max(1, len(labels)),
        cv_precision=right / answered if answered else 1.0,
        curve=curve[:: max(1, len(curve) // 50)],  # about 50 points are plenty for a chart
    )
