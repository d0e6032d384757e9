"""Grad-CAM: which parts of a photo made the model choose its class.

The method of Keras' Grad-CAM example (keras.io/examples/vision/grad_cam),
with one change, the HiResCAM weighting (Draelos & Carin, 2020):

    image -> (last conv feature map A, logits)             one grad model
    G = d logit[class] / d A                               same shape as A
    heatmap = ReLU(sum over channels of G * A)  -> scaled to [0, 1]

Keras' example first averages G over the grid (one weight per channel). When
the feature map goes straight into global average pooling (the fine-tuned
MobileNetV2) G is the same at every position, so both give the same map. The
tutorial's models flatten the feature map into a Dense layer instead; there
the averaged weights mix up positions: on a model that demonstrably looks at
one corner (the corner-patch model of tests/test_gradcam.py, three seeds
tried) they cancelled out to an empty map. Keeping G per position shows what
the model actually used.

The "last conv layer" is ``core.models.zoo.last_conv_layer_name``: the last layer
with a spatial (4D) output. PawLab builds its MobileNetV2 models as one flat
graph, so ``out_relu`` is a layer of the model itself and the grad model is
simply ``Model(inputs, [that layer's output, model output])``.

``overlay`` colours the heatmap with a small jet colormap written here in
NumPy (no plotting library needed) and blends it over the photo.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


class GradCam:
    """Grad-CAM heatmaps for one model; build once, call for many photos."""

    def __init__(self, model, layer_name: str | None = None):
        import keras
        import tensorflow as tf

        from core.models.zoo import last_conv_layer_name

        self.layer_name = layer_name or last_conv_layer_name(model)
        grad_model = keras.Model(model.inputs, [model.get_layer(self.layer_name).output, model.output])
        size = model.input_shape[1:]

        @tf.function(input_signature=[tf.TensorSpec((1, *size), tf.float32), tf.TensorSpec((), tf.int32)])
        def heatmap(image, class_index):
            with tf.GradientTape() as tape:
                feature_map, logits = grad_model(image, training=False)
                class_logit = logits[:, class_index]
            grads = tape.gradient(class_logit, feature_map)
            # Each position's features weighted by their own gradient (HiResCAM).
            heatmap = tf.reduce_sum(grads[0] * feature_map[0], axis=-1)
            return tf.nn.relu(heatmap)  # only what speaks *for* the class

        self._heatmap = heatmap

    def heatmap(self, pixels: np.ndarray, class_index: int) -> np.ndarray:
        """Heatmap of the conv grid's size (e.g. 5x5 for MobileNetV2 at 160 px), in [0, 1].

        ``pixels``: one (S, S, 3) image in [0, 255] as the model takes it.
        """
        image = np.asarray(pixels, np.float32)[np.newaxis]
        heatmap = self._heatmap(image, np.int32(class_index)).numpy()
        peak = heatmap.max()
        # All zeros when nothing in the feature map argues for the class.
        return (heatmap / peak if peak > 0 else heatmap).astype(np.float32)


def jet(values: np.ndarray) -> np.ndarray:
    """The jet colormap: 0 -> dark blue, 0.5 -> green-yellow, 1 -> dark red; uint8 RGB."""
    values = np.clip(np.asarray(values, np.float32), 0.0, 1.0)[..., np.newaxis]
    # Each channel is a tent peaking at 3/4 (red), 1/2 (green) and 1/4 (blue).
    centres = np.array([0.75, 0.5, 0.25], np.float32)
    rgb = np.clip(1.5 - np.abs(4.0 * (values - centres)), 0.0, 1.0)
    return (rgb * 255).round().astype(np.uint8)


def overlay(image: np.ndarray, heatmap: np.ndarray, opacity: float = 0.4) -> np.ndarray:
    """``image`` (H, W, 3) uint8 with the jet-coloured ``heatmap`` blended over it.

    The heatmap is stretched to the image (bilinear), so a 5x5 grid covers
    the whole photo just as the model's input did.
    """
    image = np.asarray(image, np.uint8)
    height, width = image.shape[:2]
    stretched = Image.fromarray(np.asarray(heatmap, np.float32)).resize((width, height), Image.Resampling.BILINEAR)
    colours = jet(np.asarray(stretched)).astype(np.float32)
    opacity = float(np.clip(opacity, 0.0, 1.0))
    blended = (1.0 - opacity) * image.astype(np.float32) + opacity * colours
    return blended.round().clip(0, 255).astype(np.uint8)
