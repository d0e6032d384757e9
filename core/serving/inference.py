"""Classifying photos with a trained run: files in, class probabilities and an answer out.

    run folder -> load model.keras once (Keras safe mode), trust.json and
    novelty.npz (core.runs.trust) -> Predictor
    photos -> decode + resize with core.data.images.load_resized (the training
    pipeline's own decode) -> one batch -> compiled model call -> logits
    -> softmax(logits / temperature): calibrated probabilities
    -> answer: the class, "unknown" (the photo's ImageNet embedding is far from
       every training photo's) or "unsure" (calibrated confidence below the
       run's threshold), with a reason sentence when it abstains

A run made before trust.json answers with temperature 1 and is never unsure;
a from-scratch model has no unknown-photo check.

A file that cannot be decoded gets an error sentence; the other files in the
same drop are still classified. The model is called on a whole batch at
once, so a drop of 20 photos costs one call, and callers in several threads at
once (the API's requests, the Classify page's sessions) share calls:
``ModelBatcher`` stacks the photos of every caller waiting into one forward
pass and hands each caller back its own rows.

What runs the model: a model with the frozen ImageNet MobileNetV2 base runs
in ONNX Runtime (core.models.onnx_base: the same numbers, about twice as fast
on a CPU); when its base still has the ImageNet weights and the unknown-photo
check embeds at the model's size, one pass gives both the logits and the
check's pooled embedding (the check's own extractor is that same base plus
global pooling). Other models run as a ``tf.function`` with a fixed input
signature, so no call ever retraces the graph.

Only model files PawLab wrote itself (``<run>/model.keras``) are loaded,
never a file someone uploaded.

TensorFlow is imported inside the functions that need it.
"""

from __future__ import annotations

import io
import os
import re
import threading
import time
import zipfile
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from core.csv_cells import write_csv
from core.data.images import ImageError, load_resized
from core.models.weights import WeightsUnavailableError
from core.runs.calibration import softmax
from core.runs.store import MODEL_FILE, RunState, RunSummary, list_runs, read_config, read_facts
from core.runs.trust import NOVELTY_FILE, Abstain, RunTrust, read_trust

if TYPE_CHECKING:
    from core.serving.gradcam import GradCam

# A path, raw bytes, a (file name, bytes) pair, or a file object with a
# ``name`` (Streamlit's UploadedFile).
PhotoSource = str | os.PathLike | bytes | tuple[str, bytes] | BinaryIO
# What _named_source turns one into: a path, or the bytes of the file.
DecodableSource = str | os.PathLike | bytes

# Photos per model call. A drop of up to this many photos is one call; larger
# drops are cut into batches of this size so memory stays bounded.
MAX_BATCH = 32
# The longest side of a photo shown next to its prediction (pixels).
PREVIEW_SIDE = 512


class RunNotReadyError(RuntimeError):
    """The run has no usable model (yet); the message is meant for a person."""


@dataclass
class Prediction:
    """What the model says about one file; ``error`` is set instead when it could not be read."""

    file: str
    label: str | None = None
    confidence: float | None = None
    probabilities: dict[str, float] | None = None
    ms: float | None = None  # this photo's decode plus its share of the batch's model time
    error: str | None = None
    pixels: np.ndarray | None = None  # the (S, S, 3) uint8 image the model saw
    abstained: Abstain | None = None  # None: the model answered ``label``
    reason: str | None = None  # why it abstained, for a person
    novelty_distance: float | None = None  # to the training photos, when the run has the check

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def answer(self) -> str | None:
        """The text a person reads: the class, or "unsure" / "unknown". A program reads ``abstained``:
        a class may be named "unsure" too, so this text alone cannot tell an abstention from a class."""
        if not self.ok:
            return None
        return self.label if self.abstained is None else str(self.abstained)

    def to_json(self) -> dict:
        """The CLI's and the API's JSON: {file, label, probabilities, ms, answer, abstained[, reason,
        novelty_distance]} or {file, error}; ``abstained`` is null when the model answered ``label``."""
        if self.error is not None:
            return {"file": self.file, "error": self.error}
        data = asdict(self)
        line = {key: data[key] for key in ("file", "label", "probabilities", "ms")}
        line |= {"answer": self.answer, "abstained": None if self.abstained is None else str(self.abstained)}
        return line | {key: data[key] for key in ("reason", "novelty_distance") if data[key] is not None}


@dataclass(frozen=True)
class Thresholds:
    """When a prediction is answered with something other than its class."""

    confidence: float  # calibrated top probability below this: "unsure"
    novelty: float | None  # distance to the training photos above this: "unknown" (None: no check)

    def answer(self, prediction: Prediction) -> tuple[Abstain | None, str | None]:
        """(abstained, reason): (None, None) when the model answers its class; an unknown photo is
        unknown however sure the model is."""
        distance, confidence = prediction.novelty_distance, prediction.confidence
        if distance is not None and self.novelty is not None and distance > self.novelty:
            return Abstain.UNKNOWN, (
                f"looks like none of the training photos (distance {distance:.3f} > {self.novelty:.3f})"
            )
        if confidence is None or confidence < self.confidence:  # None: not classified, never sure
            return Abstain.UNSURE, f"only {confidence:.0%} sure; this run answers from {self.confidence:.0%}"
        return None, None


def model_path(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / MODEL_FILE


class ModelLoadError(RunNotReadyError):
    """The run's model.keras exists but cannot be used; the message is one sentence saying why."""


# What Keras raises for a model file it cannot rebuild: an unknown or unsafe layer (TypeError,
# ValueError), a damaged archive (BadZipFile, KeyError, EOFError, OSError).
MODEL_LOAD_ERRORS = (TypeError, ValueError, KeyError, AttributeError, EOFError, OSError, zipfile.BadZipFile)
# Keras names each object it could not rebuild as "<class 'keras...Lambda'> could not be deserialized".
_UNREBUILT_CLASS = re.compile(r"<class '(?:[\w.]+\.)?(\w+)'> could not be deserialized")


def load_run_model(run_dir: str | os.PathLike):
    """The run's best model (model.keras), loaded in Keras' safe mode without its optimizer.

    RunNotReadyError when there is none, ModelLoadError when Keras cannot rebuild it.
    """
    path = model_path(run_dir)
    if not path.is_file():
        raise RunNotReadyError(f"Run {Path(run_dir).name} has no saved model yet.")
    from core.models.zoo import load_saved_model

    try:
        return load_saved_model(path, compile=False)
    except MODEL_LOAD_ERRORS as error:
        raise ModelLoadError(
            f"The model of run {Path(run_dir).name} cannot be loaded: {why_unloadable(error)}."
        ) from error


def why_unloadable(error: BaseException) -> str:
    """Keras' long, nested load error as half a sentence for a person."""
    message = str(error)
    layers = [name for name in _UNREBUILT_CLASS.findall(message) if name not in ("Functional", "Sequential")]
    if layers or "Lambda" in message:
        layer = layers[0] if layers else "Lambda"
        return (
            f"it has a {layer} layer that Keras' safe mode will not rebuild "
            "(only models PawLab trained, with its own layers, can be loaded)"
        )
    if isinstance(error, (zipfile.BadZipFile, KeyError, EOFError, OSError)) or ".keras` zip file" in message:
        return "model.keras is damaged or is not a Keras model archive"
    first_line = message.strip().splitlines()[0] if message.strip() else type(error).__name__
    return first_line.rstrip(".")[:200]


class Predictor:
    """A model with its class names, input size and trust record, ready to classify batches of photos.

    ``trust`` (default: uncalibrated, never unsure) gives the temperature and
    the "unsure" threshold; ``novelty`` the unknown-photo check (None: none).

    One Predictor may be shared by many threads (the API's requests, every
    Classify session of a run): ``predict`` decodes its photos in the calling
    thread, then waits in ``ModelBatcher`` with the other callers; whichever
    finds the model idle runs one forward pass for the photos of all of them
    and each gets back its own rows, so no caller sees another's answers.
    """

    def __init__(
        self,
        model,
        classes: Sequence[str],
        image_size: int,
        name: str = "",
        trust: RunTrust | None = None,
        novelty=None,
    ):
        self.model = model
        self.classes = list(classes)
        self.image_size = int(image_size)
        self.name = name or model.name
        self.trust = trust or RunTrust()
        self.novelty = novelty  # core.models.novelty.NoveltyDetector
        output_size = model.output.shape[-1]
        if output_size != len(self.classes):
            raise ValueError(
                f"The model has {output_size} outputs but the run names "
                f"{len(self.classes)} classes ({', '.join(self.classes)})."
            )
        size = self.image_size
        embed_size = novelty.image_size if novelty is not None else None
        # (logits | pooled embedding) in one pass, or None when the check needs its own pass.
        self._joint = _joint_function(model, embed_size) if embed_size == size else None
        self._logits = _logits_function(model, size) if self._joint is None else None
        self._embed = _pooled_embedder(embed_size) if embed_size is not None and self._joint is None else None
        # The check's photos decoded at their own size, as training embedded them.
        self._embed_pixels = embed_size is not None and embed_size != size
        self.batcher = ModelBatcher(self._forward)
        self._gradcam: GradCam | None = None  # built on the first heatmap
        self._gradcam_lock = threading.Lock()
        # Trace once now, so the first photo a person drops is answered quickly.
        warm: tuple[np.ndarray, ...] = (np.zeros((1, size, size, 3), np.uint8),)
        if self._embed_pixels:
            warm += (np.zeros((1, novelty.image_size, novelty.image_size, 3), np.uint8),)
        self._forward(*warm)

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike) -> Predictor:
        """Load a run's model with its class names (facts.json), image size (config.json),
        calibration and thresholds (trust.json) and unknown-photo check (novelty.npz)."""
        config, classes = read_config(run_dir), read_facts(run_dir).classes
        if not classes:
            raise RunNotReadyError(f"Run {Path(run_dir).name} has not started training, so it knows no classes yet.")
        trust = read_trust(run_dir)
        model = load_run_model(run_dir)
        novelty = _load_novelty(run_dir, trust)
        try:
            return cls(model, classes, config.image_size, name=Path(run_dir).name, trust=trust, novelty=novelty)
        except WeightsUnavailableError:
            # The unknown-photo check embeds photos with ImageNet MobileNetV2 at its own size; its
            # message is three sentences about downloading, this is the one a person acts on.
            size = novelty.image_size if novelty is not None else config.image_size
            raise ModelLoadError(_weights_missing_sentence(Path(run_dir).name, size)) from None

    @property
    def thresholds(self) -> Thresholds:
        """The run's own thresholds (the Classify page starts its sliders there)."""
        novelty = self.trust.novelty_threshold if self.novelty is not None else None
        return Thresholds(self.trust.confidence_threshold, novelty)

    @property
    def one_pass(self) -> bool:
        """True when one forward pass gives both the logits and the unknown-photo check's embedding."""
        return self._joint is not None

    def logits(self, images: np.ndarray) -> np.ndarray:
        """The model's logits (N, classes) for uint8 or float images (N, S, S, 3) in [0, 255]."""
        if self._joint is not None:
            return _batched(self._joint, images)[:, : len(self.classes)]
        return _batched(self._logits, images)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities (N, classes): softmax(logits / the run's temperature)."""
        return softmax(self.logits(images), self.trust.temperature)

    def novelty_distances(self, images: np.ndarray) -> np.ndarray:
        """Distance of each (N, S, S, 3) image, S the check's own size, to the training photos."""
        if self._joint is not None:
            return self.novelty.distance(_batched(self._joint, images)[:, len(self.classes) :])
        return self.novelty.distance(_batched(self._embed, images))

    def predict(
        self,
        sources: Sequence[PhotoSource],
        confidence_threshold: float | None = None,
        novelty_threshold: float | None = None,
    ) -> list[Prediction]:
        """One Prediction per source, in order; unreadable files get ``error`` set.

        The thresholds default to the run's (``thresholds``); a value given here
        replaces it for this call. Safe to call from many threads at once: the
        photos of callers waiting together go through the model as one batch
        (``ModelBatcher``), and each call gets only its own photos' answers.
        """
        run = self.thresholds
        thresholds = Thresholds(
            run.confidence if confidence_threshold is None else float(confidence_threshold),
            run.novelty if novelty_threshold is None else float(novelty_threshold),
        )
        predictions, decoded = self._decode_all(sources)
        for start in range(0, len(decoded), MAX_BATCH):  # bounded memory for a large drop
            self._classify(decoded[start : start + MAX_BATCH], thresholds)
        return predictions

    def _decode_all(self, sources: Sequence[PhotoSource]) -> tuple[list[Prediction], list[_Decoded]]:
        predictions, decoded = [], []
        for index, source in enumerate(sources):
            name, source = _named_source(source, index)
            start = time.perf_counter()
            try:
                pixels = _decode(source, name, self.image_size)
                embed_pixels = _decode(source, name, self.novelty.image_size) if self._embed_pixels else None
            except ImageError as error:
                predictions.append(Prediction(file=name, error=str(error)))
                continue
            predictions.append(Prediction(file=name, pixels=pixels))
            decoded.append(_Decoded(predictions[-1], embed_pixels, (time.perf_counter() - start) * 1000))
        return predictions, decoded

    def _classify(self, decoded: list[_Decoded], thresholds: Thresholds) -> None:
        """Fill in each decoded photo's probabilities, label, distance and answer."""
        start = time.perf_counter()
        inputs: tuple[np.ndarray, ...] = (np.stack([d.pixels for d in decoded]),)
        if self._embed_pixels:
            inputs += (np.stack([d.embed_pixels for d in decoded if d.embed_pixels is not None]),)
        logits, *embeddings = self.batcher(*inputs)
        probabilities = softmax(logits, self.trust.temperature)
        distances: list[float | None] | np.ndarray = [None] * len(decoded)
        if embeddings:
            distances = self.novelty.distance(embeddings[0])
        model_ms_each = (time.perf_counter() - start) * 1000 / len(decoded)
        for item, probs, distance in zip(decoded, probabilities, distances):
            prediction, best = item.prediction, int(probs.argmax())
            prediction.label = self.classes[best]
            prediction.confidence = float(probs[best])
            prediction.probabilities = {name: float(p) for name, p in zip(self.classes, probs)}
            prediction.novelty_distance = None if distance is None else float(distance)
            prediction.abstained, prediction.reason = thresholds.answer(prediction)
            prediction.ms = round(item.decode_ms + model_ms_each, 2)

    def _forward(self, images: np.ndarray, embed_images: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
        """(logits,) or (logits, check embeddings) for a stacked batch: what ModelBatcher runs."""
        if self._joint is not None:
            both = _batched(self._joint, images)
            return both[:, : len(self.classes)], both[:, len(self.classes) :]
        logits = _batched(self._logits, images)
        if self._embed is None:
            return (logits,)
        return logits, _batched(self._embed, images if embed_images is None else embed_images)

    def gradcam(self, prediction: Prediction) -> np.ndarray:
        """Grad-CAM heatmap (conv grid size, values in [0, 1]) for the predicted class; only when asked."""
        from core.serving.gradcam import GradCam

        if prediction.pixels is None:
            raise ValueError(f"{prediction.file} was not classified, so it has no heatmap.")
        with self._gradcam_lock:  # sessions sharing this Predictor build it once
            if self._gradcam is None:
                self._gradcam = GradCam(self.model)
        return self._gradcam.heatmap(prediction.pixels, self.classes.index(prediction.label or ""))


@dataclass
class _Decoded:
    """A photo that decoded: its prediction (pixels set), its pixels at the check's size when
    those differ, how long decoding took."""

    prediction: Prediction
    embed_pixels: np.ndarray | None
    decode_ms: float

    @property
    def pixels(self) -> np.ndarray:
        assert self.prediction.pixels is not None  # set when the photo decoded
        return self.prediction.pixels


@dataclass
class _Job:
    """One caller's photos waiting for the model, and then its own rows of the outputs."""

    inputs: tuple[np.ndarray, ...]
    outputs: tuple[np.ndarray, ...] | None = None
    error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self.outputs is not None or self.error is not None

    @property
    def photos(self) -> int:
        return len(self.inputs[0])


class ModelBatcher:
    """Many threads' model calls as few forward passes; each thread gets back only its own rows.

    ``batcher(*inputs)`` with arrays of N rows each returns ``forward``'s
    outputs for those N rows. A caller that finds the model idle runs it at
    once for every call waiting then, its own included (oldest first, up to
    ``max_photos`` rows, at least one call whole); calls that arrive meanwhile
    wait, and the first of them to wake runs the next batch. So a lone caller
    never waits for company, and under load the batches fill by themselves.
    There is no thread of its own to start or stop: the callers' threads do
    the work. One forward pass runs at a time, so thread pools inside it
    (ONNX Runtime's, TensorFlow's) are never run by several calls at once.
    """

    def __init__(self, forward: Callable[..., tuple[np.ndarray, ...]], max_photos: int = MAX_BATCH):
        self._forward = forward
        self.max_photos = max_photos
        self._waiting: deque[_Job] = deque()
        self._busy = False
        self._condition = threading.Condition()
        self.passes = 0  # forward passes run so far

    def __call__(self, *inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        job = _Job(inputs)
        with self._condition:
            self._waiting.append(job)
        while True:
            with self._condition:
                while self._busy and not job.done:
                    self._condition.wait()
                if job.done:
                    break
                self._busy = True
                batch = self._take_batch()
            try:
                self._run(batch)
            finally:
                with self._condition:
                    self._busy = False
                    self._condition.notify_all()
        if job.error is not None:
            raise job.error
        assert job.outputs is not None
        return job.outputs

    def _take_batch(self) -> list[_Job]:
        batch = [self._waiting.popleft()]
        photos = batch[0].photos
        while self._waiting and photos + self._waiting[0].photos <= self.max_photos:
            batch.append(self._waiting.popleft())
            photos += batch[-1].photos
        return batch

    def _run(self, batch: list[_Job]) -> None:
        stacked = [np.concatenate(rows) for rows in zip(*(job.inputs for job in batch))]
        self.passes += 1
        try:
            outputs = self._forward(*stacked)
        except BaseException as error:  # every caller in the batch raises it in its own thread
            for job in batch:
                job.error = error
            return
        start = 0
        for job in batch:
            end = start + job.photos
            job.outputs = tuple(output[start:end] for output in outputs)
            start = end


def _batched(function, images: np.ndarray) -> np.ndarray:
    """``function`` (on float32 batches) over ``images``, MAX_BATCH at a time."""
    batches = [
        np.asarray(function(np.asarray(images[start : start + MAX_BATCH], np.float32)))
        for start in range(0, len(images), MAX_BATCH)
    ]
    return np.concatenate(batches).astype(np.float64)


def _logits_function(model, image_size: int):
    """The model's forward pass: in ONNX Runtime when it has the MobileNetV2 base, else a tf.function."""
    import tensorflow as tf

    if _has_imagenet_base_layers(model):
        return _onnx_or_keras(model)
    # One graph for every batch size: the batch dimension is None.
    return tf.function(
        lambda images: model(images, training=False),
        input_signature=[tf.TensorSpec((None, image_size, image_size, 3), tf.float32)],
    )


def _pooled_embedder(image_size: int):
    """The frozen ImageNet MobileNetV2 that core.models.embeddings embeds training photos with."""
    from core.models.embeddings import pooled_extractor

    return _onnx_or_keras(pooled_extractor(image_size))


def _onnx_or_keras(model):
    """``model`` on float32 batches in ONNX Runtime (same numbers, checked), in Keras otherwise."""
    import tensorflow as tf

    from core.models.onnx_base import fast_base

    runner = fast_base(model)
    if runner is not model:
        return runner.predict_on_batch
    size = model.input_shape[1]
    return tf.function(
        lambda images: model(images, training=False),
        input_signature=[tf.TensorSpec((None, size, size, 3), tf.float32)],
    )


def _has_imagenet_base_layers(model) -> bool:
    from core.models.zoo import MOBILENET_OUTPUT_LAYER

    names = {layer.name for layer in model.layers}
    return MOBILENET_OUTPUT_LAYER in names and "preprocess" in names and "mirror_pair" not in names


def _joint_function(model, image_size: int):
    """One pass for (logits | pooled embedding), or None when that would not give the check's numbers.

    The check's extractor is the ImageNet MobileNetV2 at its size plus global
    pooling. A transfer model at that size whose base layers hold exactly those
    weights (frozen, never fine-tuned) computes the same feature map on its way
    to the logits, so pooling its ``out_relu`` is the embedding.
    """
    if not _has_imagenet_base_layers(model) or model.input_shape[1] != image_size:
        return None
    import keras

    from core.models.embeddings import pooled_extractor
    from core.models.zoo import MOBILENET_OUTPUT_LAYER, base_layers

    reference = pooled_extractor(image_size)
    for layer in base_layers(model):
        ours, imagenet = layer.get_weights(), reference.get_layer(layer.name).get_weights()
        if len(ours) != len(imagenet) or not all(np.array_equal(a, b) for a, b in zip(ours, imagenet)):
            return None  # fine-tuned: its features are no longer the check's
    pooled = keras.layers.GlobalAveragePooling2D(name="check_pool")(model.get_layer(MOBILENET_OUTPUT_LAYER).output)
    joint = keras.Model(model.input, keras.layers.Concatenate(name="logits_and_embedding")([model.output, pooled]))
    return _onnx_or_keras(joint)


def _weights_missing_sentence(run_name: str, image_size: int) -> str:
    from core.models.weights import imagenet_weights_filename, keras_models_dir

    return (
        f"Run {run_name} checks for unknown photos with the ImageNet MobileNetV2 weights, which this "
        f"machine has not got and could not download: put {imagenet_weights_filename(image_size)} "
        f"into {keras_models_dir()} and try again."
    )


def _load_novelty(run_dir: str | os.PathLike, trust: RunTrust):
    """The run's unknown-photo check, or None (from-scratch model, or a run made before it)."""
    path = Path(run_dir) / NOVELTY_FILE
    if trust.novelty_threshold is None or not path.is_file():
        return None
    from core.models.novelty import NoveltyDetector

    return NoveltyDetector.load(path)


def _named_source(source: PhotoSource, index: int) -> tuple[str, DecodableSource]:
    """(file name for messages, something core.data.images can decode)."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source), source  # as given: a/cat.1.jpg and b/cat.1.jpg stay apart
    if isinstance(source, (bytes, bytearray)):
        return f"photo {index + 1}", bytes(source)
    if isinstance(source, tuple):
        name, data = source
        return Path(name).name or f"photo {index + 1}", bytes(data)
    name = Path(getattr(source, "name", "") or f"photo {index + 1}").name
    # Read the whole upload: an UploadedFile may have been read before.
    data = source.getvalue() if hasattr(source, "getvalue") else _read_all(source)
    return name, data


def _read_all(file: BinaryIO) -> bytes:
    if hasattr(file, "seek"):
        file.seek(0)
    return file.read()


def _decode(source: DecodableSource, name: str, image_size: int) -> np.ndarray:
    if isinstance(source, (str, os.PathLike)) and not os.path.isfile(source):
        raise ImageError(f"{name} was not found.")
    if isinstance(source, bytes) and not source:
        raise ImageError(f"{name} is empty (0 bytes).")
    return load_resized(_named_file(source, name), image_size)


def _named_file(source: DecodableSource, name: str) -> str | os.PathLike | BinaryIO:
    """Bytes as a file object with a name: core.data.images names the file in its messages."""
    if not isinstance(source, bytes):
        return source
    named = io.BytesIO(source)
    named.name = name
    return named


def preview_image(source: PhotoSource, max_side: int = PREVIEW_SIDE) -> np.ndarray:
    """An upright RGB copy of a photo for display, at most ``max_side`` pixels wide or high."""
    from core.data.images import open_rgb

    name, decodable = _named_source(source, 0)
    image = open_rgb(_named_file(decodable, name), draft_size=(max_side, max_side))
    image.thumbnail((max_side, max_side))
    return np.asarray(image, dtype=np.uint8)


def classifiable_runs(runs_dir: str | os.PathLike | None = None) -> list[RunSummary]:
    """Completed runs with a saved model: best test accuracy first, then newest."""
    runs = [
        run
        for run in list_runs(runs_dir)
        if run.state == RunState.COMPLETED and model_path(run.path).is_file() and run.classes
    ]
    # list_runs is newest first and sorted() is stable: equal accuracies stay newest first.
    return sorted(runs, key=lambda run: -(run.test_accuracy if run.test_accuracy is not None else -1.0))


def summary_rows(predictions: Sequence[Prediction], classes: Sequence[str]) -> list[dict]:
    """One row per file for a table or CSV: file, prediction, answer, reason, confidence, ms,
    P(class)..., error."""
    rows = []
    for prediction in predictions:
        row = {
            "file": prediction.file,
            "prediction": prediction.label,
            "answer": prediction.answer,
            "abstained": "" if prediction.abstained is None else str(prediction.abstained),
            "reason": prediction.reason or "",
            "confidence": prediction.confidence,
            "ms": prediction.ms,
        }
        for name in classes:
            row[f"p_{name}"] = (prediction.probabilities or {}).get(name)
        row["error"] = prediction.error or ""
        rows.append(row)
    return rows


def predictions_csv(predictions: Sequence[Prediction], classes: Sequence[str]) -> str:
    """The summary rows as CSV; file and class names are a visitor's, so no cell may run as a formula."""
    rows = summary_rows(predictions, classes)
    return write_csv(rows, list(rows[0]) if rows else ["file"])
