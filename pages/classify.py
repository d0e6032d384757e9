"""Classify: being built."""

import streamlit as st

st.title("Classify")
st.info("This page is being built: it will arrive with the next issue.")
