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
once, through a ``tf.function`` with a fixed input signature, so a drop of 20
photos costs one call and no call ever retraces the graph.

Only model files PawLab wrote itself (``<run>/model.keras``) are loaded,
never a file someone uploaded.

TensorFlow is imported inside the functions that need it.
"""

from __future__ import annotations

import io
import os
import re
import time
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from core.csv_cells import write_csv
from core.data.images import ImageError, load_resized
from core.models.embeddings import EMBEDDING_SIZE  # the unknown-photo check's, as training's
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
        import tensorflow as tf

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
        # One graph for every batch size: the batch dimension is None.
        self._logits = tf.function(
            lambda images: model(images, training=False),
            input_signature=[tf.TensorSpec((None, size, size, 3), tf.float32)],
        )
        self._embed = _pooled_embedder(novelty.image_size) if novelty is not None else None
        self._gradcam: GradCam | None = None  # built on the first heatmap
        # Trace once now, so the first photo a person drops is answered quickly.
        self.probabilities(np.zeros((1, size, size, 3), np.uint8))
        if self._embed is not None:
            embed_size = novelty.image_size
            self.novelty_distances(np.zeros((1, embed_size, embed_size, 3), np.uint8))

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike) -> Predictor:
        """Load a run's model with its class names (facts.json), image size (config.json),
        calibration and thresholds (trust.json) and unknown-photo check (novelty.npz)."""
        config, classes = read_config(run_dir), read_facts(run_dir).classes
        if not classes:
            raise RunNotReadyError(f"Run {Path(run_dir).name} has not started training, so it knows no classes yet.")
        trust = read_trust(run_dir)
        model = load_run_model(run_dir)
        try:
            return cls(
                model,
                classes,
                config.image_size,
                name=Path(run_dir).name,
                trust=trust,
                novelty=_load_novelty(run_dir, trust),
            )
        except WeightsUnavailableError:
            # The unknown-photo check embeds photos with ImageNet MobileNetV2; its message is
            # three sentences about downloading, this is the one a person acts on.
            raise ModelLoadError(_weights_missing_sentence(Path(run_dir).name)) from None

    @property
    def thresholds(self) -> Thresholds:
        """The run's own thresholds (the Classify page starts its sliders there)."""
        novelty = self.trust.novelty_threshold if self.novelty is not None else None
        return Thresholds(self.trust.confidence_threshold, novelty)

    def logits(self, images: np.ndarray) -> np.ndarray:
        """The model's logits (N, classes) for uint8 or float images (N, S, S, 3) in [0, 255]."""
        return _batched(self._logits, images)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities (N, classes): softmax(logits / the run's temperature)."""
        return softmax(self.logits(images), self.trust.temperature)

    def novelty_distances(self, images: np.ndarray) -> np.ndarray:
        """Distance of each (N, S, S, 3) image, S the check's own size, to the training photos."""
        return self.novelty.distance(_batched(self._embed, images))

    def predict(
        self,
        sources: Sequence[PhotoSource],
        confidence_threshold: float | None = None,
        novelty_threshold: float | None = None,
    ) -> list[Prediction]:
        """One Prediction per source, in order; unreadable files get ``error`` set.

        The thresholds default to the run's (``thresholds``); a value given here
        replaces it for this call.
        """
        run = self.thresholds
        thresholds = Thresholds(
            run.confidence if confidence_threshold is None else float(confidence_threshold),
            run.novelty if novelty_threshold is None else float(novelty_threshold),
        )
        predictions, decoded = self._decode_all(sources)
        if decoded:
            self._classify(decoded, thresholds)
        return predictions

    def _decode_all(self, sources: Sequence[PhotoSource]) -> tuple[list[Prediction], list[_Decoded]]:
        predictions, decoded = [], []
        for index, source in enumerate(sources):
            name, source = _named_source(source, index)
            start = time.perf_counter()
            try:
                pixels = _decode(source, name, self.image_size)
            except ImageError as error:
                predictions.append(Prediction(file=name, error=str(error)))
                continue
            predictions.append(Prediction(file=name, pixels=pixels))
            decoded.append(_Decoded(predictions[-1], source, (time.perf_counter() - start) * 1000))
        return predictions, decoded

    def _classify(self, decoded: list[_Decoded], thresholds: Thresholds) -> None:
        """Fill in each decoded photo's probabilities, label, distance and answer."""
        start = time.perf_counter()
        probabilities = self.probabilities(np.stack([d.pixels for d in decoded]))
        distances: list[float | None] | np.ndarray = [None] * len(decoded)
        if self.novelty is not None:
            distances = self.novelty_distances(np.stack([self._embedding_pixels(d) for d in decoded]))
        model_ms_each = (time.perf_counter() - start) * 1000 / len(decoded)
        for item, probs, distance in zip(decoded, probabilities, distances):
            prediction, best = item.prediction, int(probs.argmax())
            prediction.label = self.classes[best]
            prediction.confidence = float(probs[best])
            prediction.probabilities = {name: float(p) for name, p in zip(self.classes, probs)}
            prediction.novelty_distance = None if distance is None else float(distance)
            prediction.abstained, prediction.reason = thresholds.answer(prediction)
            prediction.ms = round(item.decode_ms + model_ms_each, 2)

    def _embedding_pixels(self, item: _Decoded) -> np.ndarray:
        """The photo at the embeddings' size: the model's pixels when the sizes agree."""
        embed_size = self.novelty.image_size
        if self.image_size == embed_size:
            return item.pixels
        return _decode(item.source, item.prediction.file, embed_size)

    def gradcam(self, prediction: Prediction) -> np.ndarray:
        """Grad-CAM heatmap (conv grid size, values in [0, 1]) for the predicted class."""
        from core.serving.gradcam import GradCam

        if prediction.pixels is None:
            raise ValueError(f"{prediction.file} was not classified, so it has no heatmap.")
        if self._gradcam is None:
            self._gradcam = GradCam(self.model)
        return self._gradcam.heatmap(prediction.pixels, self.classes.index(prediction.label or ""))


@dataclass
class _Decoded:
    """A photo that decoded: its prediction (pixels set), where it came from, how long it took."""

    prediction: Prediction
    source: DecodableSource
    decode_ms: float

    @property
    def pixels(self) -> np.ndarray:
        assert self.prediction.pixels is not None  # set when the photo decoded
        return self.prediction.pixels


def _batched(function, images: np.ndarray) -> np.ndarray:
    """``function`` (a tf.function on float32 batches) over ``images``, MAX_BATCH at a time."""
    import tensorflow as tf

    batches = [
        function(tf.convert_to_tensor(images[start : start + MAX_BATCH], tf.float32)).numpy()
        for start in range(0, len(images), MAX_BATCH)
    ]
    return np.concatenate(batches).astype(np.float64)


def _pooled_embedder(image_size: int):
    """The frozen ImageNet MobileNetV2 that core.models.embeddings embeds training photos with."""
    import tensorflow as tf

    from core.models.embeddings import pooled_extractor

    extractor = pooled_extractor(image_size)
    return tf.function(
        lambda images: extractor(images, training=False),
        input_signature=[tf.TensorSpec((None, image_size, image_size, 3), tf.float32)],
    )


def _weights_missing_sentence(run_name: str) -> str:
    from core.models.weights import imagenet_weights_filename, keras_models_dir

    return (
        f"Run {run_name} checks for unknown photos with the ImageNet MobileNetV2 weights, which this "
        f"machine has not got and could not download: put {imagenet_weights_filename(EMBEDDING_SIZE)} "
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
