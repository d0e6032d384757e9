"""Augmentation configs: validated, saved by name, previewed reproducibly."""

from __future__ import annotations

import numpy as np
import pytest

from core.data.augment import PRESETS, AugmentConfig, list_configs, load_config, preview, save_config


def _photo():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    image[:, :16] = 0  # left half dark, so a horizontal flip is visible
    return image


def test_invalid_values_are_rejected():
    with pytest.raises(ValueError, match="flip"):
        AugmentConfig(flip="sideways")
    with pytest.raises(ValueError, match="rotation"):
        AugmentConfig(rotation=2.0)


def test_presets_reproduce_the_tutorial():
    assert PRESETS["tutorial"].flip == "vertical" and PRESETS["tutorial"].rotation == 1.0
    assert PRESETS["tutorial_preproc"].flip == "horizontal_and_vertical"
    assert PRESETS["tutorial_preproc"].rotation == 0.2
    assert PRESETS["none"].is_identity


def test_saved_config_round_trips_and_cannot_shadow_a_preset():
    mine = AugmentConfig("gentle", flip="horizontal", rotation=0.1, zoom=0.2)
    save_config(mine)
    assert load_config("gentle") == mine
    assert list(list_configs())[: len(PRESETS)] == list(PRESETS)
    with pytest.raises(ValueError, match="built-in"):
        save_config(AugmentConfig("tutorial"))


def test_preview_is_reproducible_per_seed_and_changes_with_parameters():
    image = _photo()
    config = AugmentConfig("r", rotation=0.3)
    first = preview(image, config, 4, seed=1)
    assert first.shape == (4, 32, 32, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, preview(image, config, 4, seed=1))
    assert not np.array_equal(first, preview(image, config, 4, seed=2))
    # Variants differ from each other and from the original.
    assert not np.array_equal(first[0], first[1]) and not np.array_equal(first[0], image)
    assert not np.array_equal(first, preview(image, AugmentConfig("r", rotation=0.05), 4, seed=1))


def test_horizontal_flip_mirrors_or_keeps_the_image():
    image = _photo()
    variants = preview(image, AugmentConfig("f", flip="horizontal"), 16, seed=0)
    for variant in variants:
        assert np.array_equal(variant, image) or np.array_equal(variant, image[:, ::-1])
    assert any(np.array_equal(v, image[:, ::-1]) for v in variants)
