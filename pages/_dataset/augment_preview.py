"""Dataset page, part 3: preview data augmentation on a photo, save it for training.

The maths is ``core.data.augment.preview``: the same Keras preprocessing layers
the Train page applies in its tf.data pipeline. TensorFlow is imported there,
the first time variants are drawn, never when this module is imported.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import streamlit as st

from core import defaults
from core.data import augment
from core.data.augment import FLIP_MODES, AugmentConfig, list_configs, preview
from core.data.images import ImageError, load_resized
from core.data.splits import Splits
from core.data.thumbnails import to_jpeg
from pages._common.errors import cannot
from pages._common.text import md
from pages._dataset.views import filtered_photos, photos_on_page

DEFAULT_PRESET = "recommended"
PREVIEW_SIZE = 192  # pixels; a little larger than the default training size
RANDOM_PHOTO = "random"
FLIP_LABELS = {"none": "none", "horizontal": "horizontal", "vertical": "vertical", "horizontal_and_vertical": "both"}
# Widget key -> AugmentConfig field, for the values a preset loads.
FIELD_KEYS = {
    "aug_flip": "flip",
    "aug_rotation": "rotation",
    "aug_zoom": "zoom",
    "aug_translation": "translation",
    "aug_contrast": "contrast",
    "aug_brightness": "brightness",
}
SLIDERS = [  # (key, label, help)
    ("aug_rotation", "Rotation", "Up to this fraction of a full turn, either way (1.0 = any angle)."),
    ("aug_zoom", "Zoom", "Zoom in or out by up to this fraction of the size."),
    ("aug_translation", "Translation", "Shift by up to this fraction of the width and height."),
    ("aug_contrast", "Contrast", "Change contrast by up to this factor."),
    ("aug_brightness", "Brightness", "Brighten or darken by up to this fraction of the value range."),
]


# --- Widget state: presets in, configs out ---------------------------------


def _load_preset() -> None:
    config = list_configs().get(st.session_state["aug_preset"], AugmentConfig())
    for key, field_name in FIELD_KEYS.items():
        st.session_state[key] = getattr(config, field_name)


def _init_state() -> None:
    if "aug_preset" not in st.session_state:
        st.session_state["aug_preset"] = DEFAULT_PRESET
        _load_preset()
    st.session_state.setdefault("aug_count", 4)
    st.session_state.setdefault("aug_seed", defaults.SEED)


def current_config(name: str) -> AugmentConfig:
    return AugmentConfig(name, **{field: st.session_state[key] for key, field in FIELD_KEYS.items()})


def _reroll_seed() -> None:
    st.session_state["aug_seed"] = random.randrange(100_000)  # noqa: S311 -- a preview seed, not a secret


def _reroll_photo() -> None:
    st.session_state["aug_random_photo"] = random.randrange(1_000_000)  # noqa: S311 -- which photo to preview


def _save() -> None:
    name = st.session_state.get("aug_save_name", "").strip()
    if not name:
        st.session_state["aug_message"] = ("error", "Type a name to save this config under.")
        return
    try:
        path = augment.save_config(current_config(name))
    except ValueError as error:
        st.session_state["aug_message"] = ("error", md(error))
        return
    except OSError as error:  # a read-only or full PAWLAB_HOME
        st.session_state["aug_message"] = ("error", cannot("save the augmentation config", error))
        return
    st.session_state["aug_preset"] = name
    st.session_state["aug_message"] = (
        "success",
        f"Saved '{md(name)}' ({md(path.name)}). The Train page can use it now.",
    )


# --- Cached variants -------------------------------------------------------


@st.cache_data(show_spinner=False, max_entries=64)
def _variants(path: str, mtime_ns: int, config: AugmentConfig, count: int, seed: int):
    """The photo as the models see it and ``count`` augmented copies, as JPEG bytes."""
    image = load_resized(path, PREVIEW_SIZE)
    return to_jpeg(image), [to_jpeg(variant) for variant in preview(image, config, count, seed)]


# --- The section -----------------------------------------------------------


@st.fragment
def show_augmentation_preview(splits: Splits) -> None:
    """Controls on the left, the photo and its augmented variants on the right.

    A fragment: moving a slider reruns only this section.
    """
    _init_state()
    controls, output = st.columns([1, 3], gap="medium")
    with controls:
        config = _controls()
    with output:
        photo = _photo_picker(splits)
        st.markdown(f"**{md(config.name)}**: {md(config.describe())}")
        if photo is not None:
            _show_variants(photo, config)


def _controls() -> AugmentConfig:
    configs = list_configs()
    st.selectbox(
        "Start from",
        list(configs),
        key="aug_preset",
        on_change=_load_preset,
        persist_state="session",
        help="Built-in presets and configs saved here; picking one loads its values.",
    )
    st.radio(
        "Random flip", FLIP_MODES, key="aug_flip", horizontal=True, format_func=FLIP_LABELS.get, persist_state="session"
    )
    for key, label, help_text in SLIDERS:
        st.slider(label, 0.0, 1.0, step=0.01, key=key, help=help_text, persist_state="session")
    st.slider("Variants", 1, 8, key="aug_count", persist_state="session")
    seed_column, button_column = st.columns([3, 2], vertical_alignment="bottom")
    seed_column.number_input("Seed", 0, 2**31 - 1, step=1, key="aug_seed", persist_state="session")
    button_column.button("Re-roll", icon=":material/casino:", on_click=_reroll_seed, key="aug_reroll")

    chosen = configs.get(st.session_state["aug_preset"])
    config = current_config(st.session_state["aug_preset"])
    if chosen is None or current_config(chosen.name) != chosen:
        config = current_config("custom")  # edited since the preset was loaded

    st.text_input("Save as", key="aug_save_name", placeholder="my_augmentation")
    st.button("Save config", icon=":material/save:", on_click=_save, key="aug_save")
    kind, message = st.session_state.pop("aug_message", (None, None))
    if kind == "error":
        st.error(message)
    elif kind == "success":
        st.success(message)
    return config


def _photo_picker(splits: Splits) -> str | None:
    """The photo to augment: one from the browser's current page, or a random one."""
    page = [sample.path for _, sample in photos_on_page(splits)]
    options = [RANDOM_PHOTO] + page
    if st.session_state.get("aug_photo") not in options:
        st.session_state["aug_photo"] = page[0] if page else RANDOM_PHOTO
    picker, reroll = st.columns([4, 1], vertical_alignment="bottom")
    choice = picker.selectbox(
        "Photo",
        options,
        key="aug_photo",
        format_func=lambda p: "Random photo" if p == RANDOM_PHOTO else Path(p).name,
        help="A photo from the browser's current page, or any photo at random.",
    )
    if choice != RANDOM_PHOTO:
        return choice
    reroll.button("Another", icon=":material/casino:", on_click=_reroll_photo, key="aug_another_photo")
    photos = filtered_photos(splits)
    if not photos:
        st.info("No photos match the browser's filters.")
        return None
    draw = st.session_state.setdefault("aug_random_photo", 0)
    return photos[draw % len(photos)][1].path


def _show_variants(path: str, config: AugmentConfig) -> None:
    count, seed = st.session_state["aug_count"], st.session_state["aug_seed"]
    first_time = "tensorflow" not in sys.modules
    try:
        with st.spinner("Loading TensorFlow (once, a few seconds)…" if first_time else "Augmenting…"):
            original, variants = _variants(path, os.stat(path).st_mtime_ns, config, count, seed)
    except (ImageError, OSError) as error:
        st.error(f"{md(Path(path).name)} can no longer be read: {md(error)}")
        return
    captions = [f"original: {md(Path(path).name)}"] + [f"variant {i + 1}" for i in range(count)]
    with st.container(key="aug_preview"), st.grid(min(count + 1, 5), min_column_width=100, gap="xsmall"):
        for image, caption in zip([original, *variants], captions):
            st.image(image, caption=caption, width="stretch")
