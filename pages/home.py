"""Home: what PawLab does and where to start."""

import streamlit as st

from pages._common.session import session_dataset
from pages._common.shell import ensure_app_shell
from pages._common.text import code

ensure_app_shell()

st.title("🐾 PawLab")
st.markdown(
    "Train an image classifier on your own photos, watch it learn, and ask it "
    "what it sees. Start with the classic **cats vs dogs** dataset, or bring "
    "any folder of `class_name/*.jpg` photos."
)

dataset = session_dataset()
steps = st.columns(3)
with steps[0]:
    st.subheader("1. Dataset")
    st.write(f"Current: {code(dataset.name)}" if dataset else "Download cats vs dogs or upload a zip.")
    st.page_link(
        "pages/dataset.py",
        label="Browse the photos",
        icon="🖼️",
        help="Thumbnails by split and class, and a preview of data augmentation.",
    )
    st.page_link(
        "pages/review.py",
        label="Review the photos",
        icon=":material/fact_check:",
        help="Mislabelled photos, duplicates, leaks between splits and outliers.",
    )
with steps[1]:
    st.subheader("2. Train")
    st.write("The Keras tutorial's four models, and better recipes, trained live.")
    st.page_link("pages/train.py", label="Train a model", icon="📈")
with steps[2]:
    st.subheader("3. Classify")
    st.write("Drop photos, get class probabilities and a Grad-CAM heatmap.")
    st.page_link("pages/classify.py", label="Classify photos", icon="🔍")
