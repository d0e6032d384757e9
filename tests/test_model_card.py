"""The model card: every number from the run's files, user strings escaped, no server paths."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from test_inference import install_trained_run

from core.fileio import write_json

TRUST = {
    "temperature": 1.7,
    "ece_before": 0.081,
    "ece_after": 0.012,
    "confidence_threshold": 0.83,
    "target_precision": 0.99,
    "cv_coverage": 0.91,
    "cv_precision": 0.987,
    "novelty_threshold": 0.42,
}


@pytest.fixture
def run_dir(tmp_path_factory, pawlab_home):
    run_dir = install_trained_run(tmp_path_factory, pawlab_home)
    write_json(run_dir / "trust.json", TRUST)
    return run_dir


def test_the_card_holds_the_runs_facts_evaluation_calibration_and_recipe(run_dir):
    from core.runs.store import read_config, read_evaluation, read_facts
    from core.serving.model_card import card_json, card_markdown, model_card

    card = json.loads(card_json(model_card(run_dir)))
    facts, evaluation, config = read_facts(run_dir), read_evaluation(run_dir), read_config(run_dir)

    assert card["classes"] == ["circles", "squares"] == facts.classes
    assert card["split_counts"] == facts.split_counts
    assert card["test_accuracy"] == evaluation.accuracy and card["test_photos"] == evaluation.count
    assert card["per_class"] == evaluation.to_dict()["per_class"]
    assert card["calibration"] == TRUST
    assert card["versions"] == facts.versions and card["versions"]["tensorflow"]
    assert card["recipe"]["arch"] == "cnn" and card["recipe"]["epochs"] == config.epochs
    assert card["recipe"]["data_root"] == Path(config.data_root).name  # a name, not a server path
    assert str(Path(config.data_root).parent) not in json.dumps(card)

    markdown = card_markdown(model_card(run_dir))
    assert str(Path(config.data_root).parent) not in markdown
    assert f"Accuracy {evaluation.accuracy:.2%} on {evaluation.count} test photos" in markdown
    assert "0.0810 before, 0.0120 after" in markdown
    assert "**Temperature**: 1.7000" in markdown and "**Unsure below**: 0.8300 confidence" in markdown
    assert "**Cross-validated coverage**: 91.00%" in markdown
    totals = " | ".join(str(sum(counts.values())) for counts in facts.split_counts.values())
    assert f"| **all** | {totals} |" in markdown


def test_an_uncalibrated_unevaluated_run_says_so(run_dir):
    from core.serving.model_card import card_markdown, model_card

    (run_dir / "trust.json").unlink()
    (run_dir / "evaluation.json").unlink()
    card = model_card(run_dir)

    assert card.calibration.temperature == 1.0 and card.test_accuracy is None
    markdown = card_markdown(card)
    assert "Not evaluated." in markdown and "was not calibrated" in markdown
    assert "never unsure" in markdown


def test_class_and_dataset_names_are_escaped_in_the_markdown(tmp_path_factory, pawlab_home, tmp_path):
    """Folder names are user strings: a link, HTML, a table pipe or a heading stays text."""
    from core.runs.store import read_config, read_facts
    from core.serving.model_card import card_markdown, escape, model_card

    run_dir = install_trained_run(tmp_path_factory, pawlab_home)
    evil_class = "[click](http://evil.example) <img src=x onerror=alert(1)> | *bold*"
    evil_dataset = tmp_path / "# Heading` _x_"
    shutil.copytree(read_config(run_dir).data_root, evil_dataset)
    config = json.loads((run_dir / "config.json").read_text())
    config["data_root"] = str(evil_dataset)
    (run_dir / "config.json").write_text(json.dumps(config))
    facts = read_facts(run_dir).to_dict()
    facts["classes"][0] = evil_class
    facts["split_counts"] = {split: {evil_class: 3, "squares": 4} for split in ("train", "test")}
    (run_dir / "facts.json").write_text(json.dumps(facts))

    markdown = card_markdown(model_card(run_dir))

    assert evil_class not in markdown
    assert not re.search(r"(?<!\\)<img", markdown) and not re.search(r"(?<!\\)\]\(http", markdown)
    assert escape(evil_class) in markdown and escape(evil_dataset.name) in markdown
    assert not [line for line in markdown.splitlines() if line.startswith("# Heading")]
    # Every table row keeps its column count: the class name's pipe is escaped.
    rows = [line for line in markdown.splitlines() if line.startswith("| ") and "Heading" not in line]
    for row in rows:
        assert len(re.findall(r"(?<!\\)\|", row)) in (4, 3, 6)


def test_escape_reads_as_written_on_one_line():
    from core.serving.model_card import escape

    assert escape("cats") == "cats"
    assert escape("a_b*c") == "a\\_b\\*c"
    assert escape("- item\nnext") == "\\- item next"
    assert escape("1. first") == "1\\. first"
