"""Train: being built."""

import streamlit as st

st.title("Train")
st.info("This page is being built: it will arrive with the next issue.")
