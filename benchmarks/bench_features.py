"""Feature extraction: the frozen MobileNetV2 over real photos, in Keras and in ONNX Runtime.

    python benchmarks/bench_features.py [--photos N] [--arch mobilenet_v2] [--rounds 2]

The first N photos of cats vs dogs' train/ folder (default 800), decoded by
the training pipeline (core.data.pipeline.make_dataset) at 160 px in batches
of 32, through the architecture's frozen extractor
(core.models.zoo.build_frozen_parts), exactly as core.models.features does in a
cached_features run. Each round runs Keras, then ONNX Runtime (converted once,
in round 1; the conversion is timed on its own), each with a fresh pipeline,
so both decode every photo; "decode only" and "... only" time the two halves
alone, and the combined rows say how long the loop waited for decoded photos.
Wall and CPU seconds of this process are printed with the 1-minute load
average before and after each measurement: on a shared machine, compare the
rounds' ratios, not single numbers.
"""

from __future__ import annotations

import argparse
import os
import time

from _common import cats_and_dogs, use_temp_homes


class TimedBase:
    """Counts the seconds spent in the forward pass; the rest of a loop waits on the pipeline."""

    def __init__(self, base):
        self.base, self.seconds = base, 0.0

    def predict_on_batch(self, images):
        start = time.perf_counter()
        try:
            return self.base.predict_on_batch(images)
        finally:
            self.seconds += time.perf_counter() - start


def measure(label: str, work):
    load_before = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        f"{label:<28} wall {wall:6.2f} s  cpu {cpu:6.2f} s  "
        f"load {load_before:.2f}->{os.getloadavg()[0]:.2f}" + (f"  ({result})" if isinstance(result, str) else ""),
        flush=True,
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=800)
    parser.add_argument("--arch", default="mobilenet_v2")
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    use_temp_homes()

    from core.data.dataset import Sample
    from core.data.pipeline import make_dataset
    from core.models.features import extract_features
    from core.models.onnx_base import onnx_base
    from core.models.zoo import build_frozen_parts

    photos = sorted(path for path in (cats_and_dogs() / "train").rglob("*.jpg"))[: args.photos]
    samples = [Sample(str(path), int(path.parent.name == "dogs"), path.parent.name) for path in photos]
    print(
        f"{len(samples)} photos at {args.image_size} px, batches of {args.batch_size}, {os.cpu_count()} CPUs",
        flush=True,
    )

    extractor = measure("build Keras extractor", lambda: build_frozen_parts(args.arch, 2, args.image_size)[0])
    fast = measure("convert to ONNX + check", lambda: onnx_base(extractor))

    def extract(base):
        timed = TimedBase(base)
        dataset = make_dataset(samples, args.image_size, args.batch_size, training=False)
        wall = time.perf_counter()
        extract_features(timed, dataset)
        wall = time.perf_counter() - wall
        return f"forward {timed.seconds:.2f} s, waiting for decoded photos {wall - timed.seconds:.2f} s"

    def decode_only():
        for _ in make_dataset(samples, args.image_size, args.batch_size, training=False):
            pass

    images = [batch for batch, _ in make_dataset(samples, args.image_size, args.batch_size, training=False)]

    def forward_only(base):
        for batch in images:
            base.predict_on_batch(batch)

    for round_number in range(1, args.rounds + 1):
        measure(f"round {round_number}: decode only", decode_only)
        measure(f"round {round_number}: Keras only", lambda: forward_only(extractor))
        measure(f"round {round_number}: ONNX only", lambda: forward_only(fast))
        measure(f"round {round_number}: decode + Keras", lambda: extract(extractor))
        measure(f"round {round_number}: decode + ONNX", lambda: extract(fast))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
