"""``python -m core export``: every format to a folder that answers like the run, checked first;
the int8 TFLite model judged on its accuracy; refusals in one sentence."""

from __future__ import annotations

import json
import re
import sys

import pytest
from test_inference import install_trained_run

from core import cli

TEMPERATURE = 2.5  # as test_export: forgetting it moves probabilities well past the tolerance
COMPANIONS = {"labels.txt", "MODEL_CARD.md", "model_card.json"}
# The command line's name -> the model file (or folder) in DIR.
MODEL_FILES = {
    "keras": "model.keras",
    "savedmodel": "saved_model",
    "tflite": "model.tflite",
    "tflite-int8": "model_int8.tflite",
    "onnx": "model.onnx",
}


@pytest.fixture
def run_dir(tmp_path_factory, pawlab_home):
    run_dir = install_trained_run(tmp_path_factory, pawlab_home)
    (run_dir / "trust.json").write_text(json.dumps({"temperature": TEMPERATURE, "ece_before": 0.08, "ece_after": 0.02}))
    return run_dir


def export(capsys, run_dir, export_format, out, *flags) -> tuple[int, dict]:
    """The command in this process (so monkeypatches reach it): exit status and its last stdout JSON."""
    status = cli.main(["export", str(run_dir), "--format", export_format, "--out", str(out), *flags])
    return status, json.loads(capsys.readouterr().out)


def assert_one_sentence(text: str) -> None:
    assert "\n" not in text and text.endswith("."), text
    assert len(re.findall(r"[.!?](\s|$)", text)) == 1, text  # one full stop, at the end


def answers_of_folder(run_dir, export_format, folder):
    """How the exported folder answers the run's test photos, by export_check's comparison."""
    from core.serving.export_check import RUNNERS, compare_on_test_photos, score_keras_folder
    from core.serving.export_commands import ZIPPED_FORMATS

    if export_format == "keras":
        return score_keras_folder(run_dir, folder)
    runner = RUNNERS[ZIPPED_FORMATS[export_format]](folder / MODEL_FILES[export_format])
    return compare_on_test_photos(run_dir, runner)


@pytest.mark.parametrize("export_format", list(MODEL_FILES))
def test_each_format_exports_a_folder_that_answers_like_the_run(run_dir, tmp_path, capsys, export_format):
    out = tmp_path / "out"

    status, summary = export(capsys, run_dir, export_format, out)

    assert status == 0, summary
    assert {path.name for path in out.iterdir()} == COMPANIONS | {MODEL_FILES[export_format]}
    assert summary["format"] == export_format and summary["folder"] == str(out)
    files = {entry["file"]: entry["bytes"] for entry in summary["files"]}
    assert set(files) >= COMPANIONS
    assert all((out / name).stat().st_size == size > 0 for name, size in files.items())
    assert (out / "labels.txt").read_text().split() == ["circles", "squares"]
    assert json.loads((out / "model_card.json").read_text())["calibration"]["temperature"] == TEMPERATURE
    assert summary["check"]["agrees"] and summary["check"]["photos"] > 0

    agreement = answers_of_folder(run_dir, export_format, out)  # the folder, loaded afresh

    assert agreement.same_label == agreement.photos > 0
    if export_format == "tflite-int8":  # quantized: close, not within the float formats' 1e-3
        assert agreement.max_difference < 0.05
    else:
        assert agreement.max_difference <= 1e-3
        assert summary["check"]["max_difference"] <= 1e-3
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".out-")]  # no scratch left


def test_int8_reports_its_size_accuracy_and_agreement(run_dir, tmp_path, capsys):
    import numpy as np
    import tensorflow as tf

    from core.serving.export_check import export_status

    status, summary = export(capsys, run_dir, "tflite-int8", tmp_path / "out")

    assert status == 0, summary
    model = tmp_path / "out" / "model_int8.tflite"
    interpreter = tf.lite.Interpreter(model_path=str(model))
    inside = [detail["dtype"] for detail in interpreter.get_tensor_details()]
    assert inside.count(np.int8) > inside.count(np.float32)  # quantized: int8 inside, float32 at the edges
    assert [d["dtype"] for d in interpreter.get_input_details() + interpreter.get_output_details()] == [np.float32] * 2
    check = summary["check"]
    assert check["max_accuracy_drop"] == 0.01
    assert check["accuracy"] == check["correct"] / check["photos"]
    assert check["keras_accuracy"] == check["keras_correct"] / check["photos"]
    assert check["agreement"] == check["same_label"] / check["photos"] == 1.0
    # What the Classify page shows before the download: the same size and check.
    page = export_status(run_dir, "tflite_int8")
    assert page.offered
    assert page.model_bytes == model.stat().st_size
    assert page.agreement.to_summary() == check
    assert re.match(r"accuracy [\d.]+% on \d+ test photos against the float model's [\d.]+%", page.agreement.describe())


@pytest.mark.parametrize(("drop", "offered"), [(0.011, False), (0.01, True)])
def test_int8_is_refused_when_it_loses_more_than_a_point_of_accuracy(
    run_dir, tmp_path, capsys, monkeypatch, drop, offered
):
    from core.serving.export_check import Agreement, ExportState, export_status, offered_export

    measured = property(lambda self: self.keras_accuracy - drop)  # the int8 model's measured accuracy
    monkeypatch.setattr(Agreement, "accuracy", measured)

    status, summary = export(capsys, run_dir, "tflite-int8", tmp_path / "out")

    if offered:
        assert status == 0, summary
        assert offered_export(run_dir, "tflite_int8") is not None
        return
    assert status == 1
    assert summary["error"].startswith("Not offered: accuracy ")
    assert "at most 1 point lower allowed" in summary["error"]
    assert summary["check"]["agrees"] is False
    assert not (tmp_path / "out").exists()
    page = export_status(run_dir, "tflite_int8")
    assert page.state == ExportState.DISAGREES and page.reason == summary["error"]
    assert offered_export(run_dir, "tflite_int8") is None


def test_the_accuracy_rule_is_one_point_and_only_for_quantized_exports():
    from core.serving.export_check import MAX_ACCURACY_DROP, Agreement

    def int8(correct):  # the float model is right on 1000 of 1000
        return Agreement(1000, 1000, 0.2, correct=correct, keras_correct=1000, max_accuracy_drop=MAX_ACCURACY_DROP)

    assert int8(990).agrees and not int8(989).agrees
    assert not Agreement(1000, 1000, 0.2, correct=1000, keras_correct=1000).agrees  # float: 1e-3 on probabilities


def test_a_run_without_a_model_is_refused(run_dir, tmp_path, capsys):
    (run_dir / "model.keras").unlink()

    status, summary = export(capsys, run_dir, "tflite", tmp_path / "out")

    assert status == 2
    assert summary == {"error": f"Run {run_dir.name} has no saved model to export."}
    assert_one_sentence(summary["error"])
    assert not (tmp_path / "out").exists()


def test_a_failing_onnx_conversion_is_one_sentence(run_dir, tmp_path, capsys, monkeypatch):
    from core.serving import export as export_module
    from core.serving.export import ExportFormat
    from core.serving.export_check import ExportState, export_status

    def converter_fails(model, file, run_dir=None):
        raise ValueError("tf2onnx cannot convert the op 'Foo'.\nTraceback (most recent call last): ...")

    monkeypatch.setitem(export_module.WRITERS, ExportFormat.ONNX, converter_fails)

    status, summary = export(capsys, run_dir, "onnx", tmp_path / "out")

    assert status == 1
    assert summary == {"error": "The export failed: tf2onnx cannot convert the op 'Foo'."}
    assert_one_sentence(summary["error"])
    assert not (tmp_path / "out").exists()
    assert export_status(run_dir, "onnx").state == ExportState.FAILED  # the page says the same


def test_an_existing_folder_is_replaced_only_with_force(run_dir, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")

    status, summary = export(capsys, run_dir, "keras", out)

    assert status == 2
    assert summary == {"error": f"{out} already exists; pass --force to replace it."}
    assert_one_sentence(summary["error"])
    assert [path.name for path in out.iterdir()] == ["mine.txt"]

    status, summary = export(capsys, run_dir, "keras", out, "--force")

    assert status == 0, summary
    assert {path.name for path in out.iterdir()} == COMPANIONS | {"model.keras"}


def test_force_never_replaces_the_run_itself(run_dir, capsys):
    status, summary = export(capsys, run_dir, "keras", run_dir.parent, "--force")

    assert status == 2
    assert_one_sentence(summary["error"])
    assert (run_dir / "model.keras").is_file()


def test_web_without_its_module_says_so(run_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "core.serving.web_export", None)  # as before the web export exists

    status, summary = export(capsys, run_dir, "web", tmp_path / "out")

    assert status == 2
    assert summary == {"error": "The web export is not available in this PawLab."}
    assert not (tmp_path / "out").exists()


# --- the Classify page ------------------------------------------------------------------


def int8_tab(monkeypatch, status, archive=None):
    """The Classify page with export_check answering ``status`` for int8 (nothing for the others)."""
    from conftest import REPO
    from streamlit.testing.v1 import AppTest

    import pages._classify.export as page
    from core.serving.export_check import ExportStatus

    monkeypatch.setattr(page, "export_status", lambda run, fmt: status if fmt == status.format else ExportStatus(fmt))
    monkeypatch.setattr(page, "offered_export", lambda run, fmt: archive if fmt == status.format else None)
    from pages._classify.export import EXPORT_TAB

    app = AppTest.from_file(str(REPO / "pages" / "classify.py"), default_timeout=120)
    app.session_state["classify_tab"] = EXPORT_TAB
    app.run()
    assert not app.exception, app.exception
    return app


def page_texts(elements) -> list[str]:
    return [element.value.replace("\\", "") for element in elements]  # md() escapes punctuation


@pytest.mark.parametrize("offered", [True, False])
def test_the_page_shows_int8s_size_accuracies_and_agreement_with_it(run_dir, tmp_path, monkeypatch, offered):
    from core.serving.export import ExportFormat
    from core.serving.export_check import MAX_ACCURACY_DROP, Agreement, ExportState, ExportStatus

    correct = 190 if offered else 187  # the float model's 191: 0.5 or 2 points more
    checked = Agreement(200, 194, 0.04, correct=correct, keras_correct=191, max_accuracy_drop=MAX_ACCURACY_DROP)
    state = ExportState.AGREES if offered else ExportState.DISAGREES
    reason = None if offered else f"Not offered: {checked.describe()}."
    status = ExportStatus(ExportFormat.TFLITE_INT8, state, 200, 200, checked, reason=reason, model_bytes=2_640_000)
    archive = tmp_path / "tflite_int8.zip"
    archive.write_bytes(b"the checked zip")

    app = int8_tab(monkeypatch, status, archive if offered else None)

    downloads = [b.proto.label for b in app.get("download_button")]
    said = f"accuracy {'95.0' if offered else '93.5'}% on 200 test photos against the float model's 95.5% "
    said += "(at most 1 point lower allowed), same label on 194 of 200 (97.0%)"
    if offered:
        assert "⬇️ tflite_int8.zip" in downloads
        assert f"✅ Checked: {said}. Model: 2.64 MB." in page_texts(app.caption)
    else:
        assert not [label for label in downloads if "int8" in label]
        assert page_texts(app.warning) == [f"Not offered: {said}. Model: 2.64 MB."]
    assert any(caption.startswith("No Core ML export: coremltools 9.0") for caption in page_texts(app.caption))
