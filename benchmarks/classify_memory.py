"""What the Classify page keeps in the server's memory: six sessions, each dropping 200 photos.

    python benchmarks/classify_memory.py [--sessions 6] [--photos 200] [--image-size 160]

One process plays the server: each session is a Streamlit AppTest of
pages/classify.py (its own session state; st.cache_* and the media file
storage are the process's, shared as on a real server). A completed run
holding an untrained cnn (the same cost per photo to keep as a trained one)
is made in a temporary PAWLAB_HOME, and one warm-up session loads TensorFlow
and the model. Then each session drops its own 200 real photos (no photo is
dropped twice) and stays open, as visitors' tabs do.

Prints the process's resident memory (VmRSS, and after glibc's malloc_trim,
which hands freed pages back: the memory still in use) after the warm-up and
after each session, and the growth over the warm-up: the issue's goal is
under +600 MB for six sessions. It also checks that each session's table
lists its own photos and nobody else's.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import time
from pathlib import Path

from _common import REPO, cats_and_dogs, table, use_temp_homes

MB = 1024**2


def resident_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def trimmed_resident_bytes() -> int:
    """Resident bytes once garbage is collected and glibc has returned its free pages."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: the plain figure
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return resident_bytes()


def make_run(image_size: int) -> None:
    """A completed run holding an untrained cnn that knows cats and dogs."""
    from core import defaults
    from core.config import get_settings
    from core.models.zoo import build_model
    from core.runs.recipes import make_config
    from core.runs.store import RunFacts, RunState, create_run, update_status, write_facts
    from core.serving.inference import model_path

    config = make_config(cats_and_dogs(), "cnn", image_size=image_size)
    run_dir = create_run(config, get_settings().runs_dir, state=RunState.RUNNING)
    write_facts(run_dir, RunFacts(classes=["cats", "dogs"]))
    build_model("cnn", 2, image_size, seed=defaults.SEED).save(model_path(run_dir))
    update_status(run_dir, state=RunState.COMPLETED, finished=time.time())


def open_session():
    from streamlit.testing.v1 import AppTest

    app = AppTest.from_file(str(REPO / "pages" / "classify.py"), default_timeout=600)
    app.run()
    assert not app.exception, app.exception
    return app


def drop(app, photos: list[Path]) -> None:
    app.file_uploader[0].set_value([(p.name, p.read_bytes(), "image/jpeg") for p in photos]).run()
    assert not app.exception, app.exception
    shown = list(app.dataframe[0].value["file"]) if len(photos) > 1 else [photos[0].name]
    assert shown == [p.name for p in photos], "a session sees photos it did not drop"


def real_photos(count: int) -> list[Path]:
    root = cats_and_dogs()
    photos = sorted(root.glob("train/*/*.jpg")) + sorted(root.glob("validation/*/*.jpg"))
    if len(photos) < count:
        raise SystemExit(f"only {len(photos)} photos under {root}; ask for fewer")
    return photos[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=6)
    parser.add_argument("--photos", type=int, default=200, help="photos each session drops")
    parser.add_argument("--image-size", type=int, default=160)
    args = parser.parse_args()

    use_temp_homes()
    make_run(args.image_size)
    photos = real_photos(args.sessions * args.photos + 2)
    warm_up = open_session()
    drop(warm_up, photos[-2:])  # TensorFlow, the model and its compiled call, the page's imports
    del warm_up
    start_rss, start_trimmed = resident_bytes(), trimmed_resident_bytes()

    rows, sessions = [], []
    for index in range(args.sessions):
        started = time.perf_counter()
        app = open_session()
        drop(app, photos[index * args.photos : (index + 1) * args.photos])
        sessions.append(app)  # the visitor's tab stays open
        rss, trimmed = resident_bytes(), trimmed_resident_bytes()
        rows.append(
            {
                "sessions": index + 1,
                "seconds": round(time.perf_counter() - started, 1),
                "RSS MB": round(rss / MB),
                "growth MB": round((rss - start_rss) / MB),
                "in use MB": round(trimmed / MB),
                "in-use growth MB": round((trimmed - start_trimmed) / MB),
            }
        )
        print(rows[-1], flush=True)

    print(f"\nAfter the warm-up: RSS {start_rss / MB:.0f} MB, in use {start_trimmed / MB:.0f} MB.")
    print(table(rows, list(rows[0])))
    growth = (trimmed_resident_bytes() - start_trimmed) / MB
    verdict = "under" if growth < 600 else "OVER"
    print(
        f"\n{args.sessions} sessions x {args.photos} photos: +{growth:.0f} MB in use, "
        f"{verdict} the +600 MB goal; RSS +{(resident_bytes() - start_rss) / MB:.0f} MB."
    )


if __name__ == "__main__":
    main()
