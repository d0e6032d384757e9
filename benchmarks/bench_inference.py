"""How fast the Classify page answers: single photos and a drop of 20, per model.

    python benchmarks/bench_inference.py [--photos 50] [--batch 20] [--image-size 160]

For a cnn and a mobilenet_v2 (ImageNet weights from ../shared via a temporary
KERAS_HOME; untrained heads, which cost the same time as trained ones), each
saved as a completed run and loaded the way the app loads it
(core.serving.inference.Predictor.from_run):

- single: one ``predictor.predict([photo])`` per photo (decode + resize +
  model + softmax), as when a person drops one photo;
- drop: one ``predictor.predict(20 photos)`` call, reported per photo;
- the model call alone, three ways, to show why core.serving.inference compiles its
  own ``tf.function``: that function, ``model(x)`` eagerly, ``model.predict(x)``;
  and that function's first call after ``keras.backend.clear_session()``,
  which Streamlit runs after every script run unless the Classify page stops it;
- Grad-CAM: the first heatmap (traces the gradient graph) and later ones.

Photos are the real validation photos (about 500x375 JPEGs). Prints Markdown
tables, os.cpu_count() and the load averages sampled at start and end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from _common import cats_and_dogs, table, use_temp_homes

from core import defaults


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def timed(function, repeats: int) -> list[float]:
    """Milliseconds per call."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000)
    return times


def make_run(arch: str, image_size: int, runs_dir) -> str:
    """A completed run holding an untrained ``arch``: its recipe's config, facts naming the classes."""
    from core.models.zoo import build_model
    from core.runs.recipes import make_config
    from core.runs.store import RunFacts, RunState, create_run, update_status, write_facts
    from core.serving.inference import model_path

    config = make_config(cats_and_dogs(), arch, image_size=image_size)
    run_dir = create_run(config, runs_dir, state=RunState.RUNNING)
    write_facts(run_dir, RunFacts(classes=["cats", "dogs"]))
    build_model(arch, 2, image_size, seed=defaults.SEED).save(model_path(run_dir))
    update_status(run_dir, state=RunState.COMPLETED, finished=time.time())
    return run_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=50)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--image-size", type=int, default=defaults.IMAGE_SIZE)
    args = parser.parse_args()

    home = use_temp_homes()
    import tensorflow as tf

    from core.serving.inference import Predictor

    validation = cats_and_dogs() / "validation"
    cats, dogs = sorted((validation / "cats").glob("*.jpg")), sorted((validation / "dogs").glob("*.jpg"))
    photos = [p for pair in zip(cats, dogs) for p in pair][: args.photos]
    drop = photos[: args.batch]
    print(
        f"{len(photos)} validation photos, image size {args.image_size}, "
        f"TensorFlow {tf.__version__}, intra-op threads setting "
        f"{tf.config.threading.get_intra_op_parallelism_threads() or '0 (TensorFlow picks)'}; "
        f"os.cpu_count(): {os.cpu_count()}; load average (1/5/15 min) at start: {load()}\n"
    )

    latency_rows, call_rows, gradcam_rows = [], [], []
    for arch in ("cnn", "mobilenet_v2"):
        run_dir = make_run(arch, args.image_size, home / "runs")
        start = time.perf_counter()
        predictor = Predictor.from_run(run_dir)  # loads, compiles and warms up once
        load_ms = (time.perf_counter() - start) * 1000

        single = [timed(lambda p=p: predictor.predict([p]), 1)[0] for p in photos]
        drops = timed(lambda: predictor.predict(drop), 5)
        reported = [p.ms for p in predictor.predict(drop)]
        latency_rows.append(
            {
                "model": arch,
                "load ms": round(load_ms),
                "single median ms": statistics.median(single),
                "single p95 ms": percentile(single, 95),
                f"drop of {len(drop)} ms": statistics.median(drops),
                "drop per photo ms": statistics.median(drops) / len(drop),
                "drop p95 per photo ms": percentile(drops, 95) / len(drop),
                "reported ms (median)": statistics.median(reported),
            }
        )

        # The model call alone, on already decoded photos.
        one = np.stack([p.pixels for p in predictor.predict(drop[:1])]).astype(np.float32)
        many = np.stack([p.pixels for p in predictor.predict(drop)]).astype(np.float32)
        model = predictor.model
        for name, call in (
            ("compiled tf.function (ours)", predictor.probabilities),
            ("model(x) eager", lambda x: model(x, training=False)),
            ("model.predict(x)", lambda x: model.predict(x, verbose=0)),
        ):
            call(one), call(many)  # warm up
            call_rows.append(
                {
                    "model": arch,
                    "call": name,
                    "1 photo median ms": statistics.median(timed(lambda: call(one), 20)),
                    f"{len(drop)} photos median ms": statistics.median(timed(lambda: call(many), 5)),
                }
            )

        # What Streamlit does after every script run unless the Classify page
        # stops it: keras.backend.clear_session() empties TensorFlow's kernel
        # cache, and the next call instantiates and optimizes the graph again.
        import keras

        after_clear = []
        for _ in range(3):
            keras.backend.clear_session()
            after_clear += timed(lambda: predictor.probabilities(one), 1)
        call_rows.append(
            {
                "model": arch,
                "call": "ours, first call after keras clear_session()",
                "1 photo median ms": statistics.median(after_clear),
            }
        )

        [prediction] = predictor.predict(drop[:1])
        first = timed(lambda: predictor.gradcam(prediction), 1)[0]
        later = timed(lambda: predictor.gradcam(prediction), 10)
        gradcam_rows.append(
            {"model": arch, "first heatmap ms (trace)": first, "later heatmaps median ms": statistics.median(later)}
        )

    print(f"load average (1/5/15 min) at end: {load()}\n")
    print("## Answer latency (decode + resize + model + softmax)\n")
    print(table(latency_rows, list(latency_rows[0])))
    print("\n## Model call alone (decoded photos)\n")
    print(table(call_rows, list(call_rows[0])))
    print("\n## Grad-CAM\n")
    print(table(gradcam_rows, list(gradcam_rows[0])))


if __name__ == "__main__":
    main()
