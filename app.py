"""PawLab: browse a photo dataset, train image classifiers, classify photos.

Run with ``streamlit run app.py``. This file only sets up the page and the
navigation; each page lives in ``pages/`` and all ML work in ``core/``.
"""

from pathlib import Path

import streamlit as st

from core.config import check_settings
from core.data.acquire import sweep_abandoned_imports

st.set_page_config(page_title="PawLab", page_icon="🐾", layout="wide")
st.html(Path(__file__).parent / "assets" / "app.css")

# A bad PAWLAB_* setting: one sentence naming it, instead of every page failing.
settings_problem = check_settings()
if settings_problem:
    st.error(f"PawLab cannot start: {settings_problem}", icon=":material/settings:")
    st.stop()


@st.cache_resource(show_spinner=False)
def sweep_at_start() -> int:
    """Once per server process: remove imports and downloads whose process died."""
    try:
        return len(sweep_abandoned_imports())
    except OSError:  # a read-only PAWLAB_HOME: nothing could be left there to sweep
        return 0


sweep_at_start()
pages = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/dataset.py", title="Dataset", icon=":material/photo_library:", url_path="dataset"),
    st.Page("pages/review.py", title="Review", icon=":material/fact_check:", url_path="review"),
    st.Page("pages/train.py", title="Train", icon=":material/monitoring:", url_path="train"),
    st.Page("pages/classify.py", title="Classify", icon=":material/image_search:", url_path="classify"),
]
st.navigation(pages).run()
