"""A frozen Keras base run by ONNX Runtime: the same numbers, about twice as fast on a CPU.

Feature extraction pushes every photo once through the frozen MobileNetV2,
and on a CPU that forward pass is most of a transfer run's wait. Measured on
this project's 2-core machine (MobileNetV2 at 160 px, batches of 32 and 64):
Keras ``predict_on_batch`` 4.6-4.8 ms per photo, XLA about ten times slower,
ONNX Runtime on a tf2onnx conversion of the same model 2.1-2.5 ms.

    base = fast_base(extractor)          # an OnnxBase, or the extractor itself
    features = base.predict_on_batch(images)

The conversion (about 1.3 s) happens once per model, weights and converter
versions; the .onnx file is kept under ``PAWLAB_HOME/cache/onnx/`` and
reused by every later run. A conversion is used only after its outputs agree
with Keras' on a probe batch. Anything that goes wrong (no onnxruntime, a
layer tf2onnx cannot convert, a disagreement) leaves the Keras model in
charge: slower, never different.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.config import get_settings
from core.fileio import atomic_write

log = logging.getLogger("pawlab.onnx")

OPSET = 17
# Probe photos compared between Keras and ONNX Runtime before a conversion is used.
PROBE_IMAGES = 2
# Agreement required, relative to the largest feature: float16, which the
# feature cache stores, resolves about 1e-3 of a value anyway.
TOLERANCE = 1e-3


class OnnxMismatchError(RuntimeError):
    """ONNX Runtime's outputs differ from Keras' on the probe batch."""


def _cores() -> int:
    """The cores this process may run on (a container's share, not the machine's)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclass
class OnnxBase:
    """A Keras model's forward pass in ONNX Runtime, called like the model it replaces.

    Each batch is cut into one slice per core, and the slices run side by side,
    one thread each, in one session: MobileNetV2's small layers share out badly over
    threads inside one operator, and on a loaded machine one descheduled
    thread stalls every operator. Measured on 2 cores at load 6 (640 photos,
    decoding included): 3.7-3.9 s of CPU and 2.6-4.2 s wall against 4.3-4.7 s
    and 5.9-10.5 s with ONNX Runtime's own two threads per operator.
    """

    session: Any  # onnxruntime.InferenceSession (untyped), safe to run from several threads
    input_name: str
    cores: int = field(default_factory=_cores)

    def __post_init__(self):
        self.workers = ThreadPoolExecutor(max_workers=self.cores, thread_name_prefix="onnx")

    def predict_on_batch(self, images) -> np.ndarray:
        images = np.asarray(images, dtype=np.float32)
        slices = np.array_split(images, max(1, min(self.cores, len(images))))
        return np.concatenate(list(self.workers.map(self._run, slices)))

    def _run(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: images})[0]


def fast_base(model, cache_dir: Path | None = None):
    """``model``'s forward pass in ONNX Runtime when it can be had, else ``model`` itself."""
    import keras

    if not isinstance(model, keras.Model):
        return model  # a stand-in (tests, counting wrappers): nothing to convert
    try:
        return onnx_base(model, cache_dir)
    except Exception as error:  # any failure only costs speed
        log.warning("Running %s in Keras: no ONNX Runtime version (%s: %s)", model.name, type(error).__name__, error)
        return model


def onnx_base(model, cache_dir: Path | None = None) -> OnnxBase:
    """``model`` in ONNX Runtime, converted once and kept on disk; raises if it cannot be."""
    path = onnx_path(model, cache_dir or get_settings().cache_dir / "onnx")
    if path.is_file():
        try:
            return _session(path.read_bytes())
        except Exception as error:  # damaged or unreadable: convert again
            log.warning("Converting %s again: %s is unreadable (%s)", model.name, path.name, error)
    serialized = _convert(model)
    base = _session(serialized)
    _check_agreement(model, base)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, serialized)
    return base


def onnx_path(model, cache_dir: Path) -> Path:
    """One file per model architecture, weights and converter versions.

    Layer names are part of the architecture: MobileNetV2 names its own, so a
    rebuilt base finds its file; a model with Keras' numbered default names
    may convert again.
    """
    return Path(cache_dir) / f"{model.name}-{_model_digest(model)}.onnx"


def _model_digest(model) -> str:
    import keras
    import tensorflow as tf
    import tf2onnx

    digest = hashlib.sha256()
    versions = {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tf2onnx": tf2onnx.__version__,
        "opset": OPSET,
    }
    digest.update(json.dumps(versions, sort_keys=True).encode())
    digest.update(model.to_json().encode())
    for weights in model.get_weights():
        digest.update(np.ascontiguousarray(weights).tobytes())
    return digest.hexdigest()[:20]


def _convert(model) -> bytes:
    import tensorflow as tf
    import tf2onnx

    # Any batch size; the model's own height, width and channels.
    signature = (tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name="image"),)
    # No tf2onnx optimizer passes: ONNX Runtime optimizes the graph itself when
    # it loads it, and they cost 0.8 s of a 2.1 s conversion for no speed.
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=OPSET, optimizers={})
    return proto.SerializeToString()


def _session(serialized: bytes) -> OnnxBase:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # OnnxBase runs one slice of a batch per core instead
    session = ort.InferenceSession(serialized, options, providers=["CPUExecutionProvider"])
    return OnnxBase(session, session.get_inputs()[0].name)


def _check_agreement(model, base: OnnxBase) -> None:
    """Raise OnnxMismatchError unless both runtimes give the same features on a probe batch."""
    shape = (PROBE_IMAGES, *model.input_shape[1:])
    probe = np.random.default_rng(0).uniform(0, 255, shape).astype(np.float32)
    expected = np.asarray(model(probe, training=False))
    got = base.predict_on_batch(probe)
    scale = max(1.0, float(np.abs(expected).max()))
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=0, atol=TOLERANCE * scale):
        raise OnnxMismatchError(
            f"largest difference {np.abs(got - expected).max():.3g} (allowed {TOLERANCE * scale:.3g})"
        )
