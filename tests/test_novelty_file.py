"""novelty.npz records the size its embeddings were taken at, so a check never compares sizes."""

import io

import numpy as np

from core.models.novelty import LEGACY_IMAGE_SIZE, NoveltyDetector


def test_the_embedding_size_survives_save_and_load(tmp_path):
    embeddings = np.random.default_rng(0).normal(size=(20, 8)).astype(np.float32)
    NoveltyDetector.fit(embeddings, image_size=160).save(tmp_path / "novelty.npz")
    loaded = NoveltyDetector.load(tmp_path / "novelty.npz")
    assert loaded.image_size == 160
    assert loaded.k == 5


def test_a_file_from_before_the_size_was_recorded_reads_as_224_px(tmp_path):
    buffer = io.BytesIO()
    np.savez(buffer, reference=np.eye(4, dtype=np.float16), threshold=0.3, k=2)
    (tmp_path / "novelty.npz").write_bytes(buffer.getvalue())
    loaded = NoveltyDetector.load(tmp_path / "novelty.npz")
    assert loaded.image_size == LEGACY_IMAGE_SIZE == 224


def test_a_transfer_runs_pooled_features_are_the_embeddings_inference_takes(cats_and_dogs, keras_home, monkeypatch):
    """A run at 160 px fits its check on its cached features averaged over their grid
    (core.runs.training); inference embeds a photo with pooled_extractor at the check's
    size. The two must be the same numbers, or every distance would be off."""
    from core.data.images import load_resized
    from core.models.embeddings import pooled, pooled_extractor
    from core.models.zoo import build_frozen_parts

    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    photos = sorted((cats_and_dogs / "train" / "dogs").glob("*.jpg"))[:4]
    images = np.stack([load_resized(photo, 160) for photo in photos]).astype(np.float32)
    grid_extractor, _ = build_frozen_parts("mobilenet_v2", num_classes=2, image_size=160)

    run_features = grid_extractor.predict(images, verbose=0)
    assert run_features.shape == (4, 5, 5, 1280)  # the tutorial model's flattened-head features
    np.testing.assert_allclose(pooled(run_features), pooled_extractor(160).predict(images, verbose=0), atol=1e-4)
