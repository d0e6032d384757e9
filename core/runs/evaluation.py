"""How good is a trained model: accuracy, per-class scores, confusions, mistakes.

A run is evaluated on its test split, which training never saw (neither for
fitting nor for choosing the best epoch): exactly the photos recorded in its
split.json when it started (core.runs.run_split), even if the dataset folder
changed since; a run from before split.json is split again by its seed and
fractions.

``evaluation.json`` (also what ``evaluate_model`` returns)::

    {
      "accuracy": 0.93,
      "balanced_accuracy": 0.91,         # the mean of the per-class recalls
      "count": 200,                      # test images
      "classes": ["cats", "dogs"],
      "per_class": {"cats": {"precision": .., "recall": .., "f1": .., "support": 100}, ...},
      "confusion_matrix": [[90, 10], [4, 96]],   # [true][predicted], class order as "classes"
      "misclassified": [
        {"file": "/abs/path.jpg", "true": "cats", "predicted": "dogs",
         "probabilities": {"cats": 0.2, "dogs": 0.8}}, ...   # calibrated: softmax(logits / T)
      ],
      "temperature": 1.4,                # the run's (trust.json; 1 for runs made before it)
      "ece_before": 0.05, "ece_after": 0.01,   # calibration error on test, T = 1 and fitted T
      # evaluate_run adds:
      "run": "<run id>", "split": "test", "seed": 1337, "evaluated": <unix time>
    }
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from core.data.dataset import Sample
from core.data.layout import Split
from core.data.splits import Splits
from core.defaults import BATCH_SIZE
from core.fileio import write_json
from core.runs.calibration import expected_calibration_error, softmax
from core.runs.run_split import missing_files, run_splits
from core.runs.store import EVALUATION_FILE, MODEL_FILE, read_config, read_facts
from core.runs.trust import read_trust

# How many missing photos an error message names.
MISSING_NAMED = 3


def scores(labels: np.ndarray, predictions: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, balanced accuracy, per-class precision/recall/f1/support and the confusion matrix.

    Balanced accuracy is the mean recall over the classes that have test photos: on a
    test split of 95 cats and 5 dogs, a model that always answers "cats" has 95%
    accuracy and 50% balanced accuracy.
    """
    count = len(classes)
    confusion = np.zeros((count, count), dtype=np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    per_class = {}
    for index, name in enumerate(classes):
        true_positives = confusion[index, index]
        predicted = confusion[:, index].sum()
        actual = confusion[index, :].sum()
        precision = true_positives / predicted if predicted else 0.0
        recall = true_positives / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {
            "precision": float(precision),
            "recall": float(recall),
            "f1": float(f1),
            "support": int(actual),
        }
    total = int(confusion.sum())
    recalls = [line["recall"] for line in per_class.values() if line["support"]]
    return {
        "accuracy": float(np.trace(confusion) / total) if total else 0.0,
        "balanced_accuracy": float(np.mean(recalls)) if recalls else 0.0,
        "count": total,
        "classes": list(classes),
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
    }


def evaluate_model(
    model,
    samples: list[Sample],
    classes: list[str],
    image_size: int,
    batch_size: int = BATCH_SIZE,
    temperature: float = 1.0,
    logits: np.ndarray | None = None,
) -> dict:
    """Score ``model`` (images -> logits) on ``samples``, through the training pipeline's decode,
    or score ``logits`` already worked out for them (then ``model`` is not called).

    ``temperature`` calibrates the probabilities; it never changes which class wins.
    """
    if logits is None:
        from core.data.pipeline import make_dataset

        dataset = make_dataset(samples, image_size, batch_size, training=False)
        images_only = dataset.map(lambda images, labels: images)
        logits = model.predict(images_only, verbose=0)
    logits = np.asarray(logits, dtype=np.float64)
    probabilities = softmax(logits, temperature)
    predictions = probabilities.argmax(axis=1)
    labels = np.array([s.label for s in samples])
    result = scores(labels, predictions, classes)
    result["misclassified"] = [
        {
            "file": sample.path,
            "true": classes[sample.label],
            "predicted": classes[predicted],
            "probabilities": {name: float(p) for name, p in zip(classes, probs)},
        }
        for sample, predicted, probs in zip(samples, predictions, probabilities)
        if predicted != sample.label
    ]
    result.update(
        temperature=temperature,
        ece_before=expected_calibration_error(softmax(logits), labels),
        ece_after=expected_calibration_error(probabilities, labels),
    )
    return result


def _check_evaluable(run_dir: Path, splits: Splits) -> None:
    """Raise ValueError with a sentence when the run's test photos cannot be scored as trained."""
    trained_on = read_facts(run_dir).classes
    if trained_on and splits.classes != trained_on:
        raise ValueError(
            f"The dataset's classes changed since training ({', '.join(trained_on)} "
            f"then, {', '.join(splits.classes)} now); this run cannot be evaluated on it."
        )
    if not splits.test:
        raise ValueError("The dataset has no test images to evaluate on.")
    missing = missing_files(splits, Split.TEST)
    if missing:
        raise ValueError(
            f"{len(missing)} of the run's {len(splits.test)} test photos are no longer in "
            f"{splits.root} ({', '.join(missing[:MISSING_NAMED])}); put them back to evaluate "
            "this run on the photos it was tested on."
        )


def _load_model(run_dir: Path):
    model_file = run_dir / MODEL_FILE
    if not model_file.exists():
        raise FileNotFoundError(f"Run {run_dir.name} has no saved model to evaluate.")
    from core.models.zoo import load_saved_model

    return load_saved_model(model_file)


def evaluate_run(
    run_dir: str | os.PathLike,
    model=None,
    splits: Splits | None = None,
    logits_of: Callable[[list[Sample]], np.ndarray | None] | None = None,
) -> dict:
    """Evaluate a run's best model on its test split; writes and returns evaluation.json.

    ``model`` and ``splits`` are what the training process has in hand already
    (the model it just loaded, the split it recorded); otherwise model.keras
    is loaded in Keras' safe mode and the split read from the run folder.
    ``logits_of``: the training process's quicker way to the same model's
    logits of the test photos (the head on the frozen base's features), or None.
    """
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    if splits is None:
        splits = run_splits(run_dir, config)
    _check_evaluable(run_dir, splits)
    logits = logits_of(splits.test) if logits_of is not None else None
    if model is None and logits is None:
        model = _load_model(run_dir)
    result = evaluate_model(
        model,
        splits.test,
        splits.classes,
        config.image_size,
        config.batch_size,
        temperature=read_trust(run_dir).temperature,
        logits=logits,
    )
    result.update(run=run_dir.name, split=str(Split.TEST), seed=config.seed, evaluated=time.time())
    write_json(run_dir / EVALUATION_FILE, result)
    return result
