"""Test-time flips inside the model: every answer averages a photo and its mirror image.

A from-scratch CNN trained on a few thousand photos answers a photo and its
left-right mirror image differently often enough that averaging the two can
help. On validation (2026-11-30): the last model of an exploratory 80-epoch
``cnn_plus`` run at 128 px, 83.8% on the photos as they are, 85.9% averaged
with their mirrors; the recipe's benchmark run kept its best epoch by the plain
score, 87.1%, and scored 86.8% with flips (benchmarks/results/scratch_recipe:
a best-of-60 pick flatters the plain figure). The flips live in the saved model itself, so evaluation, calibration, Classify,
the HTTP API and the ONNX and SavedModel exports all get the same averaged
logits, and nothing else has to remember to flip:

    photos (B) -> MirrorPair: the photos, then their mirror images (2B)
               -> the model's own layers -> logits (2B)
               -> MeanOfPairs: each photo's mean of its two logits (B)

Training fits the plain model (random flips are already part of its
augmentation); the run saves the wrapped one. The photos go through the
model's layers once, as one batch of 2B, so Grad-CAM's first feature map is
the photo's own. Loading a saved model needs this module imported: load it
with core.models.zoo.load_saved_model.
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="pawlab")
class MirrorPair(keras.layers.Layer):
    """(B, H, W, C) photos -> (2B, H, W, C): the photos, then each one mirrored left-right."""

    def call(self, images):
        return keras.ops.concatenate([images, keras.ops.flip(images, axis=2)], axis=0)

    def compute_output_shape(self, input_shape):
        batch = None if input_shape[0] is None else 2 * input_shape[0]
        return (batch, *input_shape[1:])


@keras.saving.register_keras_serializable(package="pawlab")
class MeanOfPairs(keras.layers.Layer):
    """(2B, K) logits of MirrorPair's batch -> (B, K): the mean of each photo's two."""

    def call(self, logits):
        half = keras.ops.shape(logits)[0] // 2
        return (logits[:half] + logits[half:]) / 2

    def compute_output_shape(self, input_shape):
        batch = None if input_shape[0] is None else input_shape[0] // 2
        return (batch, *input_shape[1:])


def with_test_time_flip(model):
    """``model`` (photos -> logits) whose answers average each photo and its mirror image.

    The result re-applies ``model``'s own layers (shared weights), as
    core.models.zoo.assemble does, so it saves and loads as one flat model.
    """
    images = keras.Input(shape=model.input_shape[1:], name="image")
    features = MirrorPair(name="mirror_pair")(images)
    for layer in model.layers[1:]:  # [0] is the Input
        features = layer(features)
    return keras.Model(images, MeanOfPairs(name="mean_of_pairs")(features), name=model.name)
