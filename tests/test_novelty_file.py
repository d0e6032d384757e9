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
