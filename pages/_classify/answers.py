"""Classify page: when the model answers, and each photo's answer shown plainly.

A prediction's answer is its class, "unsure" (calibrated confidence below the
threshold) or "unknown" (the photo looks like none of the training photos).
The thresholds start from the run's own (trust.json, chosen at the end of
training) and the "When to answer" sliders move them; answers are worked out
again from the predictions already made (core.serving.inference.Thresholds),
so moving a slider never calls the model.
"""

from __future__ import annotations

from dataclasses import replace

import streamlit as st

from core.models.zoo import ARCHITECTURES
from core.runs.store import RunSummary
from core.runs.trust import Abstain
from core.serving.inference import Prediction, Predictor, Thresholds
from pages._common.text import md

ABSTAIN_TITLES = {Abstain.UNSURE: "Not sure", Abstain.UNKNOWN: "None of these"}
NO_CHECK_SCRATCH = (
    "This model cannot say “None of these”: only models with a frozen ImageNet "
    "backbone can tell a photo of something else."
)
NO_CHECK_OLD = (
    "This run cannot say “None of these”: it was trained before PawLab learned to tell a photo of something else."
)


def answer_title(prediction: Prediction) -> str:
    """The answer as the page words it: the class, "Not sure", "None of these", or "" for a bad file."""
    if not prediction.ok:
        return ""
    return prediction.label or "" if prediction.abstained is None else ABSTAIN_TITLES[prediction.abstained]


def when_to_answer(predictor: Predictor, run: RunSummary) -> Thresholds:
    """The "When to answer" expander: sliders from the run's thresholds; returns the chosen ones."""
    run_thresholds, trust = predictor.thresholds, predictor.trust
    with st.expander("When to answer"):
        confidence = st.slider(
            "Answer “Not sure” below this confidence",
            0.0,
            1.0,
            float(run_thresholds.confidence),
            0.01,
            key=f"answer_confidence_{run.id}",
            format="%.2f",
            help=_confidence_help(predictor),
        )
        novelty = None
        if run_thresholds.novelty is not None:
            top = max(1.0, round(2 * run_thresholds.novelty, 2))
            novelty = st.slider(
                "Answer “None of these” beyond this distance from the training photos",
                0.0,
                top,
                float(run_thresholds.novelty),
                0.005,
                key=f"answer_novelty_{run.id}",
                format="%.3f",
                help="Cosine distance of the photo's ImageNet features to its nearest training photos. "
                f"The run chose {run_thresholds.novelty:.3f}: farther than 99.5% of its own "
                "training photos.",
            )
        else:
            spec = ARCHITECTURES.get(run.arch)
            st.caption(NO_CHECK_OLD if spec is not None and spec.frozen_base else NO_CHECK_SCRATCH)
        if trust.cv_coverage is not None and trust.cv_precision is not None:
            st.caption(
                f"At the run's own threshold it answered {trust.cv_coverage:.0%} of its validation "
                f"photos and was right on {trust.cv_precision:.1%} of those (cross-validated)."
            )
    return Thresholds(confidence, novelty)


def _confidence_help(predictor: Predictor) -> str:
    trust = predictor.trust
    if trust.target_precision is None:
        return "This run was not calibrated, so it starts by always answering (0)."
    return (
        f"The run chose {trust.confidence_threshold:.2f} so that at least "
        f"{trust.target_precision:.0%} of its answers were right on its validation photos."
    )


def reanswered(predictions: list[Prediction], thresholds: Thresholds) -> list[Prediction]:
    """Copies of ``predictions`` answered with ``thresholds`` (unreadable files as they are)."""
    answered = []
    for prediction in predictions:
        if prediction.ok:
            abstained, reason = thresholds.answer(prediction)
            prediction = replace(prediction, abstained=abstained, reason=reason)
        answered.append(prediction)
    return answered


def calibration_caption(predictor: Predictor) -> str:
    trust = predictor.trust
    if trust.ece_after is None:
        return (
            "This run was trained before PawLab calibrated its runs: the probabilities are the "
            "model's plain softmax, often surer than it is right."
        )
    return (
        f"Probabilities are calibrated (temperature {trust.temperature:.2f}, fitted on the run's "
        f"validation photos): a photo answered at 80% is right about 80% of the time. "
        f"Calibration error {trust.ece_before:.1%} before, {trust.ece_after:.1%} after."
    )


def show_answer(prediction: Prediction) -> None:
    """The answer as a heading: the class, or "Not sure" / "None of these" with the reason."""
    if prediction.abstained is None:
        st.badge("Answer", icon=":material/check_circle:", color="green")
        st.subheader(f"{md(prediction.label)} — {prediction.confidence:.1%}", anchor=False)
        return
    title = ABSTAIN_TITLES[prediction.abstained]
    unknown = prediction.abstained is Abstain.UNKNOWN
    st.badge(
        "No answer", icon=":material/block:" if unknown else ":material/help:", color="violet" if unknown else "orange"
    )
    st.subheader(f":{'violet' if unknown else 'orange'}[{title}]", anchor=False)
    reason = md(prediction.reason or "")
    alert = st.info if unknown else st.warning
    alert(
        f"{reason[:1].upper()}{reason[1:]}. The closest class: {md(prediction.label)} ({prediction.confidence:.1%}).",
        icon=":material/travel_explore:" if unknown else ":material/help:",
    )
