"""The Dataset page (AppTest): make a dataset, fill it from drops, manage its classes,
import a zip with a labels file. Shapes in mixed formats, not cats and dogs."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from conftest import REPO
from streamlit.testing.v1 import AppTest

from core.data.dataset import scan_dataset
from core.data.maker import new_dataset
from core.data.workspace import DATASET_KEY, remember_use
from tests._own_photos import loose_photos, shape_photo

ADD_TAB = ":material/add_a_photo: Add photos"
LABEL_TAB = ":material/label: Label"


def dataset_page(tab: str | None = None) -> AppTest:
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
    app.run()
    app.switch_page("pages/dataset.py")
    if tab:
        app.session_state["dataset_tab"] = tab
    app.run()
    assert not app.exception, app.exception
    return app


def texts(app: AppTest) -> str:
    parts = [e.value for e in [*app.markdown, *app.caption, *app.success, *app.warning, *app.error, *app.info]]
    return "\n".join(str(part) for part in parts)


def test_make_a_dataset_from_the_picker_and_fill_it_from_drops():
    app = dataset_page()
    app.text_input(key="new_dataset_name").input("garden shapes")
    app.text_input(key="new_dataset_classes").input("circle, square").run()
    app.button(key="new_dataset_create").click().run()
    assert not app.exception, app.exception
    root = Path(app.session_state[DATASET_KEY])
    assert root.name == "garden_shapes"
    assert scan_dataset(root).classes == ["circle", "square"]

    app.session_state["dataset_tab"] = ADD_TAB
    app.run()
    app.radio(key="maker_target").set_value("square").run()
    drop = [(f"s{n}.png", shape_photo("square", n, "PNG"), "image/png") for n in range(3)]
    drop.append(("again.png", drop[0][1], "image/png"))
    app.file_uploader(key="maker_drop_0").set_value(drop).run()
    assert not app.exception, app.exception

    assert [m.value for m in app.metric][:2] == ["0", "3"]
    shown = texts(app)
    assert "Added 3 photo(s)." in shown
    assert "was not added: it is already in the dataset, as square/s0" in shown
    # The drop widget comes back empty for the next drop.
    assert app.file_uploader(key="maker_drop_1") is not None


def test_classes_are_renamed_and_removed_without_losing_photos():
    root = new_dataset("shapes", ["circle", "stripe"])
    from core.data.maker import add_photos

    add_photos(root, "stripe", [(f"{n}.jpg", shape_photo("stripe", n)) for n in range(2)])
    remember_use(root)
    app = dataset_page(ADD_TAB)

    app.selectbox(key="maker_class").set_value("stripe")
    app.text_input(key="maker_rename_to").input("Stripes").run()
    app.button(key="maker_rename").click().run()
    assert scan_dataset(root).classes == ["Stripes", "circle"]

    app.selectbox(key="maker_class").set_value("Stripes")
    app.button(key="maker_remove_class").click().run()
    info = scan_dataset(root)
    assert info.classes == ["circle"] and len(info.unlabeled) == 2
    # Unlabelled photos open the Label tab.
    assert LABEL_TAB in [tab.label for tab in app.tabs]


def test_a_class_name_with_markdown_is_shown_as_written():
    root = new_dataset("hostile", ["**bold** [click](javascript:alert)", "ok"])
    remember_use(root)
    app = dataset_page(ADD_TAB)
    labels = [m.label for m in app.metric]
    assert labels[0] == r"\*\*bold\*\* \[click\](javascript\:alert)"


def labelled_zip(folder: Path) -> bytes:
    truth = loose_photos(folder / "train", {"circle": 4, "square": 3})
    rows = ["image_id,kind"] + [f"{name.rsplit('.', 1)[0]},{truth[name]}" for name in sorted(truth)[:-1]]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(truth):
            archive.write(folder / "train" / name, f"train/{name}")
        archive.writestr("labels.csv", "\n".join(rows) + "\n")
    return buffer.getvalue()


def test_import_a_zip_with_labels_after_seeing_the_guessed_columns(tmp_path):
    app = dataset_page()
    app.file_uploader(key="labelled_zip").set_value(("kaggle.zip", labelled_zip(tmp_path), "application/zip")).run()
    assert not app.exception, app.exception

    assert app.selectbox(key="labelled_file_column").value == "image_id"
    assert app.selectbox(key="labelled_label_column").value == "kind"
    assert "**2 classes**, 6 labelled photos; 1 left unlabelled" in texts(app)

    app.text_input(key="labelled_name").input("kaggle shapes")
    app.button(key="labelled_import").click().run()
    assert not app.exception, app.exception
    root = Path(app.session_state[DATASET_KEY])
    assert root.name == "kaggle_shapes"
    info = scan_dataset(root)
    assert info.counts()["all"] == {"circle": 4, "square": 2} and len(info.unlabeled) == 1


def test_a_zip_whose_labels_name_no_photo_says_so(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.jpg", shape_photo("circle", 1))
        archive.writestr("labels.csv", "animal,sound\ncow,moo\n")
    app = dataset_page()
    app.file_uploader(key="labelled_zip").set_value(("bad.zip", buffer.getvalue(), "application/zip")).run()
    assert "No column of the labels file names the photos" in texts(app)
    assert "labelled_import" not in [button.key for button in app.button]


def test_label_view_accepts_a_suggestion_in_one_click_and_confident_ones_at_once(keras_home, monkeypatch):
    from core.data.maker import add_photos

    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    root = new_dataset("to label", ["circle", "square"])
    for shape in ("circle", "square"):
        add_photos(root, shape, [(f"{shape}{n}.png", shape_photo(shape, n, "PNG")) for n in range(8)])
    add_photos(root, None, [(f"u{n}.png", shape_photo(("circle", "square")[n % 2], 100 + n, "PNG")) for n in range(6)])
    remember_use(root)

    app = dataset_page(LABEL_TAB)
    accepts = [b for b in app.button if b.key and b.key.startswith("label_accept_") and b.key != "label_accept_all"]
    assert len(accepts) == 6
    first = accepts[0]
    suggested = first.label.removeprefix("Accept ")
    first.click().run()
    assert not app.exception, app.exception

    assert "Labelled 1 photo(s), excluded 0." in texts(app)
    info = scan_dataset(root)
    assert len(info.unlabeled) == 5
    assert info.counts()["all"][suggested] == 9

    app.slider[0].set_value(50).run()
    app.button(key="label_accept_all").click().run()
    assert not app.exception, app.exception
    assert len(scan_dataset(root).unlabeled) < 5
