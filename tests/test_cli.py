"""The command line: one naming scheme, help for everything, defaults from their homes.

No TensorFlow here: training itself is tested in test_training.py.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest
from conftest import REPO, make_separable_dataset

from core import cli, defaults
from core.runs.recipes import RECIPES
from core.runs.store import RunState, read_config, run_dirs

PUBLIC = ("fetch", "data", "train", "evaluate", "runs", "predict")


def python_m_core(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "core", *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=60
    )


def test_help_lists_the_public_commands_and_hides_the_worker():
    result = python_m_core("--help")
    assert result.returncode == 0, result.stderr
    for command in PUBLIC:
        assert f"\n    {command} " in result.stdout, command
    assert "SUPPRESS" not in result.stdout and "worker" not in result.stdout
    # The job manager's command still works.
    assert python_m_core("worker", "--help").returncode == 0


def test_train_help_lists_the_architectures_and_the_defaults():
    result = python_m_core("train", "--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())  # argparse wraps lines
    assert "{" + ",".join(RECIPES) + "}" in text
    assert f"(default: {defaults.SEED})" in text
    assert f"mobilenet_v2_finetune: {RECIPES['mobilenet_v2_finetune'].image_size}" in text  # image sizes
    assert f"(default: {defaults.BATCH_SIZE})" in text
    assert f"cnn_plus: {RECIPES['cnn_plus'].epochs}" in text


def _subcommands(parser):
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action.choices


def test_every_flag_and_argument_has_a_help_text():
    parser = cli.build_parser()
    for name, command in [("", parser), *_subcommands(parser).items()]:
        for action in command._actions:
            assert action.help and action.help != argparse.SUPPRESS, (name, action.dest)


def test_a_dataset_folder_is_data_everywhere_and_root_still_works(tmp_path, capsys):
    data = make_separable_dataset(tmp_path / "data", per_class=6, size=32)
    assert cli.main(["data", "--data", str(data)]) == 0
    with_data = json.loads(capsys.readouterr().out)
    assert cli.main(["data", "--root", str(data)]) == 0
    assert json.loads(capsys.readouterr().out) == with_data
    assert with_data["classes"] == ["circles", "squares"]
    assert set(with_data["splits"]) == {"train", "validation", "test"}
    for name, parser in _subcommands(cli.build_parser()).items():
        folder_flags = [
            flag
            for action in parser._actions
            for flag in action.option_strings
            if action.metavar == "DIR" and action.dest != "runs_dir"
        ]
        assert folder_flags in ([], ["--data"], ["--data", "--root"]), name


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--data", "{tmp}", "--arch", "nope"],
        ["train", "--data", "{tmp}", "--arch", "cnn", "--epochs", "many"],
        ["train", "--data", "{tmp}", "--arch", "cnn", "--epochs", "0"],
        ["train", "--data", "{tmp}", "--arch", "cnn", "--fine-tune-epochs", "3"],
        ["train", "--arch", "cnn"],
        ["data"],
        ["no-such-command"],
        [],
    ],
)
def test_bad_values_are_one_line_and_exit_2(tmp_path, capsys, argv):
    runs = tmp_path / "runs"
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in argv]
    if argv[:1] == ["train"]:
        argv += ["--runs-dir", str(runs)]
    assert cli.main(argv) == cli.EXIT_USAGE
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and "error" in err, err
    assert not runs.exists()  # refused before any run folder was made


def test_bad_values_exit_2_from_the_shell_too(tmp_path):
    result = python_m_core("train", "--data", tmp_path, "--arch", "cnn", "--image-size", "8")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "python -m core train: error: The image size must be a whole number of at least 32, not 8."
    ]


@pytest.mark.parametrize("arch", ["cnn_plus", "mobilenet_v2_finetune"])
def test_train_defaults_are_the_architectures_recipe(tmp_path, monkeypatch, capsys, arch):
    """Without --epochs, --patience...: the recipe's values, as on the Train page."""
    import core.runs.worker

    monkeypatch.setattr(core.runs.worker, "execute_run", lambda run_dir: RunState.COMPLETED)
    runs = tmp_path / "runs"
    assert cli.main(["train", "--data", str(tmp_path), "--arch", arch, "--runs-dir", str(runs)]) == 0
    [run_dir] = run_dirs(runs)
    assert str(run_dir) == capsys.readouterr().out.strip().splitlines()[-1]
    config, recipe = read_config(run_dir), RECIPES[arch]
    assert (config.epochs, config.fine_tune_epochs, config.patience, config.learning_rate) == (
        recipe.epochs,
        recipe.fine_tune_epochs,
        recipe.patience,
        recipe.learning_rate,
    )
    assert config.augment.name == recipe.augment
    assert (config.image_size, config.batch_size, config.seed) == (
        recipe.image_size,
        defaults.BATCH_SIZE,
        defaults.SEED,
    )
