"""The Streamlit server's settings a shared deployment relies on (.streamlit/config.toml)."""

from __future__ import annotations

import tomllib
from pathlib import Path

CONFIG = Path(__file__).resolve().parent.parent / ".streamlit" / "config.toml"


def test_visitors_never_see_tracebacks_and_nothing_is_reported_home():
    config = tomllib.loads(CONFIG.read_text())
    assert config["client"]["showErrorDetails"] == "none"  # the server log keeps them
    assert config["browser"]["gatherUsageStats"] is False
    assert config["server"]["maxUploadSize"] >= 200  # MB: a Classify drop's limit fits
