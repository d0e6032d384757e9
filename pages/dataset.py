"""Dataset: choose a photo dataset, see what is in it, browse it, preview augmentation.

Top to bottom: the dataset picker; then, once a dataset is chosen, a scan of
it (cached) and three tabs. Only the open tab is drawn, so the page stays
fast on thousands of photos and TensorFlow loads only for the preview.
"""

import streamlit as st

from core.data.dataset import DatasetError
from pages._common.corrections import corrections_note
from pages._common.photos import load_dataset
from pages._common.shell import ensure_app_shell
from pages._common.text import md
from pages._dataset.augment_preview import show_augmentation_preview
from pages._dataset.source import dataset_picker
from pages._dataset.views import reset_browser_for, show_browser, show_overview

ensure_app_shell()

# Tab labels; material icons render in every browser, emoji need an emoji font.
OVERVIEW_TAB = ":material/bar_chart: Overview"
BROWSE_TAB = ":material/grid_view: Browse photos"
AUGMENT_TAB = ":material/auto_awesome: Augmentation preview"

st.title(":material/photo_library: Dataset")

root = dataset_picker()
if root is None:
    st.stop()

try:
    info, splits = load_dataset(root)
except DatasetError as error:
    st.error(f"{md(error)} Choose another dataset above.", icon=":material/error:")
    st.stop()
reset_browser_for(root)
corrections_note(root)

overview, browse, augment = st.tabs(
    [OVERVIEW_TAB, BROWSE_TAB, AUGMENT_TAB],
    key="dataset_tab",
    on_change="rerun",
)
if overview.open:
    with overview:
        show_overview(info, splits)
if browse.open:
    with browse:
        show_browser(splits)
if augment.open:
    with augment:
        show_augmentation_preview(splits)
