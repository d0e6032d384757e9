"""How good is a trained model: accuracy, per-class scores, confusions, mistakes.

A run is evaluated on its test split: the images ``core.data.splits.make_splits``
sets aside with the run's seed and fractions, which training never saw
(neither for fitting nor for choosing the best epoch).

``evaluation.json`` (also what ``evaluate_model`` returns)::

    {
      "accuracy": 0.93,
      "count": 200,                      # test images
      "classes": ["cats", "dogs"],
      "per_class": {"cats": {"precision": .., "recall": .., "f1": .., "support": 100}, ...},
      "confusion_matrix": [[90, 10], [4, 96]],   # [true][predicted], class order as "classes"
      "misclassified": [
        {"file": "/abs/path.jpg", "true": "cats", "predicted": "dogs",
         "probabilities": {"cats": 0.2, "dogs": 0.8}}, ...
      ],
      # evaluate_run adds:
      "run": "<run id>", "split": "test", "seed": 1337, "evaluated": <unix time>
    }
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from core.data.dataset import Sample
from core.fileio import write_json
from core.runs.store import EVALUATION_FILE, MODEL_FILE, read_config, read_facts


def scores(labels: np.ndarray, predictions: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, per-class precision/recall/f1/support and the confusion matrix."""
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
        per_class[name] = {"precision": float(precision), "recall": float(recall),
                           "f1": float(f1), "support": int(actual)}
    total = int(confusion.sum())
    return {
        "accuracy": float(np.trace(confusion) / total) if total else 0.0,
        "count": total,
        "classes": list(classes),
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
    }


def evaluate_model(model, samples: list[Sample], classes: list[str], image_size: int,
                   batch_size: int = 32) -> dict:
    """Score ``model`` (images -> logits) on ``samples``, through the training pipeline's decode."""
    from core.data.pipeline import make_dataset

    dataset = make_dataset(samples, image_size, batch_size, training=False)
    images_only = dataset.map(lambda images, labels: images)
    logits = model.predict(images_only, verbose=0)
    probabilities = _softmax(np.asarray(logits, dtype=np.float64))
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
    return result


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def run_test_split(config) -> tuple[list[str], list[Sample]]:
    """(classes, test samples) of a run's dataset, by the run's split rule."""
    from core.data.dataset import scan_dataset
    from core.data.splits import make_splits

    splits = make_splits(scan_dataset(config.data_root), seed=config.seed,
                         test_fraction=config.test_fraction,
                         validation_fraction=config.validation_fraction)
    return splits.classes, splits.test


def evaluate_run(run_dir: str | os.PathLike, model=None) -> dict:
    """Evaluate a run's best model on its test split; writes and returns evaluation.json.

    ``model`` skips loading model.keras (the training process passes the model
    it has just loaded); otherwise the file is loaded in Keras' safe mode.
    """
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    if model is None:
        model_file = run_dir / MODEL_FILE
        if not model_file.exists():
            raise FileNotFoundError(f"Run {run_dir.name} has no saved model to evaluate.")
        import keras

        model = keras.models.load_model(model_file, safe_mode=True)
    classes, test = run_test_split(config)
    trained_on = read_facts(run_dir).classes
    if trained_on and classes != trained_on:
        raise ValueError(
            f"The dataset's classes changed since training ({', '.join(trained_on)} "
            f"then, {', '.join(classes)} now); this run cannot be evaluated on it."
        )
    if not test:
        raise ValueError("The dataset has no test images to evaluate on.")
    result = evaluate_model(model, test, classes, config.image_size, config.batch_size)
    result.update(run=run_dir.name, split="test", seed=config.seed, evaluated=time.time())
    write_json(run_dir / EVALUATION_FILE, result)
    return result


def cli_evaluate(args) -> int:
    try:
        result = evaluate_run(args.run_dir)
    except (OSError, ValueError) as error:
        print(json.dumps({"error": str(error)}))
        return 1
    print(json.dumps(result, indent=2))
    return 0
