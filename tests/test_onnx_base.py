"""The frozen base in ONNX Runtime: Keras' numbers, converted once, Keras whenever it cannot be."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from core.data.dataset import Sample
from core.models import onnx_base
from core.models.features import cached_features, extract_features
from core.models.onnx_base import OnnxBase, fast_base, onnx_path

SIZE = 32


def small_convnet(seed: int = 0):
    """A few of MobileNetV2's own kinds of layer, small enough to convert in a second.

    Layers are named, as MobileNetV2's are: the same model built twice is the same model.
    """
    keras.utils.set_random_seed(seed)
    image = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1, name="scale")(image)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="conv")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(6.0, name="relu6")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="depthwise")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(image, x, name="small_convnet")
    model.trainable = False
    return model


def photos(count: int = 4, size: int = SIZE) -> np.ndarray:
    return np.random.default_rng(1).uniform(0, 255, (count, size, size, 3)).astype(np.float32)


def onnx_files(pawlab_home) -> list:
    return sorted((pawlab_home / "cache" / "onnx").glob("*.onnx"))


def test_onnx_runtime_gives_keras_features_and_keeps_the_conversion(pawlab_home):
    model = small_convnet()
    base = fast_base(model)
    assert isinstance(base, OnnxBase)
    np.testing.assert_allclose(base.predict_on_batch(photos()), model.predict_on_batch(photos()), atol=1e-4)
    assert [path.name for path in onnx_files(pawlab_home)] == [onnx_path(model, pawlab_home / "cache" / "onnx").name]


def test_a_batch_is_shared_out_over_cores_and_comes_back_in_order(pawlab_home):
    model = small_convnet()
    one_core = fast_base(model)
    assert one_core.cores >= 1
    expected = model.predict_on_batch(photos(5))
    for cores in (1, 2, 3, 8):
        base = OnnxBase(one_core.session, one_core.input_name, cores=cores)
        np.testing.assert_allclose(base.predict_on_batch(photos(5)), expected, atol=1e-4)
        np.testing.assert_allclose(base.predict_on_batch(photos(5)[:1]), expected[:1], atol=1e-4)


def test_a_kept_conversion_is_reused_without_converting(pawlab_home, monkeypatch):
    fast_base(small_convnet())

    def no_conversion(model):
        raise AssertionError("converted again")

    monkeypatch.setattr(onnx_base, "_convert", no_conversion)
    assert isinstance(fast_base(small_convnet()), OnnxBase)  # same architecture and weights


def test_other_weights_are_another_conversion(pawlab_home):
    cache = pawlab_home / "cache" / "onnx"
    assert onnx_path(small_convnet(seed=0), cache) == onnx_path(small_convnet(seed=0), cache)
    assert onnx_path(small_convnet(seed=0), cache) != onnx_path(small_convnet(seed=1), cache)


def test_a_damaged_conversion_file_is_converted_again(pawlab_home):
    model = small_convnet()
    fast_base(model)
    [path] = onnx_files(pawlab_home)
    path.write_bytes(b"not an onnx model")
    base = fast_base(model)
    assert isinstance(base, OnnxBase)
    np.testing.assert_allclose(base.predict_on_batch(photos()), model.predict_on_batch(photos()), atol=1e-4)
    assert path.read_bytes() != b"not an onnx model"


def test_a_failed_conversion_leaves_keras_in_charge(pawlab_home, monkeypatch):
    def unconvertible(model):
        raise ValueError("tf2onnx cannot convert this layer")

    monkeypatch.setattr(onnx_base, "_convert", unconvertible)
    model = small_convnet()
    assert fast_base(model) is model
    assert onnx_files(pawlab_home) == []


def test_a_conversion_that_disagrees_with_keras_is_not_used_nor_kept(pawlab_home, monkeypatch):
    real_session = onnx_base._session

    def off_by_a_little(serialized):
        base = real_session(serialized)
        return OnnxBase(_Shifted(base.session, 0.05), base.input_name)

    monkeypatch.setattr(onnx_base, "_session", off_by_a_little)
    model = small_convnet()
    assert fast_base(model) is model
    assert onnx_files(pawlab_home) == []


class _Shifted:
    """An InferenceSession whose outputs are all off by ``shift``."""

    def __init__(self, session, shift: float):
        self.session, self.shift = session, shift

    def run(self, output_names, feeds):
        return [output + self.shift for output in self.session.run(output_names, feeds)]


def test_stand_ins_that_are_not_keras_models_pass_through():
    class Extractor:
        def predict_on_batch(self, images):
            return images

    extractor = Extractor()
    assert fast_base(extractor) is extractor


def test_cached_features_come_from_onnx_runtime(tmp_path, pawlab_home, monkeypatch):
    from PIL import Image

    samples = []
    for index in range(5):
        path = tmp_path / "photos" / f"{index}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(photos(1, 40)[0].astype(np.uint8)).save(path)
        samples.append(Sample(str(path), index % 2, "odd" if index % 2 else "even"))
    calls = []
    real_predict = OnnxBase.predict_on_batch
    monkeypatch.setattr(
        OnnxBase, "predict_on_batch", lambda self, images: calls.append(len(images)) or real_predict(self, images)
    )

    model = small_convnet()
    fast_base(model)  # converted and checked here (on a probe batch); kept for cached_features
    calls.clear()
    features, labels = cached_features(model, samples, SIZE, 2, cache_key="small", cache_dir=tmp_path / "features")
    assert calls == [2, 2, 1]
    from core.data.pipeline import make_dataset

    keras_features, keras_labels = extract_features(model, make_dataset(samples, SIZE, 2, training=False))
    np.testing.assert_allclose(features.astype(np.float32), keras_features.astype(np.float32), atol=1e-2)
    np.testing.assert_array_equal(labels, keras_labels)


@pytest.fixture
def imagenet_weights(keras_home, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(keras_home))


@pytest.mark.parametrize("arch", ["mobilenet_v2", "mobilenet_v2_finetune"])
def test_imagenet_mobilenet_v2_features_agree_on_real_photos(arch, imagenet_weights, cats_and_dogs, pawlab_home):
    """The real base at 160 px, on cats and dogs: what a transfer run's head is trained on."""
    from core.data.pipeline import make_dataset
    from core.models.zoo import build_frozen_parts

    paths = sorted((cats_and_dogs / "validation" / "cats").glob("*.jpg"))[:2]
    paths += sorted((cats_and_dogs / "validation" / "dogs").glob("*.jpg"))[:2]
    images, _ = next(iter(make_dataset([Sample(str(p), 0, "") for p in paths], 160, 4, training=False)))
    extractor, _ = build_frozen_parts(arch, num_classes=2, image_size=160)
    base = fast_base(extractor)
    assert isinstance(base, OnnxBase)
    expected = extractor.predict_on_batch(images)
    got = base.predict_on_batch(images)
    assert got.shape == expected.shape
    # Finer than the float16 the feature cache keeps (features reach 6, ReLU6).
    np.testing.assert_allclose(got, expected, atol=2e-3)
