"""Settings from the environment: an absolute home, and one clear sentence for a bad value."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import REPO

from core.config import SettingsError, check_settings, get_settings


def test_relative_home_becomes_absolute_and_stays_put(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PAWLAB_HOME", "relative/home")

    home = get_settings().home
    assert home == tmp_path / "relative" / "home"
    assert home.is_absolute()

    # A later change of folder (a worker, a library) does not move the home...
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert get_settings().home == home
    # ...and a child process started in another folder inherits the same home.
    child = subprocess.run(
        [sys.executable, "-c", "from core.config import get_settings; print(get_settings().home)"],
        cwd=elsewhere,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert child.stdout.strip() == str(home)


def test_home_with_a_tilde_is_expanded(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PAWLAB_HOME", "~/pawlab")
    assert get_settings().home == tmp_path / "pawlab"


@pytest.mark.parametrize(
    "variable, value",
    [
        ("PAWLAB_MAX_IMAGE_PIXELS", "50M"),
        ("PAWLAB_MAX_EXTRACT_BYTES", "2 GB"),
        ("PAWLAB_MAX_CONCURRENT_RUNS", "0"),
        ("PAWLAB_MAX_LOSSLESS_PIXELS", "-5"),
        ("PAWLAB_MAX_DATASETS_BYTES", "1.5e9"),
        ("PAWLAB_MAX_DROP_PHOTOS", ""),
    ],
)
def test_a_bad_number_is_one_sentence_naming_the_variable(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)

    with pytest.raises(SettingsError) as error:
        get_settings()

    message = str(error.value)
    assert message.startswith(f"{variable} must be a whole number")
    assert repr(value) in message and message.endswith(".")
    assert "like " in message  # says what is expected
    assert check_settings() == message


def test_good_settings_pass_the_start_check(monkeypatch):
    monkeypatch.setenv("PAWLAB_MAX_IMAGE_PIXELS", " 60_000_000 ")
    assert check_settings() is None
    assert get_settings().max_image_pixels == 60_000_000


def test_defaults_of_the_hardening_limits(monkeypatch):
    for name in list(os.environ):
        if name.startswith("PAWLAB_MAX") or name == "PAWLAB_DECODE_BUDGET_BYTES":
            monkeypatch.delenv(name)
    settings = get_settings()
    assert settings.max_image_pixels == 50_000_000
    assert settings.max_lossless_pixels == 16_000_000
    assert settings.max_zip_entries == 100_000
    assert settings.max_compression_ratio == 200
    assert settings.max_datasets_bytes == 20_000_000_000
    assert settings.decode_budget_bytes == 512 * 1024**2
    assert settings.max_drop_photos == 200
    assert settings.max_drop_bytes == 200_000_000
