"""Dataset: choose or make a photo dataset, see what is in it, browse it, add
photos, label the unlabelled ones, preview augmentation.

Top to bottom: the dataset picker; then, once a dataset is chosen, a scan of
it (cached) and its tabs: "Add photos" only for a dataset made here, "Label"
only while it has unlabelled photos. Only the open tab is drawn, so the page
stays fast on thousands of photos and TensorFlow loads only for the preview.
"""

import streamlit as st

from core.data.dataset import DatasetError
from core.data.maker import is_editable
from pages._common.corrections import corrections_note
from pages._common.photos import load_dataset
from pages._common.shell import ensure_app_shell
from pages._common.text import md
from pages._dataset.augment_preview import show_augmentation_preview
from pages._dataset.labeling import show_labeling
from pages._dataset.making import show_adder
from pages._dataset.source import dataset_picker
from pages._dataset.views import reset_browser_for, show_browser, show_overview

ensure_app_shell()

# Tab labels; material icons render in every browser, emoji need an emoji font.
OVERVIEW_TAB = ":material/bar_chart: Overview"
BROWSE_TAB = ":material/grid_view: Browse photos"
AUGMENT_TAB = ":material/auto_awesome: Augmentation preview"
ADD_TAB = ":material/add_a_photo: Add photos"
LABEL_TAB = ":material/label: Label"

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

# "Add photos" only where PawLab may change the photos; "Label" while some have no class.
labels = [OVERVIEW_TAB, BROWSE_TAB]
labels += [ADD_TAB] if is_editable(root) else []
# Kept while it is open, so the photo that labels the last one sees that it did.
labels += [LABEL_TAB] if info.unlabeled or st.session_state.get("dataset_tab") == LABEL_TAB else []
labels += [AUGMENT_TAB]
tabs = dict(zip(labels, st.tabs(labels, key="dataset_tab", on_change="rerun")))
if tabs[OVERVIEW_TAB].open:
    with tabs[OVERVIEW_TAB]:
        show_overview(info, splits)
if tabs[BROWSE_TAB].open:
    with tabs[BROWSE_TAB]:
        show_browser(splits)
if ADD_TAB in tabs and tabs[ADD_TAB].open:
    with tabs[ADD_TAB]:
        show_adder(root, info)
if LABEL_TAB in tabs and tabs[LABEL_TAB].open:
    with tabs[LABEL_TAB]:
        show_labeling(root, info)
if tabs[AUGMENT_TAB].open:
    with tabs[AUGMENT_TAB]:
        show_augmentation_preview(splits)
