"""Temperature scaling, calibration error and the abstain threshold, on known numbers."""

from __future__ import annotations

import numpy as np

from core.runs.calibration import (
    choose_threshold,
    expected_calibration_error,
    fit_temperature,
    reliability,
    softmax,
    trade_off_curve,
)


def overconfident_logits(count=2000, seed=0):
    """Two classes; the true probability of class 1 is p, the logits claim 4x more certainty."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.02, 0.98, count)
    labels = (rng.uniform(size=count) < p).astype(int)
    honest = np.log(p / (1 - p))
    logits = np.stack([np.zeros(count), 4.0 * honest], axis=1)
    return logits, labels


def test_temperature_undoes_overconfidence():
    logits, labels = overconfident_logits()
    temperature = fit_temperature(logits, labels)
    assert 3.4 < temperature < 4.6  # the 4x over-statement, recovered
    before = expected_calibration_error(softmax(logits), labels)
    after = expected_calibration_error(softmax(logits, temperature), labels)
    assert before > 0.1 and after < 0.04


def test_temperature_keeps_the_predicted_class():
    logits, labels = overconfident_logits()
    temperature = fit_temperature(logits, labels)
    assert (softmax(logits, temperature).argmax(1) == softmax(logits).argmax(1)).all()


def test_reliability_bins_count_every_photo():
    logits, labels = overconfident_logits()
    bins = reliability(softmax(logits), labels)
    assert sum(b.count for b in bins) == len(labels)
    assert all(0.5 <= b.confidence <= 1.0 for b in bins)


def test_the_threshold_meets_the_target_precision_on_held_out_folds():
    logits, labels = overconfident_logits(4000)
    probabilities = softmax(logits, fit_temperature(logits, labels))
    policy = choose_threshold(probabilities, labels, target_precision=0.95)
    confident = probabilities.max(1) >= policy.threshold
    precision = (probabilities.argmax(1) == labels)[confident].mean()
    assert precision >= 0.95
    assert policy.cv_precision >= 0.93  # measured on folds that did not choose it
    assert 0.03 < policy.cv_coverage < 0.5  # about 1 photo in 10 is 95% sure here
    assert policy.curve and policy.curve[0].coverage <= policy.curve[-1].coverage


def test_a_model_that_is_always_right_answers_everything():
    labels = np.array([0, 1] * 50)
    probabilities = np.eye(2)[labels] * 0.8 + 0.1
    policy = choose_threshold(probabilities, labels)
    assert policy.threshold <= 0.9 and policy.cv_coverage == 1.0 and policy.cv_precision == 1.0


def test_the_trade_off_curve_ends_at_full_coverage():
    logits, labels = overconfident_logits(500)
    curve = trade_off_curve(softmax(logits), labels)
    assert curve[-1].coverage == 1.0
    assert abs(curve[-1].precision - (softmax(logits).argmax(1) == labels).mean()) < 1e-9
