"""The model zoo: shapes, the tutorial's layers, frozen parts, saving, fine-tuning, weights."""

from __future__ import annotations

import socket
import subprocess
import sys

import keras
import numpy as np
import pytest

from core.models import weights
from core.models.weights import WeightsUnavailableError, imagenet_weights_filename
from core.models.zoo import (
    ARCHITECTURES,
    Family,
    assemble,
    base_layers,
    build_frozen_parts,
    build_model,
    count_params,
    head_of,
    last_conv_layer_name,
    unfreeze_top,
)

TRANSFER = [name for name, spec in ARCHITECTURES.items() if spec.family is Family.TRANSFER]
SCRATCH = [name for name, spec in ARCHITECTURES.items() if spec.family is Family.SCRATCH]
# Smallest sizes each family builds at: MobileNetV2 has ImageNet weights from 96 px.
SIZE = {**dict.fromkeys(SCRATCH, 32), **dict.fromkeys(TRANSFER, 96)}


def images(count, size, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (count, size, size, 3)).astype("float32")


def test_importing_models_does_not_import_tensorflow():
    code = (
        "import core.models.zoo, core.models.weights, sys; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]


def test_architectures_are_the_contract():
    assert list(ARCHITECTURES) == [
        "cnn",
        "cnn_aug",
        "cnn_aug_preproc",
        "mobilenet_v2",
        "cnn_plus",
        "mobilenet_v2_finetune",
    ]
    from core.data.augment import PRESETS
    from core.runs.recipes import RECIPES
    from core.runs.tutorial import REPORTED

    assert list(RECIPES) == list(ARCHITECTURES)  # every architecture has a recipe
    for arch, spec in ARCHITECTURES.items():
        assert RECIPES[arch].augment in PRESETS
        assert (spec.head is not None) == spec.frozen_base == (spec.family is Family.TRANSFER)
    assert [REPORTED[a] for a in ("cnn", "cnn_aug", "cnn_aug_preproc", "mobilenet_v2")] == [0.61, 0.66, 0.70, 0.97]
    assert ARCHITECTURES["mobilenet_v2_finetune"].fine_tune and not ARCHITECTURES["mobilenet_v2"].fine_tune


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
@pytest.mark.parametrize("num_classes", [2, 3])
def test_every_arch_maps_images_to_logits(arch, num_classes):
    size = SIZE[arch]
    model = build_model(arch, num_classes, size, weights=None, seed=0)
    assert model.layers[0].name == "image"
    assert tuple(model.input.shape) == (None, size, size, 3)
    logits = np.asarray(model(images(2, size), training=False))
    assert logits.shape == (2, num_classes)
    assert model.layers[-1].get_config()["activation"] == "linear"  # logits, not probabilities
    # Grad-CAM needs a 4D feature map the logits depend on.
    layer = model.get_layer(last_conv_layer_name(model))
    assert len(layer.output.shape) == 4


def test_cnn_is_the_tutorials_model():
    model = build_model("cnn", 2, 160, weights=None)
    summary = []
    for layer in model.layers[1:]:
        config = layer.get_config()
        summary.append(
            (
                type(layer).__name__,
                config.get("filters") or config.get("units") or config.get("rate"),
                config.get("activation"),
            )
        )
    assert summary == [
        ("Rescaling", None, None),
        ("Conv2D", 32, "relu"),
        ("MaxPooling2D", None, None),
        ("Dropout", 0.2, None),
        ("Conv2D", 32, "relu"),
        ("MaxPooling2D", None, None),
        ("Dropout", 0.2, None),
        ("Conv2D", 64, "relu"),
        ("MaxPooling2D", None, None),
        ("Flatten", None, None),
        ("Dense", 64, "relu"),
        ("Dense", 2, "linear"),
    ]
    assert model.layers[1].get_config()["scale"] == pytest.approx(1 / 255)
    assert model.get_layer(last_conv_layer_name(model)).get_config()["filters"] == 64


def test_preproc_scaling_is_mobilenet_preprocess_input():
    from keras.applications.mobilenet_v2 import preprocess_input

    model = build_model("cnn_aug_preproc", 2, 32, weights=None)
    scale = keras.Model(model.input, model.get_layer("preprocess").output)
    batch = images(2, 32)
    np.testing.assert_allclose(scale(batch), preprocess_input(batch.copy()), atol=1e-6)


# The tutorial's head sits on the 4D feature map (base -> Dropout -> Flatten -> Dense 64 -> Dense);
# ours pools in the extractor, so its cached features are 1280 numbers per image.
HEADS = {"mobilenet_v2": ["Dropout", "Flatten", "Dense", "Dense"], "mobilenet_v2_finetune": ["Dropout", "Dense"]}


@pytest.mark.parametrize("arch", TRANSFER)
def test_frozen_parts_and_assembled_model_agree(arch, tmp_path):
    extractor, head = build_frozen_parts(arch, 3, 96, weights=None)
    assert extractor.trainable_weights == [] and extractor.non_trainable_weights
    assert head.trainable_weights
    assert [type(layer).__name__ for layer in head.layers] == HEADS[arch]
    batch = images(4, 96)
    two_step = head(extractor(batch, training=False), training=False)

    model = assemble(extractor, head)
    np.testing.assert_allclose(model(batch, training=False), two_step, rtol=1e-5, atol=1e-5)
    # The head's weights are shared, not copied: training the head trains the model.
    head.layers[-1].kernel.assign(head.layers[-1].kernel * 2)
    np.testing.assert_allclose(
        model(batch, training=False), head(extractor(batch), training=False), rtol=1e-5, atol=1e-5
    )
    # Base layers are reachable by name for Grad-CAM.
    assert last_conv_layer_name(model) == "out_relu"
    keras.Model(model.input, [model.get_layer("out_relu").output, model.output])(batch)

    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(loaded(batch, training=False), model(batch, training=False))
    # Still frozen after loading: only the head trains.
    assert len(loaded.trainable_weights) == len(head.trainable_weights)
    # And the saved head, taken out again, maps the extractor's features to the same logits
    # (calibration reads the best model's logits off cached features this way).
    features = extractor(batch, training=False)
    taken_out = head_of(loaded, extractor.layers[-1].name)
    np.testing.assert_allclose(taken_out(features, training=False), loaded(batch, training=False), rtol=1e-5, atol=1e-5)


def test_count_params_matches_the_layers_and_is_cached():
    count_params.cache_clear()
    # Tutorial CNN at 160 px: three convs, then Flatten(18 x 18 x 64) -> Dense 64 -> Dense 2.
    convs = (3 * 9 * 32 + 32) + (32 * 9 * 32 + 32) + (32 * 9 * 64 + 64)
    assert count_params("cnn") == convs + (18 * 18 * 64 * 64 + 64) + (64 * 2 + 2)
    # MobileNetV2 without top has 2,257,984 parameters; our head adds 1280 x 2 + 2.
    assert count_params("mobilenet_v2_finetune", 2, 160) == 2_257_984 + 1280 * 2 + 2
    count_params("cnn")
    assert count_params.cache_info().hits == 1


def test_frozen_parts_refused_for_scratch_models():
    with pytest.raises(ValueError, match="no frozen"):
        build_frozen_parts("cnn", 2, 32)


def test_unknown_arch_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown architecture 'resnet'"):
        build_model("resnet", 2, 32)


def test_unfreeze_top_keeps_batch_norm_in_inference_mode():
    model = build_model("mobilenet_v2_finetune", 2, 96, weights=None, seed=0)
    base = base_layers(model)
    assert base[0].name == "Conv1" and base[-1].name == "out_relu"
    assert not any(layer.trainable_weights for layer in base)

    unfreeze_top(model, 30)
    with_weights = [layer for layer in base if layer.weights]
    trainable = [layer for layer in base if layer.trainable_weights]
    assert trainable and all(layer in base[-30:] for layer in trainable)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in trainable)
    assert all(
        layer.trainable
        for layer in base[-30:]
        if layer.weights and not isinstance(layer, keras.layers.BatchNormalization)
    )
    assert len(trainable) < len(with_weights)

    # BatchNorm in inference mode: training=True gives the same features and leaves the statistics alone.
    # (A BatchNorm layer in training mode would normalise with the batch's statistics and update its own.)
    features = keras.Model(model.input, model.get_layer("out_relu").output)
    bn = [layer for layer in base[-30:] if isinstance(layer, keras.layers.BatchNormalization)][-1]
    mean_before = np.array(bn.moving_mean)
    batch = images(4, 96)
    np.testing.assert_allclose(features(batch, training=True), features(batch, training=False), atol=1e-5)
    np.testing.assert_array_equal(bn.moving_mean, mean_before)

    unfreeze_top(model, 0.5)
    assert sum(bool(layer.trainable_weights) for layer in base[: len(base) // 2 - 1]) == 0
    assert any(layer.trainable_weights for layer in base[len(base) // 2 + 1 :])


def test_weights_filename_follows_keras():
    assert imagenet_weights_filename(160) == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_160_no_top.h5"
    assert imagenet_weights_filename(100).endswith("_1.0_224_no_top.h5")


@pytest.fixture
def unreachable_weights_url(monkeypatch):
    """Point the download at a loopback port nobody listens on: refused at once, online or not."""
    with socket.socket() as closed_port:
        closed_port.bind(("127.0.0.1", 0))  # reserved for this test, never listening
        monkeypatch.setattr(weights, "WEIGHTS_URL", f"http://127.0.0.1:{closed_port.getsockname()[1]}/")
        yield


def test_offline_without_weights_says_which_file_and_where(tmp_path, monkeypatch, unreachable_weights_url):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(WeightsUnavailableError) as error:
        build_model("mobilenet_v2", 2, 160)
    message = str(error.value)
    assert f"Put the file {imagenet_weights_filename(160)} into the folder {tmp_path / 'models'}" in message
    assert "Traceback" not in message
    assert not list((tmp_path / "models").iterdir())  # no half-downloaded file left behind


def test_imagenet_weights_load_from_keras_home(keras_home, cats_and_dogs, monkeypatch, unreachable_weights_url):
    from keras.applications.mobilenet_v2 import preprocess_input

    from core.data.images import load_resized

    monkeypatch.setenv("KERAS_HOME", str(keras_home))  # a download would fail: from the cache
    extractor, _ = build_frozen_parts("mobilenet_v2_finetune", 2, 160)
    # Trained BatchNorm statistics, not a fresh layer's zeros.
    assert np.abs(np.array(extractor.get_layer("bn_Conv1").moving_mean)).max() > 0.1

    # A real cat through our extractor = Keras' own MobileNetV2 with the same file and preprocess_input.
    cat = load_resized(cats_and_dogs / "train" / "cats" / "cat.1.jpg", 160).astype("float32")[None]
    ours = np.asarray(extractor(cat, training=False))
    reference = keras.applications.MobileNetV2(
        input_shape=(160, 160, 3),
        include_top=False,
        pooling="avg",
        weights=str(keras_home / "models" / imagenet_weights_filename(160)),
    )
    np.testing.assert_allclose(ours, reference(preprocess_input(cat.copy()), training=False), rtol=1e-4, atol=1e-4)


def test_parameter_counts_go_to_the_home_that_asked(tmp_path, monkeypatch):
    """A page's counting thread can outlive its session: the counts still go to the
    PAWLAB_HOME that was in force when it asked, not to whatever is set when the child ends."""
    from types import SimpleNamespace

    from core.models import param_counts

    asked, later = tmp_path / "asked", tmp_path / "later"
    monkeypatch.setenv("PAWLAB_HOME", str(asked))

    def child_meanwhile_settings_change(*args, **kwargs):
        monkeypatch.setenv("PAWLAB_HOME", str(later))
        return SimpleNamespace(returncode=0, stdout='{"cnn": 45218}\n', stderr="")

    monkeypatch.setattr(param_counts.subprocess, "run", child_meanwhile_settings_change)
    assert param_counts.count_in_subprocess(["cnn"], 2, 32) == {"cnn": 45218}
    assert param_counts.cached_counts(["cnn"], 2, 32) == {}  # nothing written into "later"
    monkeypatch.setenv("PAWLAB_HOME", str(asked))
    assert param_counts.cached_counts(["cnn"], 2, 32) == {"cnn": 45218}


def test_test_time_flip_averages_each_photo_and_its_mirror_and_survives_saving(tmp_path):
    from core.models.mirror import with_test_time_flip
    from core.models.zoo import load_saved_model
    from core.serving.gradcam import GradCam

    model = build_model("cnn_plus", 3, 32, seed=1)
    flipped = with_test_time_flip(model)
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    plain = model.predict_on_batch(images)
    expected = (plain + model.predict_on_batch(images[:, :, ::-1])) / 2
    assert not np.allclose(plain, expected, atol=1e-4)  # the model alone is not mirror-symmetric
    np.testing.assert_allclose(flipped.predict_on_batch(images), expected, atol=1e-5)
    np.testing.assert_allclose(flipped.predict_on_batch(images[:1]), expected[:1], atol=1e-5)

    flipped.save(tmp_path / "model.keras")
    loaded = load_saved_model(tmp_path / "model.keras")  # safe mode: registered layers only
    np.testing.assert_allclose(loaded.predict_on_batch(images), expected, atol=1e-5)
    heatmap = GradCam(loaded).heatmap(images[0], 0)  # the photo's own feature map
    assert heatmap.ndim == 2 and heatmap.min() >= 0 and heatmap.max() <= 1
