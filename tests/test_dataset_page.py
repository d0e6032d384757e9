"""The Dataset page (Streamlit AppTest): choose a dataset, see its counts, browse
it, preview and save augmentation, with clear messages when something fails."""

from __future__ import annotations

import errno
import io
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import REPO, make_separable_dataset
from streamlit.testing.v1 import AppTest

from core.config import get_settings
from core.data.acquire import COMPLETE_MARKER
from core.data.augment import list_configs
from core.data.dataset import scan_dataset
from core.data.splits import make_splits
from core.data.workspace import DATASET_KEY, remember_use

OVERVIEW_TAB = ":material/bar_chart: Overview"
BROWSE_TAB = ":material/grid_view: Browse photos"
AUGMENT_TAB = ":material/auto_awesome: Augmentation preview"


def dataset_page(tab: str | None = None, timeout: float = 120) -> AppTest:
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=timeout)
    app.run()  # the app shell registers its pages with st.navigation first
    app.switch_page("pages/dataset.py")
    if tab:
        app.session_state["dataset_tab"] = tab
    app.run()
    assert not app.exception, app.exception
    return app


def texts(elements) -> list[str]:
    return [element.value for element in elements]


def page_text(app: AppTest) -> str:
    return "\n".join(texts(app.markdown) + texts(app.caption) + texts(app.info) + texts(app.error) + texts(app.success))


def chosen(app: AppTest) -> Path | None:
    """The session's dataset, if it has one."""
    return Path(app.session_state[DATASET_KEY]) if DATASET_KEY in app.session_state else None


def thumbnail_captions(app: AppTest) -> list[str]:
    return [caption for image in app.image for caption in image.captions if caption]


def count_table(app: AppTest) -> dict[str, dict[str, int]]:
    """The overview's table as {split: {class: count}}."""
    table = app.dataframe[0].value.drop(columns="total")
    return {split: {name: int(n) for name, n in column.items()} for split, column in table.items()}


@pytest.fixture(scope="module")
def real_scan_cache(cats_and_dogs, tmp_path_factory) -> Path:
    """Which of the 3,000 real photos decode, worked out once for this module."""
    home = tmp_path_factory.mktemp("scan_home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PAWLAB_HOME", str(home))
        scan_dataset(cats_and_dogs)
    return home / "cache" / "scans"


@pytest.fixture
def real_dataset(cats_and_dogs, real_scan_cache, pawlab_home, monkeypatch) -> Path:
    """The real photos, opened where they are: a folder on the server the operator allowed."""
    monkeypatch.setenv("PAWLAB_ALLOW_LOCAL_PATHS", "1")
    shutil.copytree(real_scan_cache, get_settings().cache_dir / "scans")
    remember_use(cats_and_dogs)
    return cats_and_dogs


def imported(source: Path, name: str) -> Path:
    """``source`` as an upload or download leaves it in PAWLAB_HOME/datasets."""
    root = get_settings().datasets_dir / name
    shutil.copytree(source, root)
    (root / COMPLETE_MARKER).write_text("{}\n")
    return root.resolve()


@pytest.fixture
def dataset(tiny_dataset, monkeypatch) -> Path:
    """The tiny dataset, imported: a new session opens it. No local folders (a shared server)."""
    monkeypatch.delenv("PAWLAB_ALLOW_LOCAL_PATHS", raising=False)
    return imported(tiny_dataset, "tiny")


def test_real_dataset_shows_classes_and_leak_free_split_counts(real_dataset):
    start = time.perf_counter()
    app = dataset_page()
    first = time.perf_counter() - start

    assert "**Classes:** `cats`, `dogs`" in texts(app.markdown)
    assert [m.value for m in app.metric] == ["2", "3,000", "0"]
    # The split the Train page uses: train/ as is, validation/ split 80/20 into validation and test.
    assert count_table(app) == {
        "train": {"cats": 1000, "dogs": 1000},
        "validation": {"cats": 400, "dogs": 400},
        "test": {"cats": 100, "dogs": 100},
    }
    assert "Every file decoded: nothing was skipped." in texts(app.caption)

    warm = []
    for _ in range(3):
        start = time.perf_counter()
        app.run()
        warm.append(time.perf_counter() - start)
    assert not app.exception
    print(
        f"\nDataset page on 3,000 photos: first run {first:.2f} s, warm reruns {', '.join(f'{t:.3f}' for t in warm)} s"
    )


def test_real_dataset_browser_shows_both_classes_fast(real_dataset):
    app = dataset_page(BROWSE_TAB)

    captions = thumbnail_captions(app)
    assert len(captions) == 24  # one page of thumbnails, each captioned with its class
    assert {"cats", "dogs"} == set(captions)
    [pagination] = app.get("pagination")
    assert pagination.num_pages == 125  # 3,000 photos / 24

    warm = []
    for _ in range(3):
        start = time.perf_counter()
        app.run()
        warm.append(time.perf_counter() - start)
    print(f"\nBrowse tab warm reruns: {', '.join(f'{t:.3f}' for t in warm)} s")

    app.segmented_control(key="browse_split").set_value("test").run()
    assert app.get("pagination")[0].num_pages == 9  # 200 test photos
    assert "200 photos" in texts(app.caption)
    assert "test split" in page_text(app)


def test_tiny_dataset_overview_matches_the_training_split(dataset):
    app = dataset_page()

    assert app.selectbox(key="dataset_choice").value == str(dataset)
    assert "**Classes:** `circles`, `squares`" in texts(app.markdown)
    assert count_table(app) == make_splits(scan_dataset(dataset)).counts()
    assert sum(sum(c.values()) for c in count_table(app).values()) == 36


def test_browsing_pages_filters_and_enlarging(dataset):
    app = dataset_page(BROWSE_TAB)

    assert set(thumbnail_captions(app)) == {"circles", "squares"}
    assert len(thumbnail_captions(app)) == 24
    app.get("pagination")[0].set_value(2).run()
    assert len(thumbnail_captions(app)) == 12  # 36 photos in all

    app.button_group(key="browse_classes").set_value(["squares"]).run()
    assert set(thumbnail_captions(app)) == {"squares"}
    assert app.get("pagination")[0].value == 1  # a new filter starts at page 1

    enlarge = app.selectbox(key="browse_enlarged")
    assert len(enlarge.options) == 18  # the 18 squares on this page, by place, file name and class
    assert enlarge.options[3].startswith("4. ") and enlarge.options[3].endswith(" (squares)")
    enlarge.select_index(3).run()
    name = Path(app.selectbox(key="browse_enlarged").value).name
    assert enlarge.options[3] == f"4. {name} (squares)"
    details = page_text(app)
    assert f"**{name}**" in details
    assert "48 × 48 px" in details and "Label: **squares** (1)" in details


def test_choosing_another_dataset_starts_the_browser_afresh(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("PAWLAB_ALLOW_LOCAL_PATHS", "1")
    fruit = make_separable_dataset(tmp_path / "fruit", classes=("apples", "pears"))
    remember_use(tiny_dataset)
    app = dataset_page(BROWSE_TAB)
    app.button_group(key="browse_classes").set_value(["squares"]).run()
    app.get("pagination")[0].set_value(1).run()

    app.text_input(key="local_path").set_value(str(fruit)).run()
    app.button(key="local_path_open").click().run()

    assert not app.exception
    assert app.button_group(key="browse_classes").value == ["apples", "pears"]
    assert set(thumbnail_captions(app)) == {"apples", "pears"}


def test_a_folder_without_class_folders_is_explained(tmp_path):
    (tmp_path / "empty").mkdir()
    imported(tmp_path / "empty", "empty")  # e.g. its photos were deleted after the import
    app = dataset_page()

    assert "No class folders found" in app.error[0].value
    assert not app.metric  # no overview of a dataset that is not there


def test_local_folder_input_is_refused_without_the_setting(tiny_dataset, monkeypatch):
    monkeypatch.delenv("PAWLAB_ALLOW_LOCAL_PATHS", raising=False)
    app = dataset_page()

    assert not _has_key(app, "local_path")
    assert any("PAWLAB_ALLOW_LOCAL_PATHS=1" in message for message in texts(app.info))


def _has_key(app: AppTest, key: str) -> bool:
    try:
        app.text_input(key=key)
    except KeyError:
        return False
    return True


def test_local_folder_opens_when_allowed_and_explains_a_bad_path(tiny_dataset, monkeypatch):
    monkeypatch.setenv("PAWLAB_ALLOW_LOCAL_PATHS", "1")
    app = dataset_page()

    app.text_input(key="local_path").set_value(str(tiny_dataset / "missing")).run()
    app.button(key="local_path_open").click().run()
    assert not app.exception
    assert any("There is no folder at" in message for message in texts(app.error))
    assert chosen(app) is None

    app.text_input(key="local_path").set_value(str(tiny_dataset)).run()
    app.button(key="local_path_open").click().run()
    assert not app.exception
    assert chosen(app) == tiny_dataset.resolve()
    assert "**Classes:** `circles`, `squares`" in texts(app.markdown)


def zip_of(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.rglob("*.jpg")):
            archive.write(path, Path("pets") / path.relative_to(folder))
    return buffer.getvalue()


def test_uploading_a_zip_adds_and_selects_the_dataset(tiny_dataset):
    app = dataset_page()

    app.file_uploader(key="dataset_zip").set_value(("not_a_zip.zip", b"garbage", "application/zip")).run()
    app.button(key="dataset_zip_import").click().run()
    assert not app.exception
    assert app.error, "a broken zip should be explained"
    assert chosen(app) is None

    app.file_uploader(key="dataset_zip").set_value(("shapes.zip", zip_of(tiny_dataset), "application/zip")).run()
    app.text_input(key="dataset_zip_name").set_value("My shapes").run()
    app.button(key="dataset_zip_import").click().run()
    assert not app.exception
    root = get_settings().datasets_dir / "My_shapes"
    assert chosen(app) == root.resolve()
    assert app.selectbox(key="dataset_choice").value == str(root.resolve())
    assert "**Classes:** `circles`, `squares`" in texts(app.markdown)


class ZipHandler(BaseHTTPRequestHandler):
    payload = b""

    def do_GET(self):
        if not self.payload:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()
        self.wfile.write(self.payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def zip_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), ZipHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    ZipHandler.payload = b""


def test_download_button_fetches_the_dataset_or_explains_why_not(tiny_dataset, zip_server, monkeypatch):
    url = f"http://127.0.0.1:{zip_server.server_port}/cats_and_dogs_filtered.zip"
    monkeypatch.setenv("PAWLAB_DATASET_URL", url)
    app = dataset_page()

    app.button(key="download_official").click().run()  # the server answers 404
    assert not app.exception
    assert app.error and "404" in app.error[0].value
    assert chosen(app) is None

    ZipHandler.payload = zip_of(tiny_dataset)
    app.button(key="download_official").click().run()
    assert not app.exception
    assert chosen(app) == (get_settings().datasets_dir / "cats_and_dogs_filtered").resolve()
    assert "**Classes:** `circles`, `squares`" in texts(app.markdown)


def test_augmentation_presets_preview_and_saving(dataset):
    app = dataset_page(AUGMENT_TAB)

    # The default preset's values are in the widgets, and the preview shows them.
    assert app.selectbox(key="aug_preset").value == "recommended"
    assert app.slider(key="aug_rotation").value == pytest.approx(0.1)
    captions = [c for image in app.image for c in image.captions]
    assert captions[0].startswith("original: ") and captions[1:] == [f"variant {i}" for i in range(1, 5)]

    app.selectbox(key="aug_preset").set_value("tutorial").run()
    assert app.slider(key="aug_rotation").value == pytest.approx(1.0)
    assert app.radio(key="aug_flip").value == "vertical"

    app.slider(key="aug_rotation").set_value(0.3).run()
    assert "**custom**: flip vertical, rotation 0.3" in texts(app.markdown)

    app.text_input(key="aug_save_name").set_value("tutorial").run()
    app.button(key="aug_save").click().run()
    assert "built-in preset" in app.error[0].value
    assert list_configs()["tutorial"].rotation == 1.0  # the preset is untouched

    app.text_input(key="aug_save_name").set_value("gentle turns").run()
    app.button(key="aug_save").click().run()
    assert not app.exception
    assert "Saved 'gentle turns'" in app.success[0].value
    saved = list_configs()["gentle turns"]
    assert (saved.flip, saved.rotation) == ("vertical", 0.3)
    assert app.selectbox(key="aug_preset").value == "gentle turns"
    assert "**gentle turns**: flip vertical, rotation 0.3" in texts(app.markdown)


def test_the_page_does_not_load_tensorflow_until_the_preview(tiny_dataset, tmp_path):
    """Overview and browsing stay light: TensorFlow loads only for the augmentation preview."""
    home = tmp_path / "home"
    script = (
        "import sys\n"
        "from core.data.workspace import remember_use\n"
        f"remember_use({str(tiny_dataset)!r})\n"
        "from streamlit.testing.v1 import AppTest\n"
        f"app = AppTest.from_file({str(REPO / 'app.py')!r}, default_timeout=120).run()\n"
        "app.switch_page('pages/dataset.py').run()\n"
        f"app.session_state['dataset_tab'] = {BROWSE_TAB!r}\n"
        "app.run()\n"
        "assert not app.exception, app.exception\n"
        "assert app.image, 'the browse tab shows no photos'\n"
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n"
    )
    env = {"PAWLAB_HOME": str(home), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "PAWLAB_ALLOW_LOCAL_PATHS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def read_only(*args, **kwargs):
    raise OSError(errno.EROFS, "Read-only file system", str(get_settings().home))


def test_a_read_only_home_is_one_sentence_not_a_traceback(dataset, tiny_dataset, monkeypatch):
    from core.data import acquire, augment

    monkeypatch.setattr(acquire, "import_zip", read_only)
    monkeypatch.setattr(augment, "save_config", read_only)
    app = dataset_page(AUGMENT_TAB)

    app.file_uploader(key="dataset_zip").set_value(("shapes.zip", zip_of(tiny_dataset), "application/zip")).run()
    app.button(key="dataset_zip_import").click().run()
    assert not app.exception
    assert [e.value for e in app.error] == [
        f"Could not add the dataset: the folder PawLab writes to is read-only (`{get_settings().home}`)."
    ]

    app.text_input(key="aug_save_name").set_value("gentle").run()
    app.button(key="aug_save").click().run()
    assert not app.exception
    assert [e.value for e in app.error] == [
        f"Could not save the augmentation config: the folder PawLab writes to is read-only (`{get_settings().home}`)."
    ]


def test_corrections_are_applied_and_counted(dataset):
    from core.data.corrections import add_correction

    add_correction(dataset, "train/circles/circles.train.0.jpg", "squares")
    add_correction(dataset, "train/circles/circles.train.1.jpg", None)
    app = dataset_page()

    assert "1 relabelled, 1 excluded" in page_text(app)
    assert count_table(app)["train"] == {"circles": 10, "squares": 13}
    assert [m.value for m in app.metric] == ["2", "35", "1"]  # the excluded photo is listed as skipped
