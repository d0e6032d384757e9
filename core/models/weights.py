"""ImageNet weights for MobileNetV2, found in Keras' cache or downloaded once.

Keras keeps downloaded weights in ``$KERAS_HOME/models`` (default
``~/.keras/models``). A machine with internet downloads the file on first
use, exactly as ``keras.applications.MobileNetV2(weights="imagenet")`` does;
an offline machine needs the file put there by hand, and gets a sentence
saying which file and where instead of a stack trace.
"""

from __future__ import annotations

import os
from pathlib import Path

# Input sizes Keras publishes ImageNet MobileNetV2 weights for; any other
# size falls back to the 224 px weights (the network is fully convolutional).
IMAGENET_SIZES = (96, 128, 160, 192, 224)
FALLBACK_SIZE = 224
# Where keras.applications.MobileNetV2 downloads them from.
WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"


class WeightsUnavailableError(RuntimeError):
    """The ImageNet weights are neither cached nor downloadable; the message says what to do."""


def imagenet_weights_filename(image_size: int) -> str:
    size = image_size if image_size in IMAGENET_SIZES else FALLBACK_SIZE
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}_no_top.h5"


def keras_models_dir() -> Path:
    """Keras' download cache, read from the environment now (Keras reads it once, at import)."""
    keras_home = os.environ.get("KERAS_HOME") or Path.home() / ".keras"
    return Path(keras_home).expanduser() / "models"


def ensure_imagenet_weights(image_size: int) -> Path:
    """Path of the no-top ImageNet weights for ``image_size``, downloading them if needed."""
    filename = imagenet_weights_filename(image_size)
    folder = keras_models_dir()
    path = folder / filename
    if path.is_file():
        return path

    import keras

    try:
        folder.mkdir(parents=True, exist_ok=True)  # else Keras falls back to /tmp/.keras
        downloaded = keras.utils.get_file(
            filename, WEIGHTS_URL + filename, cache_subdir="models", cache_dir=str(folder.parent)
        )
    except Exception as error:  # offline, proxy, disk full: all mean "put the file there yourself"
        sizes = ", ".join(str(s) for s in IMAGENET_SIZES)
        raise WeightsUnavailableError(
            f"The ImageNet weights for MobileNetV2 could not be downloaded ({error}). "
            f"Put the file {filename} into the folder {folder} and try again. "
            f"Keras publishes weights for image sizes {sizes} px; other sizes use the "
            f"{FALLBACK_SIZE} px file."
        ) from None
    return Path(downloaded)
