"""A model card for every download: what the model is, what it was trained and tested on,
how far to trust its probabilities, and how to reproduce it.

    card = model_card(run_dir)      # from the run folder's files, no TensorFlow
    card_markdown(card)             # MODEL_CARD.md, for people
    card_json(card)                 # model_card.json, for programs

Sources: facts.json (classes, photos per split, library versions),
evaluation.json (test accuracy, per-class scores), trust.json (temperature,
calibration error before and after, abstain thresholds and their
cross-validated coverage and precision), config.json (the recipe).

Class names and the dataset name come from folder names a person chose, so
every such string is escaped in the Markdown: it reads as written and is
never a link, a heading or HTML. The card names the dataset folder, never its
path on the server.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.runs.store import Evaluation, read_config, read_evaluation, read_facts
from core.runs.trust import read_trust

CARD_MARKDOWN = "MODEL_CARD.md"
CARD_JSON = "model_card.json"

# Every ASCII punctuation character may be backslash-escaped in CommonMark;
# these mean something anywhere in a line (emphasis, code, links, tables, HTML).
_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>|~:$^&!#])")
# These only at the start of a line: headings, lists ("-", "+", "1.", "1)"), quotes.
_LINE_START = re.compile(r"^(\s*\d*)([-+=>.)])")


@dataclass
class Calibration:
    temperature: float = 1.0  # probabilities are softmax(logits / temperature)
    ece_before: float | None = None  # expected calibration error on validation, T = 1
    ece_after: float | None = None
    confidence_threshold: float = 0.0  # below it the answer is "unsure" (0: never)
    target_precision: float | None = None
    cv_coverage: float | None = None  # share of photos answered (cross-validated)
    cv_precision: float | None = None  # share right among them (cross-validated)
    novelty_threshold: float | None = None  # None: no unknown-photo check


@dataclass
class ModelCard:
    run: str
    architecture: str
    classes: list[str]
    image_size: int
    dataset: str  # the dataset folder's name
    split_counts: dict[str, dict[str, int]]  # {split: {class: photos}}
    test_accuracy: float | None
    test_photos: int | None
    per_class: dict[str, dict[str, float]]  # precision, recall, f1, support
    calibration: Calibration
    recipe: dict  # config.json, with the dataset path replaced by its name
    versions: dict[str, str]
    created: str  # when the run was made (UTC, ISO 8601)
    input: str = ""
    output: str = ""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def model_card(run_dir: str | os.PathLike) -> ModelCard:
    """The card of a run, from its files."""
    run_dir = Path(run_dir)
    config, facts = read_config(run_dir), read_facts(run_dir)
    evaluation = read_evaluation(run_dir)
    trust = read_trust(run_dir)
    calibration = Calibration(**{name: getattr(trust, name) for name in Calibration.__dataclass_fields__})
    recipe = config.to_dict()
    recipe["data_root"] = Path(config.data_root).name  # no server paths in a download
    recipe["corrections"] = len(config.corrections)  # how many photos were relabelled or excluded
    size = config.image_size
    return ModelCard(
        run=run_dir.name,
        architecture=config.arch,
        classes=list(facts.classes),
        image_size=size,
        dataset=Path(config.data_root).name,
        split_counts=facts.split_counts,
        test_accuracy=evaluation.accuracy if evaluation else None,
        test_photos=evaluation.count if evaluation else None,
        per_class={name: asdict(scores) for name, scores in evaluation.per_class.items()} if evaluation else {},
        calibration=calibration,
        recipe=recipe,
        versions=dict(facts.versions),
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(config.created or 0)),
        input=f"float32 images with values in [0, 255], shape (batch, {size}, {size}, 3), RGB",
        output=(
            "calibrated probabilities, shape (batch, classes), in the order of classes "
            "(labels.txt): softmax(logits / temperature)"
        ),
        notes=_notes(evaluation, trust.ece_after is not None),
    )


def _notes(evaluation: Evaluation | None, calibrated: bool) -> list[str]:
    notes = []
    if evaluation is None:
        notes.append("This run has no test evaluation (evaluation.json is missing).")
    if not calibrated:
        notes.append("This run was not calibrated (no trust.json): probabilities are a plain softmax.")
    return notes


# --- the two renderings -------------------------------------------------------------


def card_json(card: ModelCard) -> str:
    return json.dumps(card.to_dict(), indent=2) + "\n"


def card_markdown(card: ModelCard) -> str:
    lines = [f"# Model card: {escape(card.run)}", ""]
    lines += _section(
        "Model",
        [
            ("Architecture", escape(card.architecture)),
            ("Classes", ", ".join(escape(name) for name in card.classes)),
            ("Input", card.input),
            ("Output", card.output),
            ("Created", card.created),
        ],
    )
    lines += _data_section(card)
    lines += _test_section(card)
    lines += _calibration_section(card.calibration)
    lines += ["## Recipe", "", "| setting | value |", "|---|---|"]
    lines += [f"| {escape(key)} | {escape(json.dumps(value))} |" for key, value in card.recipe.items()]
    lines += ["", "## Library versions", ""]
    lines += [f"- {escape(name)}: {escape(version)}" for name, version in card.versions.items()]
    if card.notes:
        lines += ["", "## Notes", ""] + [f"- {escape(note)}" for note in card.notes]
    return "\n".join(lines) + "\n"


def _section(title: str, rows: list[tuple[str, str]]) -> list[str]:
    return [f"## {title}", ""] + [f"- **{name}**: {value}" for name, value in rows] + [""]


def _data_section(card: ModelCard) -> list[str]:
    splits = list(card.split_counts)
    lines = ["## Training data", "", f"Dataset folder: {escape(card.dataset)}", ""]
    if not splits:
        return lines + ["No photo counts were recorded.", ""]
    lines += ["| class | " + " | ".join(map(escape, splits)) + " |", "|---|" + "---:|" * len(splits)]
    for name in card.classes:
        counts = [str(card.split_counts[split].get(name, 0)) for split in splits]
        lines.append(f"| {escape(name)} | " + " | ".join(counts) + " |")
    totals = [str(sum(card.split_counts[split].values())) for split in splits]
    return lines + ["| **all** | " + " | ".join(totals) + " |", ""]


def _test_section(card: ModelCard) -> list[str]:
    if card.test_accuracy is None:
        return ["## Test results", "", "Not evaluated.", ""]
    lines = [
        "## Test results",
        "",
        f"Accuracy {card.test_accuracy:.2%} on {card.test_photos} test photos "
        "(never used for training or for choosing the epoch).",
        "",
        "| class | precision | recall | f1 | photos |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, score in card.per_class.items():
        lines.append(
            f"| {escape(name)} | {score['precision']:.3f} | {score['recall']:.3f} "
            f"| {score['f1']:.3f} | {score['support']} |"
        )
    return lines + [""]


def _calibration_section(calibration: Calibration) -> list[str]:
    def number(value, style="{:.4f}"):
        return "not measured" if value is None else style.format(value)

    threshold = calibration.confidence_threshold
    return _section(
        "Calibration",
        [
            ("Temperature", f"{calibration.temperature:.4f} (probabilities = softmax(logits / temperature))"),
            (
                "Expected calibration error (validation)",
                f"{number(calibration.ece_before)} before, {number(calibration.ece_after)} after",
            ),
            ("Unsure below", f"{threshold:.4f} confidence" if threshold else "never unsure"),
            ("Target precision", number(calibration.target_precision, "{:.2%}")),
            ("Cross-validated coverage", number(calibration.cv_coverage, "{:.2%}")),
            ("Cross-validated precision", number(calibration.cv_precision, "{:.2%}")),
            ("Unknown-photo threshold", number(calibration.novelty_threshold)),
        ],
    )


def escape(text: object) -> str:
    """``text`` for running Markdown (and table cells): reads exactly as written, one line."""
    line = " ".join(str(text).splitlines())
    return _LINE_START.sub(r"\1\\\2", _SPECIAL.sub(r"\\\1", line), count=1)
