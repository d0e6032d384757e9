"""The fields the new-run form and the Sweep tab share: one image-size and one augmentation widget."""

from __future__ import annotations

import streamlit as st

from core import defaults
from core.data.augment import list_configs
from core.runs.recipes import Recipe


def image_size_field(recipe: Recipe, key: str, **options) -> int:
    """A square size from the sizes PawLab trains at, starting at the recipe's own."""
    return st.selectbox(
        "Image size",
        defaults.IMAGE_SIZES,
        index=defaults.IMAGE_SIZES.index(recipe.image_size),
        key=key,
        format_func=lambda s: f"{s} × {s} px",
        **options,
    )


def augmentation_field(recipe: Recipe, key: str, **options) -> str:
    """A saved augmentation by name, each described, starting at the recipe's own."""
    augmentations = list_configs()
    names = list(augmentations)
    return st.selectbox(
        "Augmentation",
        names,
        index=names.index(recipe.augment) if recipe.augment in names else 0,
        format_func=lambda name: f"{name}: {augmentations[name].describe()}",
        key=key,
        **options,
    )
