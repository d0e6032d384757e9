"""A model that cannot be loaded is one sentence, never a traceback: CLI predict, serve and
evaluate, and the Classify page.

Two real failure modes: a model.keras whose Lambda layer calls a named function (Keras'
safe mode cannot rebuild it: a TypeError from deep inside Keras), and a run whose
unknown-photo check needs ImageNet weights this machine does not have and cannot download.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest
from streamlit.testing.v1 import AppTest
from test_inference import IMAGE_SIZE, install_trained_run, validation_files

REPO = Path(__file__).resolve().parent.parent


def double(images):
    """A named function in a Lambda layer: saved by name, refused by safe mode on load."""
    return images * 2.0


def save_lambda_model(path: Path) -> None:
    import keras

    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.Lambda(double)(inputs))
    keras.Model(inputs, keras.layers.Dense(2)(features)).save(path)


@pytest.fixture
def run_dir(tmp_path_factory, pawlab_home) -> Path:
    return install_trained_run(tmp_path_factory, pawlab_home)


@pytest.fixture
def lambda_run(run_dir) -> Path:
    save_lambda_model(run_dir / "model.keras")
    return run_dir


@pytest.fixture(params=[224, 160], ids=["check_at_224px", "check_at_160px"])
def offline_without_weights(run_dir, tmp_path, monkeypatch, request) -> Path:
    """The run checks unknown photos (at request.param px, as its novelty.npz records), but those
    ImageNet weights are not cached and the download fails (as offline: keras.utils.get_file
    raises, nothing touches the network)."""
    import keras

    from core.serving import inference

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty_keras_home"))
    check = SimpleNamespace(image_size=request.param)
    monkeypatch.setattr(inference, "_load_novelty", lambda run_dir, trust: check)

    def offline(*args, **kwargs):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    return run_dir


def inference_check_size(run_dir: Path) -> int:
    from core.serving import inference

    return inference._load_novelty(run_dir, None).image_size


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cli_error(argv: list[str], capsys) -> str:
    """The command's one JSON error line; it must exit non-zero."""
    from core import cli

    assert cli.main(argv) != 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1, lines
    error = json.loads(lines[0])["error"]
    assert "\n" not in error and "Traceback" not in error
    return error


def assert_one_sentence(text: str) -> None:
    assert text.endswith(".") and len(text) < 400, text


def test_predict_names_the_lambda_layer(lambda_run, capsys):
    error = cli_error(["predict", str(lambda_run), validation_files(lambda_run)[0]], capsys)

    assert "cannot be loaded" in error and "Lambda" in error
    assert_one_sentence(error)


def test_serve_names_the_lambda_layer(lambda_run, capsys):
    error = cli_error(["serve", str(lambda_run), "--port", str(free_port())], capsys)

    assert "cannot be loaded" in error and "Lambda" in error
    assert_one_sentence(error)


def test_evaluate_names_the_lambda_layer(lambda_run, capsys):
    error = cli_error(["evaluate", str(lambda_run)], capsys)

    assert "cannot be loaded" in error and "Lambda" in error
    assert_one_sentence(error)


def test_a_damaged_model_file_is_one_sentence(run_dir, capsys):
    (run_dir / "model.keras").write_bytes(b"not a zip archive")

    error = cli_error(["predict", str(run_dir), validation_files(run_dir)[0]], capsys)

    assert "cannot be loaded" in error
    assert_one_sentence(error)


@pytest.mark.parametrize("command", ["predict", "serve"])
def test_missing_imagenet_weights_say_which_file_and_where(offline_without_weights, tmp_path, command, capsys):
    argv = [command, str(offline_without_weights)]
    argv += [validation_files(offline_without_weights)[0]] if command == "predict" else ["--port", str(free_port())]

    check_size = inference_check_size(offline_without_weights)
    error = cli_error(argv, capsys)

    # The weights at the check's own size: the file this machine must be given.
    assert f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{check_size}_no_top.h5" in error
    assert str(tmp_path / "empty_keras_home" / "models") in error
    assert_one_sentence(error)


def test_the_classify_page_says_the_model_cannot_be_loaded_and_why(lambda_run):
    app = AppTest.from_file(str(REPO / "pages" / "classify.py"), default_timeout=120).run()

    assert not app.exception, [e.value for e in app.exception]
    [error] = [e.value for e in app.error]
    assert "cannot be loaded" in error and "Lambda" in error
