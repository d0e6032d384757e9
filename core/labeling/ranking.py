"""The suggester: a class for each unlabelled photo, how sure it is, and the order to offer them.

Two views of the frozen embeddings (unit length), averaged: ridge regression
solved in closed form over the labelled photos (one Gram matrix and one
inverse, NumPy only, so a round starts and fits in a fraction of a second),
its softmax temperature fitted to its own leave-one-out scores (ridge gives
them for free); and the vote of the NEIGHBOURS nearest labelled photos. The
two err on different photos.

The order is what a person pays for: every wrong suggestion is a correction.
Measured on cats vs dogs (benchmarks/bench_labeling.py: 5 labelled photos per
class, 1990 to label, 50 a round, 3 starting draws): uncertainty first
teaches the model most per photo but shows a person its worst guesses all
along (scikit-learn's logistic regression: 67-88 corrections); random order
32-35; ridge alone, the most confident first 35-37, and the most confident
first *taken in turn from each suggested class* 28-30 (a batch of one class
only tilts the next fit towards it); with the neighbours' vote, 20-21. The
hard photos come last, when the model has seen nearly everything.

A photo farther from every labelled photo than the labelled photos are from
each other (their leave-one-out nearest-neighbour distances: the QUANTILE,
times MARGIN) looks like none of the classes: it is flagged ``unknown`` and
offered last, as "not any of these". Measured with the doctor's ten
strangers (tests/_planted.py) against cats and dogs: none flagged with 10
labelled photos (a threshold of 0.88; they lie at 0.58-0.75), 7 of 10 with
1000 labelled and 9 with 1990 (0.53); no pet of the pool or of the
validation photos flagged at any of 10, 100, 500 or 1500 labelled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Ridge strength on unit-length embeddings plus a bias. The labelling loop's corrections
# on cats vs dogs, ridge alone: 1.5 -> 28-30, 2 -> 28, 3 -> 29-31, 4 -> 34, 10 -> 37-40.
RIDGE = 2.0
TEMPERATURES = np.geomspace(1.0, 100.0, 25)  # softmax temperatures tried on the leave-one-out scores
# The unknown check: distance (1 - cosine) to the nearest labelled photo above
# MARGIN x the QUANTILE of the labelled photos' own nearest-neighbour distances.
QUANTILE = 0.99
MARGIN = 1.25
MIN_REFERENCE = 4  # labelled photos needed before any photo is called unknown
# The k nearest labelled photos vote, and their vote is averaged with ridge's: the two err on
# different photos. Measured as above: ridge alone 28-30 corrections, with the vote 20-21.
NEIGHBOURS = 10
UNSURE_BELOW = 0.75  # a confidence below this is worded "unsure"


@dataclass(frozen=True)
class Offer:
    """One pool photo's place in the order, and what the model says of it."""

    index: int  # into the pool
    suggested: int | None  # class index; None when nothing is labelled yet
    confidence: float
    probabilities: np.ndarray  # (classes,)
    unknown: bool
    reason: str


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


@dataclass
class RidgeSuggester:
    """Kernel (dual) ridge regression with a linear kernel plus a bias, on one-hot targets."""

    labelled: np.ndarray  # unit-length embeddings of the labelled photos
    coefficients: np.ndarray  # (labelled, classes)
    temperature: float

    @classmethod
    def fit(cls, labelled: np.ndarray, labels: np.ndarray, num_classes: int, ridge: float = RIDGE) -> RidgeSuggester:
        kernel = labelled @ labelled.T + 1.0
        # float32 is plenty: the ridge keeps every eigenvalue at least RIDGE.
        inverse = np.linalg.inv(kernel + np.float32(ridge) * np.eye(len(kernel), dtype=np.float32))
        targets = np.eye(num_classes, dtype=np.float32)[labels]
        coefficients = inverse @ targets
        # Leave-one-out scores in closed form: y_i - alpha_i / inv_ii.
        held_out = targets - coefficients / np.diag(inverse)[:, None]
        return cls(labelled, coefficients.astype(np.float32), _best_temperature(held_out, labels))

    def scores(self, similarity: np.ndarray) -> np.ndarray:
        """From the pool's cosine similarities to the labelled photos, (pool, labelled)."""
        return (similarity + 1.0) @ self.coefficients

    def probabilities(self, similarity: np.ndarray) -> np.ndarray:
        return softmax(self.temperature * self.scores(similarity))


def _best_temperature(held_out: np.ndarray, labels: np.ndarray) -> float:
    """The temperature whose softmax gives the held-out photos' true class the best log-likelihood."""
    if len(np.unique(labels)) < 2:
        return float(TEMPERATURES[0])  # one class: nothing to calibrate against, stay modest
    losses = [
        -np.log(np.maximum(softmax(t * held_out)[np.arange(len(labels)), labels], 1e-12)).mean() for t in TEMPERATURES
    ]
    return float(TEMPERATURES[int(np.argmin(losses))])


def neighbour_votes(similarity: np.ndarray, labels: np.ndarray, num_classes: int, k: int = NEIGHBOURS) -> np.ndarray:
    """Each pool photo's k nearest labelled photos' classes, weighted by cosine similarity cubed, as probabilities."""
    k = min(k, similarity.shape[1])
    nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    weights = np.maximum(np.take_along_axis(similarity, nearest, axis=1), 0.0).astype(np.float64) ** 3
    votes = (weights[..., None] * np.eye(num_classes)[labels[nearest]]).sum(axis=1) + 1e-9
    return votes / votes.sum(axis=1, keepdims=True)


def unknown_threshold(labelled: np.ndarray) -> float:
    """Nearest-neighbour distance above which a photo looks like none of the labelled ones (inf: too few)."""
    if len(labelled) < MIN_REFERENCE:
        return float("inf")
    similarity = labelled @ labelled.T
    np.fill_diagonal(similarity, -np.inf)
    own = 1.0 - similarity.max(axis=1)
    return float(MARGIN * np.quantile(own, QUANTILE))


def margins(scores: np.ndarray) -> np.ndarray:
    """The best class's score minus the runner-up's: the order of confidence, without the
    ties a saturated probability (1.0 in float32) would give."""
    if scores.shape[1] < 2:
        return scores[:, 0].astype(np.float64)
    top_two = np.sort(scores.astype(np.float64), axis=1)[:, -2:]
    return top_two[:, 1] - top_two[:, 0]


def balanced_confident_order(scores: np.ndarray) -> list[int]:
    """Most confident first, taken in turn from each suggested class (a batch of one class tilts the next fit)."""
    suggested, margin = scores.argmax(axis=1), margins(scores)
    queues = [
        np.flatnonzero(suggested == c)[np.argsort(-margin[suggested == c], kind="stable")]
        for c in range(scores.shape[1])
    ]
    order: list[int] = []
    depth = 0
    while len(order) < len(scores):
        order += [int(queue[depth]) for queue in queues if depth < len(queue)]
        depth += 1
    return order


def _reason(classes_p: np.ndarray, unknown: bool, distance: float, threshold: float) -> str:
    ranked = np.argsort(-classes_p)
    if unknown:
        return (
            f"Looks like none of the classes: farther from every labelled photo ({distance:.2f}) than "
            f"labelled photos are from each other ({threshold:.2f}). Not any of these?"
        )
    if classes_p[ranked[0]] < UNSURE_BELOW and len(ranked) > 1:
        return f"The model is unsure: {classes_p[ranked[0]]:.0%} for its suggestion, {classes_p[ranked[1]]:.0%} for the next."
    return f"The model is {classes_p[ranked[0]]:.0%} sure of its suggestion."


def rank_for_labelling(labelled: np.ndarray, labels: np.ndarray, pool: np.ndarray, num_classes: int) -> list[Offer]:
    """Every pool photo, in the order a person should label it, each with the model's suggestion."""
    pool_units = unit_rows(pool)
    if len(labelled) == 0:
        uniform = np.full(num_classes, 1.0 / num_classes)
        reason = "No photo is labelled yet: label a few of each class and suggestions start."
        return [Offer(index, None, float(uniform[0]), uniform, False, reason) for index in range(len(pool))]
    references = unit_rows(labelled)
    model = RidgeSuggester.fit(references, labels, num_classes)
    similarity = pool_units @ references.T
    ridge = softmax(model.temperature * model.scores(similarity).astype(np.float64))
    probabilities = (ridge + neighbour_votes(similarity, labels, num_classes)) / 2
    distance = 1.0 - similarity.max(axis=1)
    threshold = unknown_threshold(references)
    unknown = distance > threshold
    known_order = [index for index in balanced_confident_order(probabilities) if not unknown[index]]
    strange_order = [int(index) for index in np.argsort(distance) if unknown[index]]  # the least strange first
    return [
        Offer(
            index,
            int(probabilities[index].argmax()),
            float(probabilities[index].max()),
            probabilities[index],
            bool(unknown[index]),
            _reason(probabilities[index], bool(unknown[index]), float(distance[index]), threshold),
        )
        for index in known_order + strange_order
    ]
