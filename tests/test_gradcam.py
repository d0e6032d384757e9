"""Grad-CAM: right shape and range for every architecture, and it finds what the model uses."""

from __future__ import annotations

import numpy as np
import pytest

from core.serving.gradcam import GradCam, jet, overlay

SIZE = 48
PATCH = 12


def corner_patch_images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise photos; class 1 has a bright square in the top-left corner, class 0 has none."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 90, (count, SIZE, SIZE, 3)).astype(np.float32)
    labels = np.arange(count) % 2
    for image, label in zip(images, labels):
        if label == 1:
            y, x = rng.integers(0, 4, 2)
            image[y : y + PATCH, x : x + PATCH] = 255
    return images, labels


@pytest.fixture(scope="module")
def corner_model():
    import keras

    from core.models.zoo import build_model

    images, labels = corner_patch_images(40, seed=0)
    model = build_model("cnn", 2, SIZE, seed=0)
    model.compile(
        keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"]
    )
    history = model.fit(images, labels, epochs=6, batch_size=8, verbose=0)
    assert history.history["accuracy"][-1] > 0.9  # it learnt the rule
    return model


def test_heatmap_looks_where_the_class_is_decided(corner_model):
    gradcam = GradCam(corner_model)
    images, labels = corner_patch_images(12, seed=1)
    for image in images[labels == 1]:
        heatmap = gradcam.heatmap(image, class_index=1)
        half = heatmap.shape[0] // 2
        quadrants = [heatmap[:half, :half], heatmap[:half, half:], heatmap[half:, :half], heatmap[half:, half:]]
        mass = np.array([q.sum() for q in quadrants]) / heatmap.sum()
        assert mass[0] > 0.5 and mass[0] == mass.max(), mass


# The fine-tuned MobileNetV2 shares mobilenet_v2's base and "out_relu" layer;
# tracing a MobileNetV2 gradient takes seconds, so one of the two is enough.
@pytest.mark.parametrize("arch, size", [("cnn", 48), ("cnn_plus", 48), ("mobilenet_v2", 64)])
def test_heatmap_has_the_conv_grid_shape_and_unit_range(arch, size):
    import keras

    from core.models.zoo import build_model, last_conv_layer_name

    model = build_model(arch, 3, size, weights=None, seed=1)
    layer = last_conv_layer_name(model)
    if arch.startswith("mobilenet"):
        assert layer == "out_relu"
    pixels = np.random.default_rng(0).integers(0, 256, (size, size, 3)).astype(np.uint8)

    predicted = int(np.argmax(model(pixels[np.newaxis].astype(np.float32), training=False)[0]))
    heatmap = GradCam(model).heatmap(pixels, predicted)

    assert heatmap.shape == tuple(model.get_layer(layer).output.shape[1:3])
    assert heatmap.dtype == np.float32 and np.isfinite(heatmap).all()
    assert heatmap.min() >= 0.0 and heatmap.max() <= 1.0
    assert heatmap.max() in (0.0, 1.0)  # scaled so the hottest cell is 1 (or nothing is hot)
    keras.backend.clear_session()


def test_predictor_heatmap_is_for_the_predicted_class(corner_model):
    from core.serving.inference import Predictor

    predictor = Predictor(corner_model, ["plain", "corner"], SIZE)
    images, labels = corner_patch_images(2, seed=5)
    [prediction] = predictor.predict([_png(images[labels == 1][0])])
    assert prediction.label == "corner"
    np.testing.assert_allclose(
        predictor.gradcam(prediction), GradCam(corner_model).heatmap(prediction.pixels, 1), atol=1e-5
    )


def _png(pixels: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_jet_runs_from_blue_to_red():
    cold, middle, hot = jet(np.array([0.0, 0.5, 1.0]))
    assert cold[2] > 100 and cold[0] == 0  # blue
    assert middle[1] == 255  # green at the centre
    assert hot[0] > 100 and hot[2] == 0  # red


def test_overlay_stretches_the_heatmap_over_the_photo_and_respects_opacity():
    image = np.full((90, 120, 3), 128, np.uint8)
    heatmap = np.zeros((4, 4), np.float32)
    heatmap[0, 0] = 1.0  # hot top-left cell

    assert np.array_equal(overlay(image, heatmap, opacity=0.0), image)
    blended = overlay(image, heatmap, opacity=0.6)
    assert blended.shape == image.shape and blended.dtype == np.uint8
    top_left, bottom_right = blended[2, 2].astype(int), blended[-3, -3].astype(int)
    assert top_left[0] > top_left[2]  # red where the model looked
    assert bottom_right[2] > bottom_right[0]  # blue elsewhere
