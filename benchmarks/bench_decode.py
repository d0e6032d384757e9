"""Does a model answer the same on training's fast decode as on inference's Pillow decode?

    python benchmarks/bench_decode.py [--run RUN_DIR] [--arch mobilenet_v2] [--epochs 5]

Training photos decode with ``Pixels.FAST`` (TensorFlow's JPEG decoder and an
area resize, core.data.native_decode); what a model is scored on, and what
Classify and the API see, with ``Pixels.INFERENCE`` (Pillow). This takes a
finished run (``--run``), or trains one on ../shared/data/cats_and_dogs in a
temporary PAWLAB_HOME, and classifies its test photos (the run's own test
split: photos neither training nor the choice of its best epoch saw) both
ways. It prints how many answers agree, the accuracy each way, the largest
change in the winning class's probability, and the pixels' difference (mean
and 99th percentile, levels 0-255).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from _common import REPO, cats_and_dogs, use_temp_homes


def train_a_run(arch: str, epochs: int) -> Path:
    runs = Path(os.environ["PAWLAB_HOME"]) / "runs"
    command = [sys.executable, "-m", "core", "train", "--data", str(cats_and_dogs()), "--arch", arch]
    command += ["--epochs", str(epochs), "--runs-dir", str(runs)]
    output = subprocess.run(command, cwd=REPO, check=True, capture_output=True, text=True).stdout
    return Path(output.split()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a finished run folder; default: train one")
    parser.add_argument("--arch", default="mobilenet_v2")
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    use_temp_homes()
    run_dir = args.run or train_a_run(args.arch, args.epochs)

    from core.data.images import Pixels
    from core.data.pipeline import make_dataset
    from core.models.zoo import load_saved_model
    from core.runs.run_split import run_splits
    from core.runs.store import MODEL_FILE, read_config

    config = read_config(run_dir)
    test = run_splits(run_dir, config).test
    model = load_saved_model(run_dir / MODEL_FILE)
    labels = np.array([sample.label for sample in test])

    def decoded(pixels: Pixels) -> np.ndarray:
        dataset = make_dataset(test, config.image_size, config.batch_size, training=False, pixels=pixels)
        return np.concatenate([images.numpy() for images, _ in dataset])

    images = {pixels: decoded(pixels) for pixels in Pixels}
    probabilities = {}
    for pixels, batch in images.items():
        logits = np.asarray(model.predict(batch, batch_size=config.batch_size, verbose=0), dtype=np.float64)
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities[pixels] = exp / exp.sum(axis=1, keepdims=True)
    answers = {pixels: p.argmax(axis=1) for pixels, p in probabilities.items()}
    same = int((answers[Pixels.FAST] == answers[Pixels.INFERENCE]).sum())
    winner = answers[Pixels.INFERENCE]
    rows = np.arange(len(test))
    shift = np.abs(probabilities[Pixels.FAST][rows, winner] - probabilities[Pixels.INFERENCE][rows, winner])
    difference = np.abs(images[Pixels.FAST].astype(int) - images[Pixels.INFERENCE].astype(int))

    print(f"run {run_dir.name} ({config.arch}, {config.image_size} px), {len(test)} test photos")
    print(f"same answer on both decodes: {same}/{len(test)} ({same / len(test):.1%})")
    for pixels in Pixels:
        print(f"accuracy with {pixels.value} pixels: {(answers[pixels] == labels).mean():.3f}")
    print(f"winning class's probability changed by at most {shift.max():.3f} (median {np.median(shift):.4f})")
    print(f"pixels off Pillow's: mean {difference.mean():.2f}, 99th percentile {np.percentile(difference, 99):.0f}")


if __name__ == "__main__":
    main()
