"""Training runs in this process: learning, run folder contents, checkpoints, cancel, failure.

Images are tiny (32 px) and the dataset is made to be separable, so a real
model really learns in a few epochs on two CPU cores.
"""

from __future__ import annotations

import functools
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import REPO, make_separable_dataset
from PIL import Image

from core.data.images import Pixels
from core.models.novelty import NoveltyDetector
from core.models.zoo import load_saved_model
from core.runs import training
from core.runs.evaluation import evaluate_model
from core.runs.recipes import RECIPES, check_config, make_config
from core.runs.run_split import run_splits
from core.runs.store import (
    LOG_FILE,
    MODEL_FILE,
    Mode,
    Phase,
    RunState,
    create_run,
    read_config,
    read_facts,
    read_metrics,
    read_split,
    read_status,
    update_status,
)
from core.runs.trust import NOVELTY_FILE, TRUST_FILE, read_trust
from core.runs.worker import execute_run

METRIC_KEYS = {"epoch", "phase", "loss", "accuracy", "val_loss", "val_accuracy", "seconds", "images_per_second", "time"}


def new_run(data, runs, arch="cnn", epochs=3, **kwargs):
    kwargs = dict(image_size=32, batch_size=8) | kwargs
    return create_run(make_config(data, arch, epochs, **kwargs), runs)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One cnn run, trained once for the tests that read its folder."""
    base = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PAWLAB_HOME", str(base / "home"))
        data = make_separable_dataset(base / "data", per_class=30, size=32)
        run_dir = new_run(data, base / "runs", epochs=4)
        started = time.perf_counter()
        state = execute_run(run_dir)
        seconds = time.perf_counter() - started
    return {"run_dir": run_dir, "state": state, "data": data, "seconds": seconds}


def test_cnn_learns_the_separable_dataset(trained):
    assert trained["state"] == RunState.COMPLETED, read_status(trained["run_dir"]).error
    val_accuracies = [m["val_accuracy"] for m in read_metrics(trained["run_dir"])]
    assert max(val_accuracies) >= 0.9, val_accuracies
    assert json.loads((trained["run_dir"] / "evaluation.json").read_text())["accuracy"] >= 0.9


def test_run_folder_holds_everything_a_page_reads(trained):
    run_dir = trained["run_dir"]
    config, facts = read_config(run_dir), read_facts(run_dir)
    assert config.data_root == str(trained["data"])
    assert facts.classes == ["circles", "squares"]
    assert (config.seed, config.test_fraction, config.validation_fraction) == (1337, 0.2, 0.2)
    assert config.augment.is_identity and facts.mode == Mode.END_TO_END
    assert facts.versions["tensorflow"] and facts.versions["keras"] and facts.versions["python"]
    assert facts.split_counts["train"] == {"circles": 30, "squares": 30}
    assert (facts.strategy, facts.replicas) == ("_DefaultDistributionStrategy", 1)
    assert (run_dir / TRUST_FILE).is_file() and read_trust(run_dir).ece_after is not None
    # split.json: every photo of each split, relative to the dataset, matching the counts.
    split = read_split(run_dir)
    assert split["classes"] == facts.classes
    for name, counts in facts.split_counts.items():
        assert len(split[name]) == sum(counts.values())
        assert all(not path.startswith("/") and (trained["data"] / path).is_file() for path, _ in split[name])

    status = read_status(run_dir)
    assert status.state == RunState.COMPLETED and status.pid == os.getpid()
    assert status.started <= status.finished and status.error is None
    assert (status.epoch, status.epochs_total, status.mode) == (4, 4, Mode.END_TO_END)

    metrics = read_metrics(run_dir)
    assert [m["epoch"] for m in metrics] == [1, 2, 3, 4]
    assert all(set(m) == METRIC_KEYS and m["phase"] == "train" for m in metrics)
    assert all(m["images_per_second"] > 0 for m in metrics)

    model = keras.models.load_model(run_dir / MODEL_FILE, safe_mode=True)
    from core.data.images import load_resized

    circle = next((trained["data"] / "validation" / "circles").iterdir())
    square = next((trained["data"] / "validation" / "squares").iterdir())
    batch = np.stack([load_resized(circle, 32), load_resized(square, 32)]).astype("float32")
    assert model.predict(batch, verbose=0).argmax(axis=1).tolist() == [0, 1]

    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    test_count = sum(facts.split_counts["test"].values())
    assert np.sum(evaluation["confusion_matrix"]) == evaluation["count"] == test_count > 0

    events = list((run_dir / "tensorboard").rglob("events.out.tfevents.*"))
    assert events, "no TensorBoard event files"
    assert not list(run_dir.glob("*.tmp*")) and not (run_dir / ".cache").exists()


def test_a_best_epoch_within_the_save_interval_is_written_when_fit_ends(tmp_path):
    """Saves are spaced out; the file still ends up holding the best epoch's weights, not the last's."""
    from core.runs.control import RunControl

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    checkpoint = training.AtomicCheckpoint(tmp_path / MODEL_FILE, model, RunControl(tmp_path))
    checkpoint.set_model(model)
    saved_weights = {}

    def epoch(number, val_accuracy):
        model.set_weights([np.full_like(w, number) for w in model.get_weights()])
        checkpoint.on_epoch_end(number - 1, {"val_accuracy": val_accuracy})
        saved_weights[number] = keras.models.load_model(tmp_path / MODEL_FILE).get_weights()[0][0, 0]

    epoch(1, 0.5)  # the first best is written at once
    epoch(2, 0.7)  # better, but within SAVE_INTERVAL of the first save: kept in memory
    epoch(3, 0.6)
    assert saved_weights == {1: 1.0, 2: 1.0, 3: 1.0}
    checkpoint.on_train_end()
    assert keras.models.load_model(tmp_path / MODEL_FILE).get_weights()[0][0, 0] == 2.0
    assert model.get_weights()[0][0, 0] == 3.0  # fitting goes on from the last epoch
    assert checkpoint.best_epoch == 2


def test_checkpoint_is_replaced_atomically_and_always_loads(tmp_path, monkeypatch):
    """model.keras is saved to a temp file beside it and renamed; a reader never sees half a file."""
    data = make_separable_dataset(tmp_path / "data", per_class=16, size=32)
    run_dir = new_run(data, tmp_path / "runs", epochs=4)
    model_file = run_dir / MODEL_FILE

    replaced, direct_saves = [], []
    real_replace, real_save = os.replace, keras.Model.save

    def spy_replace(src, dst):
        if Path(dst) == model_file:
            # The temp file is complete before it takes model.keras' name.
            keras.models.load_model(src, safe_mode=True)
            replaced.append(Path(src))
        return real_replace(src, dst)

    def spy_save(self, filepath, *args, **kwargs):
        if Path(filepath) == model_file:
            direct_saves.append(filepath)
        return real_save(self, filepath, *args, **kwargs)

    monkeypatch.setattr(training.os, "replace", spy_replace)
    monkeypatch.setattr(keras.Model, "save", spy_save)

    reads, broken, done = [0], [], threading.Event()

    def reader():  # what the Classify page does while a run trains
        while not done.is_set():
            if model_file.exists():
                try:
                    with zipfile.ZipFile(model_file) as archive:
                        assert archive.testzip() is None
                    reads[0] += 1
                except Exception as error:
                    broken.append(repr(error))
            time.sleep(0.002)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        assert execute_run(run_dir) == RunState.COMPLETED, read_status(run_dir).error
    finally:
        done.set()
        thread.join()

    assert replaced and not direct_saves
    assert all(src.parent == run_dir and src != model_file for src in replaced)
    assert not broken and reads[0] > 0
    assert not [p.name for p in run_dir.iterdir() if ".tmp" in p.name]
    # Saved only when validation accuracy improved: never more saves than epochs.
    assert len(replaced) <= 4


def test_cancel_file_stops_training_after_the_current_batch(tmp_path, monkeypatch):
    data = make_separable_dataset(tmp_path / "data", per_class=16, size=32)
    run_dir = new_run(data, tmp_path / "runs", epochs=50, batch_size=2)
    batches, cancel_at = [], 20  # in the second epoch (16 batches per epoch)
    real_batch_end = training.ProgressCallback.on_train_batch_end

    def batch_end(self, batch, logs=None):
        batches.append(batch)
        if len(batches) == cancel_at:
            (run_dir / "cancel").touch()  # what core.runs.jobs.cancel writes
        return real_batch_end(self, batch, logs)

    monkeypatch.setattr(training.ProgressCallback, "on_train_batch_end", batch_end)
    assert execute_run(run_dir) == RunState.CANCELLED

    assert len(batches) == cancel_at  # not one batch more
    status = read_status(run_dir)
    assert status.state == RunState.CANCELLED and status.finished and status.error is None
    # Only whole epochs are results; the cut-short second one is not.
    assert [m["epoch"] for m in read_metrics(run_dir)] == [1]
    assert not (run_dir / "evaluation.json").exists()


def test_sigterm_cancels_the_run(tmp_path):
    data = make_separable_dataset(tmp_path / "data", per_class=16, size=32)
    run_dir = new_run(data, tmp_path / "runs", epochs=200, batch_size=2)

    def terminate_when_training():
        deadline = time.time() + 60
        while time.time() < deadline:
            if read_status(run_dir).batch >= 1:
                os.kill(os.getpid(), signal.SIGTERM)  # the handler only sets a flag
                return
            time.sleep(0.05)

    previous = signal.getsignal(signal.SIGTERM)
    killer = threading.Thread(target=terminate_when_training)
    killer.start()
    started = time.perf_counter()
    state = execute_run(run_dir)
    killer.join()
    assert state == RunState.CANCELLED
    assert len(read_metrics(run_dir)) < 200 and time.perf_counter() - started < 60
    assert signal.getsignal(signal.SIGTERM) is previous  # the handler is put back


def test_missing_data_folder_fails_with_a_sentence(tmp_path):
    run_dir = new_run(tmp_path / "nowhere", tmp_path / "runs")
    assert execute_run(run_dir) == RunState.FAILED
    status = read_status(run_dir)
    assert status.state == RunState.FAILED and status.finished
    assert "nowhere" in status.error and "is not a folder" in status.error
    # The sentence is in status.json, the traceback in log.txt.
    assert "Traceback" not in status.error and "\n" not in status.error
    assert "Traceback" in (run_dir / LOG_FILE).read_text()


def test_one_class_dataset_fails_with_a_sentence(tmp_path):
    data = make_separable_dataset(tmp_path / "data", classes=("only",), per_class=6, size=32)
    run_dir = new_run(data, tmp_path / "runs")
    assert execute_run(run_dir) == RunState.FAILED
    assert "two classes" in read_status(run_dir).error


def test_a_finished_run_is_not_trained_again(tmp_path):
    run_dir = new_run(tmp_path / "nowhere", tmp_path / "runs")
    update_status(run_dir, state=RunState.CANCELLED)
    assert execute_run(run_dir) == RunState.CANCELLED
    assert read_status(run_dir).started is None


def test_augmented_training_runs_end_to_end(tmp_path):
    data = make_separable_dataset(tmp_path / "data", per_class=8, size=32)
    run_dir = new_run(data, tmp_path / "runs", arch="cnn_aug", epochs=1, augment="recommended")
    assert execute_run(run_dir) == RunState.COMPLETED, read_status(run_dir).error
    config = read_config(run_dir)
    assert config.augment.name == "recommended" and not config.augment.is_identity
    assert read_status(run_dir).mode == Mode.END_TO_END


def test_a_cosine_schedule_warms_up_then_decays_to_zero():
    optimizer = training._optimizer(1e-3, schedule="cosine", weight_decay=1e-3, steps_per_epoch=10, epochs=8)
    assert isinstance(optimizer, keras.optimizers.AdamW) and optimizer.weight_decay == 1e-3
    rate = optimizer.learning_rate if callable(optimizer.learning_rate) else optimizer._learning_rate
    at = [float(rate(step)) for step in (0, 10, 20, 50, 80)]
    assert at[0] == pytest.approx(1e-4) and at[1] > at[0]  # warming up over 2 epochs
    assert at[2] == pytest.approx(1e-3)  # the peak, then down
    assert at[2] > at[3] > at[4] and at[4] == pytest.approx(0.0, abs=1e-9)
    constant = training._optimizer(1e-3)
    assert type(constant) is keras.optimizers.Adam
    assert float(constant.learning_rate) == pytest.approx(1e-3)


def test_the_cnn_plus_recipe_trains_with_its_schedule_and_saves_a_flip_averaging_model(tmp_path, monkeypatch):
    asked = []
    real_optimizer = training._optimizer

    def spy(*args, **kwargs):
        asked.append(kwargs)
        return real_optimizer(*args, **kwargs)

    monkeypatch.setattr(training, "_optimizer", spy)
    data = make_separable_dataset(tmp_path / "data", per_class=8, size=32)
    run_dir = new_run(data, tmp_path / "runs", arch="cnn_plus", epochs=2)
    config = read_config(run_dir)
    recipe = RECIPES["cnn_plus"]
    assert (config.schedule, config.weight_decay, config.test_time_flip) == ("cosine", recipe.weight_decay, True)
    assert recipe.weight_decay > 0
    assert execute_run(run_dir) == RunState.COMPLETED, read_status(run_dir).error
    assert asked[0] | {"steps_per_epoch": None} == {
        "schedule": "cosine",
        "weight_decay": recipe.weight_decay,
        "steps_per_epoch": None,
        "epochs": 2,
    }
    model = load_saved_model(run_dir / MODEL_FILE)  # as Classify loads it
    assert model.get_layer("mirror_pair") and model.get_layer("mean_of_pairs")
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(
        model.predict_on_batch(images), model.predict_on_batch(images[:, :, ::-1]), atol=1e-5
    )  # a photo and its mirror image get the same answer
    # trust.json's val_accuracy is the saved model's, flips included, on the run's validation photos.
    from core.data.pipeline import make_dataset

    validation = run_splits(run_dir, config).validation
    logits = model.predict(
        make_dataset(validation, config.image_size, 8, training=False).map(lambda images, labels: images), verbose=0
    )
    labels = np.array([sample.label for sample in validation])
    assert read_trust(run_dir).val_accuracy == pytest.approx(np.mean(logits.argmax(axis=1) == labels))


@pytest.mark.parametrize(
    "field, value", [("schedule", "linear"), ("weight_decay", -0.1), ("weight_decay", 1.5), ("weight_decay", True)]
)
def test_a_config_file_with_a_bad_schedule_or_weight_decay_is_refused(tmp_path, field, value):
    config = make_config(make_separable_dataset(tmp_path / "data", per_class=2, size=16), "cnn_plus", 1)
    with pytest.raises(ValueError, match="schedule|weight decay"):
        check_config(replace(config, **{field: value}))


def cli(*args, env=None, timeout=240):
    return subprocess.run(
        [sys.executable, "-m", "core", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
    )


def run_main(capsys, *args) -> tuple[int, str, str]:
    """``python -m core ARGS`` in this process (TensorFlow is loaded already)."""
    from core.cli import main

    code = main([str(arg) for arg in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_train_evaluate_and_list(tmp_path, capsys):
    data = make_separable_dataset(tmp_path / "data", per_class=12, size=32)
    runs = tmp_path / "runs"
    code, out, err = run_main(
        capsys,
        "train",
        "--data",
        data,
        "--arch",
        "cnn",
        "--epochs",
        "2",
        "--image-size",
        "32",
        "--batch-size",
        "8",
        "--runs-dir",
        runs,
    )
    assert code == 0, err[-3000:]
    run_dir = Path(out.strip().splitlines()[-1])
    assert run_dir.parent == runs and read_status(run_dir).state == RunState.COMPLETED
    assert "epoch 2/2" in err  # progress for a person at the terminal

    code, out, err = run_main(capsys, "evaluate", run_dir)
    assert code == 0, err[-3000:]
    evaluation = json.loads(out)
    assert evaluation["classes"] == ["circles", "squares"]
    assert np.sum(evaluation["confusion_matrix"]) == evaluation["count"] > 0

    code, out, err = run_main(capsys, "runs", "--runs-dir", runs)
    assert [r["id"] for r in json.loads(out)] == [run_dir.name]


def test_cli_train_exits_1_when_the_run_fails(tmp_path, capsys):
    code, out, err = run_main(
        capsys,
        "train",
        "--data",
        tmp_path / "missing",
        "--arch",
        "cnn",
        "--epochs",
        "1",
        "--runs-dir",
        tmp_path / "runs",
    )
    assert code == 1
    run_dir = Path(out.strip().splitlines()[-1])
    assert read_status(run_dir).state == RunState.FAILED
    assert "missing" in err and "is not a folder" in err
    # In the foreground too, the traceback is kept in the run's log.txt, once.
    log = (run_dir / LOG_FILE).read_text()
    assert log.count("Traceback (most recent call last)") == 1 and "is not a folder" in log


def test_cli_train_refuses_bad_arguments_before_creating_a_run(tmp_path, capsys):
    code, _out, err = run_main(
        capsys, "train", "--data", tmp_path, "--arch", "nope", "--epochs", "1", "--runs-dir", tmp_path / "runs"
    )
    assert code == 2 and "Unknown architecture" in err
    assert not (tmp_path / "runs").exists()


def test_mirrored_strategy_trains_on_two_logical_cpus(tmp_path):
    """The multi-device path: Keras splits each batch over two replicas.

    Logical devices must exist before TensorFlow starts, hence a fresh process.
    """
    data = make_separable_dataset(tmp_path / "data", per_class=8, size=32)
    trained = cli(
        "train",
        "--data",
        data,
        "--arch",
        "cnn",
        "--epochs",
        "1",
        "--image-size",
        "32",
        "--batch-size",
        "8",
        "--runs-dir",
        tmp_path / "runs",
        env={"PAWLAB_LOGICAL_CPUS": "2", "PAWLAB_STRATEGY": "mirrored"},
    )
    # A real `python -m core train`: exit 0 and the run folder on the last line.
    assert trained.returncode == 0, trained.stderr[-3000:]
    run_dir = Path(trained.stdout.strip().splitlines()[-1])
    assert run_dir.parent == tmp_path / "runs"
    facts = read_facts(run_dir)
    assert (facts.strategy, facts.replicas) == ("MirroredStrategy", 2)
    assert len(read_metrics(run_dir)) == 1
    assert keras.models.load_model(run_dir / MODEL_FILE, safe_mode=True).output.shape[-1] == 2


def test_training_mode_caches_features_only_for_a_frozen_base_without_augmentation(tmp_path):
    assert training.training_mode(make_config(tmp_path, "mobilenet_v2", 1)) == Mode.CACHED_FEATURES
    assert training.training_mode(make_config(tmp_path, "mobilenet_v2_finetune", 1)) == Mode.CACHED_FEATURES
    augmented = make_config(tmp_path, "mobilenet_v2", 1, augment="recommended")
    assert training.training_mode(augmented) == Mode.END_TO_END
    assert training.training_mode(make_config(tmp_path, "cnn", 1)) == Mode.END_TO_END


@pytest.fixture
def imagenet_weights(keras_home, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(keras_home))


# Transfer tests use the tutorial's 160 px on a handful of photos.
def test_mobilenet_v2_trains_its_head_on_cached_features(tmp_path, imagenet_weights, pawlab_home):
    data = make_separable_dataset(tmp_path / "data", per_class=6, size=48)
    run_dir = new_run(data, tmp_path / "runs", arch="mobilenet_v2", epochs=1, image_size=160, subset=4)
    assert execute_run(run_dir) == RunState.COMPLETED, read_status(run_dir).error

    assert read_status(run_dir).mode == read_facts(run_dir).mode == Mode.CACHED_FEATURES
    assert list((pawlab_home / "cache" / "features").glob("*.npz"))  # the base ran once, kept
    assert [m["epoch"] for m in read_metrics(run_dir)] == [1]
    model = keras.models.load_model(run_dir / MODEL_FILE, safe_mode=True)
    # The saved model is the whole thing: photos in, logits out, base layers included.
    assert tuple(model.input.shape) == (None, 160, 160, 3) and model.output.shape[-1] == 2
    assert model.get_layer("out_relu") is not None
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    assert evaluation["count"] > 0
    # Scored from the cached features through the saved head: what the saved model itself answers.
    config = read_config(run_dir)
    splits = run_splits(run_dir, config)
    temperature = read_trust(run_dir).temperature
    itself = evaluate_model(model, splits.test, splits.classes, 160, temperature=temperature)
    assert itself["confusion_matrix"] == evaluation["confusion_matrix"]
    assert itself["ece_before"] == pytest.approx(evaluation["ece_before"], abs=2e-3)
    assert itself["ece_after"] == pytest.approx(evaluation["ece_after"], abs=2e-3)
    # A frozen ImageNet base: the run keeps an unknown-photo check on its training photos.
    assert read_trust(run_dir).novelty_threshold is not None
    assert len(NoveltyDetector.load(run_dir / NOVELTY_FILE).reference) == 8


def _decoding_ahead() -> bool:
    return any(thread.name == "decode-ahead" for thread in threading.enumerate())


def test_photos_decode_while_the_frozen_base_is_built_and_a_cancel_stops_the_decoding(
    tmp_path, imagenet_weights, pawlab_home, monkeypatch
):
    """The feature pass's photos decode in the background from before the base is built
    (Training.decode_ahead); a run cancelled before the pass leaves no decoding thread behind."""
    data = make_separable_dataset(tmp_path / "data", per_class=6, size=48)
    run_dir = new_run(data, tmp_path / "runs", arch="mobilenet_v2", epochs=1, image_size=160, subset=4, batch_size=2)
    seen_during_build = []
    real_build = training.build_frozen_parts

    def build_then_cancel(*args, **kwargs):
        seen_during_build.append(_decoding_ahead())
        (run_dir / "cancel").touch()  # the features pass's first check stops the run
        return real_build(*args, **kwargs)

    monkeypatch.setattr(training, "build_frozen_parts", build_then_cancel)
    # Room for one batch: the decoder then waits for its reader, who will never come.
    monkeypatch.setattr(training, "DecodeAhead", functools.partial(training.DecodeAhead, max_bytes=1))
    assert execute_run(run_dir) == RunState.CANCELLED
    assert seen_during_build == [True]
    assert not _decoding_ahead()
    assert not list((pawlab_home / "cache" / "features").glob("*.npz"))  # nothing half computed kept


def test_a_run_that_fails_before_its_feature_pass_stops_decoding_its_photos(tmp_path, monkeypatch):
    """Runs share a process in tests and Ray workers: a failed build must not leave photos decoding."""
    data = make_separable_dataset(tmp_path / "data", per_class=6, size=48)
    run_dir = new_run(data, tmp_path / "runs", arch="mobilenet_v2", epochs=1, image_size=160, subset=4, batch_size=2)

    def no_base(*args, **kwargs):
        assert _decoding_ahead()
        raise ValueError("No ImageNet weights here.")

    monkeypatch.setattr(training, "build_frozen_parts", no_base)
    monkeypatch.setattr(training, "DecodeAhead", functools.partial(training.DecodeAhead, max_bytes=1))
    assert execute_run(run_dir) == RunState.FAILED
    assert read_status(run_dir).error == "No ImageNet weights here."
    assert not _decoding_ahead()


def _own_dataset(root: Path) -> Path:
    """Not cats and dogs: three shapes, uneven (12, 7, 5), JPEG, PNG and WebP, a copy,
    and a phone photo stored on its side with EXIF orientation 6."""
    from tests._own_photos import FORMATS, SUFFIX, shape_photo

    for shape, count in {"circle": 12, "square": 7, "stripe": 5}.items():
        folder = root / shape
        folder.mkdir(parents=True)
        for seed in range(count):
            image_format = FORMATS[seed % len(FORMATS)]
            (folder / f"{seed}{SUFFIX[image_format]}").write_bytes(shape_photo(shape, seed, image_format, size=64))
    (root / "circle" / "copy.jpg").write_bytes((root / "circle" / "0.jpg").read_bytes())
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view
    photo = Image.open(io.BytesIO(shape_photo("square", 99, "JPEG", size=64))).transpose(Image.Transpose.ROTATE_90)
    photo.save(root / "square" / "sideways.jpg", exif=exif)
    return root


def test_photos_decoded_ahead_give_the_features_of_decoding_them_in_place_on_an_own_dataset(
    tmp_path, imagenet_weights, pawlab_home
):
    from core.data.native_decode import plan_decodes
    from core.models.features import cached_features

    data = _own_dataset(tmp_path / "shapes")
    run_dir = new_run(data, tmp_path / "runs", arch="mobilenet_v2", epochs=1, image_size=160, batch_size=4)
    assert execute_run(run_dir) == RunState.COMPLETED, read_status(run_dir).error
    config = read_config(run_dir)
    splits = run_splits(run_dir, config)
    assert len(splits.classes) == 3
    train = splits.train
    assert {Path(s.path).suffix for s in train} == {".jpg", ".png", ".webp"}  # TF's decoder and Pillow's
    sideways = [s.path for s in train if Path(s.path).name == "sideways.jpg"]  # the seeded split puts it here
    assert [plan.orientation for plan in plan_decodes(sideways, 160)] == [6]  # turned in TensorFlow's graph

    decoded_ahead, labels = training.frozen_features(None, config, train, Pixels.FAST)  # what the run cached
    extractor, _ = training.build_frozen_parts(config.arch, 3, 160)
    in_place, in_place_labels = cached_features(
        extractor, train, 160, 4, cache_key="in-place", cache_dir=tmp_path / "in_place", pixels=Pixels.FAST
    )
    np.testing.assert_array_equal(labels, in_place_labels)
    np.testing.assert_allclose(decoded_ahead, in_place, rtol=0, atol=1e-3 * float(np.abs(in_place).max()))


def test_a_recipe_run_at_the_embedding_size_reuses_its_features_for_the_unknown_photo_check(
    tmp_path, imagenet_weights, monkeypatch
):
    from core.models import embeddings

    def second_pass(*args, **kwargs):
        raise AssertionError("the base ran a second time over the training photos")

    monkeypatch.setattr(embeddings, "embed_files", second_pass)
    data = make_separable_dataset(tmp_path / "data", per_class=6, size=48)
    run_dir = new_run(
        data, tmp_path / "runs", arch="mobilenet_v2_finetune", epochs=1, image_size=embeddings.EMBEDDING_SIZE, subset=4
    )
    assert execute_run(run_dir) == RunState.COMPLETED, read_status(run_dir).error
    config = read_config(run_dir)
    features, _ = training.frozen_features(None, config, run_splits(run_dir, config).train, Pixels.FAST)  # cached
    reference = NoveltyDetector.load(run_dir / NOVELTY_FILE).reference
    assert np.allclose(reference, features / np.linalg.norm(features, axis=1, keepdims=True), atol=1e-2)
    training.cache_frozen_features(config, run_splits(run_dir, config))  # a sweep's pass: no second one


def test_mobilenet_v2_finetune_continues_with_a_fine_tune_phase(tmp_path, imagenet_weights):
    data = make_separable_dataset(tmp_path / "data", per_class=6, size=48)
    run_dir = new_run(
        data, tmp_path / "runs", arch="mobilenet_v2_finetune", epochs=1, fine_tune_epochs=1, image_size=160, subset=4
    )
    assert execute_run(run_dir) == RunState.COMPLETED, read_status(run_dir).error
    metrics = read_metrics(run_dir)
    assert [(m["epoch"], m["phase"]) for m in metrics] == [(1, Phase.TRAIN), (2, Phase.FINE_TUNE)]
    status = read_status(run_dir)
    assert (status.epochs_total, status.mode) == (2, Mode.CACHED_FEATURES)
    assert keras.models.load_model(run_dir / MODEL_FILE, safe_mode=True).output.shape[-1] == 2
