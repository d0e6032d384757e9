"""Make sure every page is drawn inside app.py's navigation and layout.

Because the project has a ``pages/`` folder, Streamlit starts in its legacy
multipage mode: until app.py has run once, a deep link such as ``/train``
(a reload after a server restart) runs the page script alone, without
app.py's wide layout and with every file of ``pages/`` in the sidebar.
``st.navigation`` switches that mode off for the server process; if a page
finds it still on, it switches it off itself and, on a session's first run,
reruns so the same URL is served through app.py. (Later runs are not rerun:
a rerun would drop the click that triggered them.)
"""

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager


def ensure_app_shell() -> None:
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        if not st.session_state:
            st.rerun()
