"""The model zoo: the tutorial's four models and two of ours.

Every model takes float32 images in [0, 255] of shape (None, S, S, 3) on an
Input named "image" and returns logits (no softmax). Scaling is the model's
first layer; augmentation is not in the model, it runs in the data pipeline
(core.data.pipeline), so models contain no random layers besides Dropout.

MobileNetV2 models are built as one flat functional graph: the base's layers
(``Conv1`` ... ``out_relu``) are layers of the model itself, not of a nested
sub-model, so Grad-CAM can read ``model.get_layer("out_relu").output``. A frozen
base layer (``trainable = False``) is also what keeps BatchNormalization in
inference mode in Keras 3 (``training and self.trainable``), which is what TF's
transfer-learning guide gets by calling the base with ``training=False``;
``unfreeze_top`` therefore never unfreezes BatchNormalization layers.

TensorFlow/Keras is imported inside the functions, so importing this module
(the Train page reads ARCHITECTURES) stays cheap.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class Head:
    """A transfer model's trainable head: dropout, then an optional hidden layer, then logits."""

    dropout: float = 0.2  # the tutorial's
    hidden_units: int = 0  # 0: a linear classifier

    def __post_init__(self):
        if not 0 <= self.dropout < 1:
            raise ValueError(f"The head's dropout must be at least 0 and below 1, not {self.dropout}.")
        if isinstance(self.hidden_units, bool) or not isinstance(self.hidden_units, int) or self.hidden_units < 0:
            raise ValueError(f"The head's hidden units must be a whole number of at least 0, not {self.hidden_units}.")


# The tutorial's head: dropout and a dense layer of 64 on the flattened feature map.
TUTORIAL_HEAD = Head(dropout=0.2, hidden_units=64)
# Ours: a linear classifier on the pooled features.
POOLED_HEAD = Head(dropout=0.2, hidden_units=0)


def default_head(arch: str) -> Head:
    """The architecture's own head; from-scratch models have none to choose."""
    spec = ARCHITECTURES.get(arch)  # an unknown name is refused where configs are checked, not here
    return spec.head if spec is not None and spec.head is not None else POOLED_HEAD


class Family(StrEnum):
    """How a model learns: from random weights, or on an ImageNet base."""

    SCRATCH = "scratch"
    TRANSFER = "transfer"  # a frozen ImageNet MobileNetV2 in phase 1 (its features can be cached)


@dataclass(frozen=True)
class ArchSpec:
    """One architecture: what the Train page says of it, how it learns, and its head."""

    name: str
    title: str
    description: str  # one line for the Train page
    family: Family
    fine_tune: bool = False  # a second phase unfreezes the top of the base
    head: Head | None = None  # a transfer model's default head

    @property
    def frozen_base(self) -> bool:
        """An ImageNet base is frozen in phase 1, so its features can be cached."""
        return self.family is Family.TRANSFER


ARCHITECTURES: dict[str, ArchSpec] = {
    spec.name: spec
    for spec in (
        ArchSpec(
            "cnn",
            "Tutorial CNN",
            "Three conv layers with max pooling and dropout, trained from scratch.",
            Family.SCRATCH,
        ),
        ArchSpec(
            "cnn_aug",
            "Tutorial CNN + augmentation",
            "The same CNN, trained on randomly flipped (vertically) and rotated images.",
            Family.SCRATCH,
        ),
        ArchSpec(
            "cnn_aug_preproc",
            "Tutorial CNN + augmentation + preprocessing",
            "The same CNN with MobileNetV2's input scaling to [-1, 1] and milder augmentation.",
            Family.SCRATCH,
        ),
        ArchSpec(
            "mobilenet_v2",
            "Tutorial transfer learning (MobileNetV2)",
            "A frozen ImageNet MobileNetV2 with a small dense head on its flattened features.",
            Family.TRANSFER,
            head=TUTORIAL_HEAD,
        ),
        ArchSpec(
            "cnn_plus",
            "CNN+ (ours)",
            "A from-scratch CNN with batch normalization and global pooling: better and cheaper.",
            Family.SCRATCH,
        ),
        ArchSpec(
            "mobilenet_v2_finetune",
            "MobileNetV2 + fine-tuning (ours)",
            "A linear head on cached 224 px MobileNetV2 features; fine-tune the top of the base if you ask.",
            Family.TRANSFER,
            fine_tune=True,
            head=POOLED_HEAD,
        ),
    )
}

# Name of the MobileNetV2 base's last layer (its final conv block's ReLU).
MOBILENET_OUTPUT_LAYER = "out_relu"


def _spec(arch: str) -> ArchSpec:
    if arch not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture '{arch}'. Choose one of: {', '.join(ARCHITECTURES)}.")
    return ARCHITECTURES[arch]


def _stack(inputs, layers):
    """Apply ``layers`` one after the other, functional style."""
    x = inputs
    for layer in layers:
        x = layer(x)
    return x


def _tutorial_cnn_body(num_classes: int) -> list:
    from keras import layers

    return [
        layers.Conv2D(32, 3, activation="relu"),
        layers.MaxPooling2D(),
        layers.Dropout(0.2),
        layers.Conv2D(32, 3, activation="relu"),
        layers.MaxPooling2D(),
        layers.Dropout(0.2),
        layers.Conv2D(64, 3, activation="relu"),
        layers.MaxPooling2D(),
        layers.Flatten(),
        layers.Dense(64, activation="relu"),
        layers.Dense(num_classes, name="logits"),
    ]


def _cnn_plus_body(num_classes: int) -> list:
    """Conv -> BatchNorm -> ReLU blocks, halving the resolution while doubling the filters.

    On a CPU the cost is in the big early feature maps, so a strided stem and
    a max pool take 160 px down to 40 px before the real work starts; global
    average pooling instead of Flatten keeps the head tiny, so 2000 photos
    train it without it memorising them.
    """
    from keras import layers

    def conv_bn_relu(filters, **kwargs):
        return [
            layers.Conv2D(filters, 3, padding="same", use_bias=False, **kwargs),
            # Faster-moving statistics than Keras' 0.99: 2000 photos are only ~60 steps an epoch.
            layers.BatchNormalization(momentum=0.9),
            layers.ReLU(),
        ]

    body = conv_bn_relu(32, strides=2) + [layers.MaxPooling2D()]
    for filters in (32, 64, 128):
        body += conv_bn_relu(filters) + conv_bn_relu(filters) + [layers.MaxPooling2D()]
    return (
        body
        + conv_bn_relu(256)
        + [
            layers.GlobalAveragePooling2D(),
            layers.Dropout(0.3),
            layers.Dense(num_classes, name="logits"),
        ]
    )


def _build_scratch(arch: str, num_classes: int, image_size: int):
    import keras
    from keras import layers

    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    if arch == "cnn_aug_preproc":
        # mobilenet_v2.preprocess_input is x / 127.5 - 1; a Rescaling layer does
        # the same maths and, unlike a Lambda, loads in Keras' safe mode.
        scaling = layers.Rescaling(1 / 127.5, offset=-1, name="preprocess")
    else:
        scaling = layers.Rescaling(1 / 255, name="rescale")
    body = _cnn_plus_body(num_classes) if arch == "cnn_plus" else _tutorial_cnn_body(num_classes)
    return keras.Model(inputs, _stack(inputs, [scaling] + body), name=arch)


def build_model(
    arch: str,
    num_classes: int,
    image_size: int,
    *,
    weights: str | None = "imagenet",
    seed: int | None = None,
    head: Head | None = None,
):
    """A fresh model for ``arch``: images in [0, 255] -> logits.

    ``weights`` only matters for transfer models: "imagenet" (cached or
    downloaded, see core.models.weights), None for random init, or a weights file.
    ``seed`` seeds Keras' global random state first, for reproducible init.
    ``head``: a transfer model's head (default: the architecture's own).
    """
    import keras

    spec = _spec(arch)
    if seed is not None:
        keras.utils.set_random_seed(seed)
    if spec.family is Family.TRANSFER:
        return assemble(*build_frozen_parts(arch, num_classes, image_size, weights=weights, head=head))
    return _build_scratch(arch, num_classes, image_size)


def _transfer_head(arch: str, num_classes: int, head: Head) -> list:
    from keras import layers

    head_layers = [layers.Dropout(head.dropout)]
    if arch == "mobilenet_v2":
        head_layers.append(layers.Flatten())  # the tutorial flattens the 5x5x1280 map
    if head.hidden_units:
        head_layers.append(layers.Dense(head.hidden_units, activation="relu"))
    return head_layers + [layers.Dense(num_classes, name="logits")]


def build_frozen_parts(
    arch: str, num_classes: int, image_size: int, *, weights: str | None = "imagenet", head: Head | None = None
):
    """(feature_extractor, head) for an architecture with a frozen ImageNet base.

    feature_extractor: images in [0, 255] -> base features, all layers frozen.
    head: features -> logits, trainable; a keras.Sequential so ``assemble`` can
    re-apply its layers. Training the head on cached features and assembling
    gives the same model as training the whole thing with the base frozen.
    """
    import keras
    from keras import layers

    spec = _spec(arch)
    if not spec.frozen_base:
        raise ValueError(f"'{arch}' has no frozen ImageNet base; build it with build_model().")
    if weights == "imagenet":
        from core.models.weights import ensure_imagenet_weights

        weights = str(ensure_imagenet_weights(image_size))

    image = keras.Input(shape=(image_size, image_size, 3), name="image")
    scaled = layers.Rescaling(1 / 127.5, offset=-1, name="preprocess")(image)  # = preprocess_input
    # Built on our tensor, the base's layers join our graph instead of nesting a sub-model.
    base = keras.applications.MobileNetV2(
        input_shape=(image_size, image_size, 3),
        input_tensor=scaled,
        include_top=False,
        weights=weights,
    )
    base.trainable = False
    features = base.output
    if arch != "mobilenet_v2":
        # Pooling sits in the extractor: cached features are 1280 numbers per image.
        features = layers.GlobalAveragePooling2D(name="avg_pool")(features)
    head_layers = _transfer_head(arch, num_classes, head or default_head(arch))

    feature_extractor = keras.Model(image, features, name=f"{arch}_features")
    head_model = keras.Sequential(
        [keras.Input(shape=features.shape[1:], name="features")] + head_layers, name=f"{arch}_head"
    )
    return feature_extractor, head_model


def assemble(feature_extractor, head):
    """One model, images -> logits, made of the extractor's and the head's own layers.

    The head's layers are re-applied to the extractor's output (not nested as
    a sub-model), so the result shares the head's trained weights, keeps every
    layer reachable by name, and saves and loads as a plain functional model.
    """
    import keras

    logits = _stack(feature_extractor.output, head.layers)
    name = feature_extractor.name.removesuffix("_features")
    return keras.Model(feature_extractor.input, logits, name=name)


def head_of(model, features_layer: str):
    """The head inside an assembled transfer model, as a model of its own: features -> logits.

    The inverse of ``assemble``: the layers after ``features_layer`` (the
    extractor's last layer), applied to a new input and sharing their weights.
    """
    import keras

    names = [layer.name for layer in model.layers]  # a functional model's layers, in graph order
    features = keras.Input(shape=model.get_layer(features_layer).output.shape[1:], name="features")
    return keras.Model(features, _stack(features, model.layers[names.index(features_layer) + 1 :]))


def base_layers(model) -> list:
    """The MobileNetV2 base's layers inside ``model``, bottom to top."""
    names = [layer.name for layer in model.layers]
    if "preprocess" not in names or MOBILENET_OUTPUT_LAYER not in names:
        raise ValueError(f"Model '{model.name}' has no MobileNetV2 base.")
    return model.layers[names.index("preprocess") + 1 : names.index(MOBILENET_OUTPUT_LAYER) + 1]


def unfreeze_top(model, fraction_or_layers: float | int) -> None:
    """Make the top of the MobileNetV2 base trainable for fine-tuning.

    An int unfreezes that many of the base's top layers, a float in (0, 1]
    that fraction of them. BatchNormalization layers stay frozen, which keeps
    them in inference mode (their ImageNet statistics survive small batches).
    Compile the model again afterwards for the change to take effect.
    """
    from keras import layers

    base = base_layers(model)
    if isinstance(fraction_or_layers, float):
        if not 0.0 < fraction_or_layers <= 1.0:
            raise ValueError(f"A fraction must be in (0, 1], not {fraction_or_layers}.")
        count = round(len(base) * fraction_or_layers)
    else:
        count = int(fraction_or_layers)
    first_unfrozen = len(base) - max(0, min(count, len(base)))
    for index, layer in enumerate(base):
        is_batch_norm = isinstance(layer, layers.BatchNormalization)
        layer.trainable = index >= first_unfrozen and not is_batch_norm


def load_saved_model(path, *, compile: bool = True):
    """A model a run saved (model.keras), in Keras' safe mode.

    safe_mode refuses Lambda layers' pickled code; PawLab's own layers
    (core.models.mirror) are registered first. ``compile=False`` skips the
    optimizer state, which inference does not need.
    """
    import keras

    from core.models import mirror  # noqa: F401 (registers its layers for loading)

    return keras.models.load_model(path, compile=compile, safe_mode=True)


@functools.cache
def count_params(arch: str, num_classes: int = 2, image_size: int = 160) -> int:
    """Number of parameters of ``arch`` (builds the model once, without downloading weights)."""
    return build_model(arch, num_classes, image_size, weights=None).count_params()


def last_conv_layer_name(model) -> str:
    """Name of the layer Grad-CAM should look at: the last one with a 4D feature map.

    That is the last conv layer (or its activation) before pooling/flattening;
    for MobileNetV2 models it is the base's "out_relu".
    """
    from keras import layers

    skipped = (layers.InputLayer, layers.Dropout, layers.MaxPooling2D, layers.AveragePooling2D)
    for layer in reversed(model.layers):
        if isinstance(layer, skipped):
            continue
        if len(layer.output.shape) == 4:
            return layer.name
    raise ValueError(f"Model '{model.name}' has no layer with a 4D output.")
