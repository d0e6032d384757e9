"""Callers in many threads share forward passes (core.serving.inference.ModelBatcher), and each
gets only its own answers; a transfer model whose base is the check's ImageNet base answers and
checks for unknown photos in one pass, with the numbers of the two passes it replaces."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from test_inference import run_dir, validation_files  # noqa: F401 (run_dir is a fixture)

CALLERS = 10


def wait_for(condition, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.01)


def gated(batcher, forward, callers_behind: int):
    """``forward`` whose first pass waits until ``callers_behind`` calls are queued behind it, so the
    next pass must serve them together; records each pass's row count."""
    rows, first = [], threading.Event()

    def run(*inputs):
        if not first.is_set():
            first.set()
            wait_for(lambda: len(batcher._waiting) >= callers_behind)
        rows.append(len(inputs[0]))
        return forward(*inputs)

    return run, rows


def in_threads(function, arguments: list) -> list:
    """``function(argument)`` for each argument, each in its own thread, started together."""
    results: list = [None] * len(arguments)
    start = threading.Barrier(len(arguments))

    def call(index):
        start.wait()
        try:
            results[index] = function(arguments[index])
        except Exception as error:  # raised again below, in the test's thread
            results[index] = error

    threads = [threading.Thread(target=call, args=(index,)) for index in range(len(arguments))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def test_concurrent_callers_share_a_pass_and_each_gets_only_its_own_rows():
    from core.serving.inference import ModelBatcher

    batcher = ModelBatcher(lambda: None, max_photos=1000)
    # Each row's answer is a function of that row alone, so a mix-up shows.
    batcher._forward, rows = gated(batcher, lambda x, y: (x * 10 + y, -x), CALLERS - 1)
    inputs = [np.arange(n + 1, dtype=np.float64) + 100 * n for n in range(CALLERS)]  # 1..10 rows each

    results = in_threads(lambda x: batcher(x, np.full_like(x, 7)), inputs)

    for x, result in zip(inputs, results):
        assert not isinstance(result, Exception), result
        np.testing.assert_array_equal(result[0], x * 10 + 7)
        np.testing.assert_array_equal(result[1], -x)
    assert batcher.passes == 2  # the first caller alone, then the nine that queued behind it together
    assert len(rows) == 2 and rows[1] == sum(len(x) for x in inputs) - rows[0]


def test_a_failed_pass_fails_its_own_callers_and_the_next_pass_runs():
    from core.serving.inference import ModelBatcher

    def forward(x):
        if (x < 0).any():
            raise ValueError("a negative photo")
        return (x + 1,)

    batcher = ModelBatcher(forward)
    with pytest.raises(ValueError, match="negative"):
        batcher(np.array([-1.0]))
    np.testing.assert_array_equal(batcher(np.array([1.0, 2.0]))[0], [2.0, 3.0])


def test_a_pass_takes_at_most_max_photos_unless_one_call_is_larger():
    from core.serving.inference import ModelBatcher

    batcher = ModelBatcher(lambda: None, max_photos=4)
    batcher._forward, rows = gated(batcher, lambda x: (x,), 3)
    inputs = [np.zeros(1), np.zeros(3), np.zeros(2), np.zeros(6)]

    def call(x):
        return batcher(x)

    # The first call runs alone and holds the model until the other three wait behind it.
    first = threading.Thread(target=call, args=(inputs[0],))
    first.start()
    wait_for(lambda: batcher._busy)
    for x in inputs[1:]:
        threading.Thread(target=call, args=(x,)).start()
        wait_for(lambda x=x: any(job.inputs[0] is x for job in batcher._waiting))
    first.join(timeout=60)
    wait_for(lambda: len(rows) == 4)

    assert rows == [1, 3, 2, 6]  # 3 + 2 > 4, 2 + 6 > 4; a call of 6 still runs whole


def test_ten_threads_predicting_at_once_get_their_own_photos_answers(run_dir):  # noqa: F811
    from core.serving.inference import Predictor

    predictor = Predictor.from_run(run_dir)
    files = validation_files(run_dir)
    drops = [files[n % len(files) :][: 1 + n % 3] or files[:1] for n in range(CALLERS)]  # 1-3 photos each
    alone = [predictor.predict(drop) for drop in drops]
    predictor.batcher._forward, rows = gated(predictor.batcher, predictor._forward, CALLERS - 1)
    passes = predictor.batcher.passes

    together = in_threads(predictor.predict, drops)

    assert predictor.batcher.passes - passes == 2  # ten callers, two forward passes
    assert sum(rows) == sum(len(drop) for drop in drops)
    for drop, expected, got in zip(drops, alone, together):
        assert not isinstance(got, Exception), got
        assert [p.file for p in got] == drop
        for mine, reference in zip(got, expected):
            assert mine.label == reference.label
            for name in predictor.classes:
                assert mine.probabilities[name] == pytest.approx(reference.probabilities[name], abs=1e-6)
            np.testing.assert_array_equal(mine.pixels, reference.pixels)


@pytest.fixture(scope="module")
def imagenet_parts(keras_home, tmp_path_factory):
    """A mobilenet_v2 model at 96 px (random head) and an unknown-photo check fitted at 96 px on
    random photos' embeddings of the ImageNet extractor."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KERAS_HOME", str(keras_home))
        patch.setenv("PAWLAB_HOME", str(tmp_path_factory.mktemp("joint_home")))
        from core.models.embeddings import pooled_extractor
        from core.models.novelty import NoveltyDetector
        from core.models.zoo import build_model

        model = build_model("mobilenet_v2", 2, 96, seed=0)
        photos = np.random.default_rng(0).uniform(0, 255, (12, 96, 96, 3)).astype(np.uint8)
        extractor = pooled_extractor(96)
        embeddings = np.asarray(extractor(photos.astype(np.float32), training=False))
        detector = NoveltyDetector.fit(embeddings[:8], 96)
        yield model, detector, extractor, photos[8:], patch


def test_one_pass_gives_the_logits_and_the_checks_distances_of_two(imagenet_parts):
    from core.serving.inference import Predictor

    model, detector, extractor, photos, _ = imagenet_parts
    predictor = Predictor(model, ["a", "b"], 96, novelty=detector)
    assert predictor.one_pass

    logits, embeddings = predictor.batcher(photos)

    np.testing.assert_allclose(logits, np.asarray(model(photos.astype(np.float32), training=False)), atol=1e-4)
    expected = detector.distance(np.asarray(extractor(photos.astype(np.float32), training=False)))
    np.testing.assert_allclose(detector.distance(embeddings), expected, atol=1e-5)


def test_a_fine_tuned_base_gets_the_checks_own_pass(imagenet_parts):
    import keras

    from core.serving.inference import Predictor

    model, detector, extractor, photos, _ = imagenet_parts
    tuned = keras.models.clone_model(model)
    tuned.set_weights(model.get_weights())
    layer = tuned.get_layer("Conv1")
    layer.set_weights([weights * 1.01 for weights in layer.get_weights()])

    predictor = Predictor(tuned, ["a", "b"], 96, novelty=detector)

    assert not predictor.one_pass
    _, embeddings = predictor.batcher(photos)
    expected = detector.distance(np.asarray(extractor(photos.astype(np.float32), training=False)))
    np.testing.assert_allclose(detector.distance(embeddings), expected, atol=1e-5)
