"""Labelling with the model's help: how many corrections, and how long a round takes.

A person starts from 5 labelled photos per class and the other 1990 of the
shared cats vs dogs training photos unlabelled. Each round they ask for 50
suggestions, accept the right ones and correct the wrong ones (a photo
flagged "none of these" is a correction too: every photo here is a cat or a
dog). The count that matters is the corrections in all.

1. In process (embeddings computed once): PawLab's order and model
   (core.labeling.ranking) against the naive loop, scikit-learn's logistic
   regression on the same embeddings refit every 50, in random and in
   uncertainty order; 3 starting draws each.
2. The real thing, once: a dataset made in PawLab (core.data.maker, photos
   named by their content, so no name carries the label) in a fresh
   PAWLAB_HOME, and each round ``python -m core label --next 50`` and
   ``--set FILE=CLASS ...`` as subprocesses. The first round computes the
   embeddings (TensorFlow); every later one must take at most 3 s.

    python3 benchmarks/bench_labeling.py [--draws 3] [--skip-cli]

PAWLAB_BENCH_EMBEDDINGS=DIR reuses an embedding cache folder (PAWLAB_HOME/cache/embeddings of
an earlier run) so the first round does not compute them again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import REPO, cats_and_dogs, table, use_temp_homes

START_PER_CLASS = 5
BATCH = 50
GOAL_CORRECTIONS = 30
GOAL_ROUND_SECONDS = 3.0


# --- The simulated person, in process --------------------------------------------------


def start_labels(labels: np.ndarray, draw: int) -> list[int]:
    rng = np.random.default_rng(draw)
    return [int(i) for c in np.unique(labels) for i in rng.permutation(np.flatnonzero(labels == c))[:START_PER_CLASS]]


def naive_offers(order: str, rng):
    """Logistic regression on the raw embeddings, refit each round; random or uncertainty order."""
    from sklearn.linear_model import LogisticRegression

    def offers(embeddings, labels, pool_embeddings, num_classes):
        model = LogisticRegression(max_iter=1000).fit(embeddings, labels)
        probabilities = model.predict_proba(pool_embeddings)
        ranked = rng.permutation(len(pool_embeddings)) if order == "random" else np.argsort(probabilities.max(1))
        return [(int(i), int(probabilities[i].argmax()), False) for i in ranked]

    return offers


def pawlab_offers(embeddings, labels, pool_embeddings, num_classes):
    from core.labeling.ranking import rank_for_labelling

    return [
        (o.index, o.suggested, o.unknown) for o in rank_for_labelling(embeddings, labels, pool_embeddings, num_classes)
    ]


def corrections_needed(offers, embeddings: np.ndarray, truth: np.ndarray, draw: int) -> int:
    labelled = start_labels(truth, draw)
    pool = sorted(set(range(len(truth))) - set(labelled))
    corrections = 0
    while pool:
        batch = offers(embeddings[labelled], truth[labelled], embeddings[pool], 2)[:BATCH]
        picked = [pool[index] for index, _, _ in batch]
        corrections += sum(unknown or suggested != truth[i] for i, (_, suggested, unknown) in zip(picked, batch))
        labelled += picked
        taken = set(picked)
        pool = [i for i in pool if i not in taken]
    return corrections


def in_process(draws: int) -> None:
    from core.models.embeddings import embed_files

    photos = sorted((cats_and_dogs() / "train").glob("*/*.jpg"))
    truth = np.array([0 if photo.parent.name == "cats" else 1 for photo in photos])
    started = time.time()
    embeddings = embed_files(photos)
    print(f"embeddings of {len(photos)} photos: {time.time() - started:.0f} s", flush=True)
    rows = []
    for name in ("naive, random order", "naive, uncertainty first", "PawLab"):
        counts = []
        for draw in range(draws):
            rng = np.random.default_rng(100 + draw)
            offers = pawlab_offers if name == "PawLab" else naive_offers(name.split(", ")[1].split()[0], rng)
            counts.append(int(corrections_needed(offers, embeddings, truth, draw)))
        rows.append(
            {"loop": name, "corrections per draw": ", ".join(map(str, counts)), "mean": statistics.mean(counts)}
        )
        print(rows[-1], flush=True)
    print(table(rows, ["loop", "corrections per draw", "mean"]))


# --- The real thing: the CLI, as subprocesses --------------------------------------------


def make_dataset(photos: list[Path]) -> tuple[Path, dict[str, str]]:
    """A made dataset with START_PER_CLASS photos per class labelled and the rest unlabelled;
    returns it and {content key: true class}."""
    from core.data.maker import KEY_CHARS, add_photos, new_dataset

    root = new_dataset("labeling bench", ["cats", "dogs"])
    truth = {}
    start = {c: [p for p in photos if p.parent.name == c][:START_PER_CLASS] for c in ("cats", "dogs")}
    for class_name, chosen in start.items():
        add_photos(root, class_name, [("photo.jpg", p.read_bytes()) for p in chosen])
    rest = [p for p in photos if p not in start["cats"] and p not in start["dogs"]]
    for first in range(0, len(rest), 200):  # a drop holds at most 200 photos
        drop = rest[first : first + 200]
        datas = [p.read_bytes() for p in drop]
        add_photos(root, None, [("photo.jpg", data) for data in datas])
        truth |= {hashlib.sha256(data).hexdigest()[:KEY_CHARS]: p.parent.name for p, data in zip(drop, datas)}
    return root, truth


def label_cli(*args: str) -> tuple[list[str], float]:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "core", "label", *args], cwd=REPO, capture_output=True, text=True, check=False
    )
    if result.returncode:
        sys.exit(f"label {' '.join(args[:4])}... failed: {result.stderr.strip()}")
    return result.stdout.splitlines(), time.perf_counter() - started


def with_cli() -> None:
    photos = sorted((cats_and_dogs() / "train").glob("*/*.jpg"))
    root, truth = make_dataset(photos)
    print(f"made {root} with {len(truth)} unlabelled photos", flush=True)
    corrections, seconds, loads = 0, [], []
    while True:
        lines, next_seconds = label_cli("--data", str(root), "--next", str(BATCH))
        if not lines:
            break
        batch = [json.loads(line) for line in lines]
        right = {s["file"]: truth[s["file"].rsplit("_", 1)[1].split(".")[0]] for s in batch}
        corrections += sum(s["unknown"] or s["suggested"] != right[s["file"]] for s in batch)
        _, set_seconds = label_cli("--data", str(root), *[f"--set={file}={label}" for file, label in right.items()])
        seconds.append(next_seconds + set_seconds)
        loads.append(os.getloadavg()[0])
        print(
            f"round {len(seconds)}: {len(batch)} photos, {corrections} corrections so far, "
            f"{next_seconds:.2f} s + {set_seconds:.2f} s, load {loads[-1]:.1f}",
            flush=True,
        )
    later = seconds[1:]
    print(
        f"\nPawLab through the CLI: {corrections} corrections for {len(truth)} photos (goal: at most {GOAL_CORRECTIONS})"
    )
    print(f"first round (embeds what is not cached, builds the dataset's matrix): {seconds[0]:.1f} s")
    print(
        f"later rounds: median {statistics.median(later):.2f} s, max {max(later):.2f} s "
        f"(goal: at most {GOAL_ROUND_SECONDS:g} s); 1-minute load during them: "
        f"median {statistics.median(loads[1:]):.1f}, max {max(loads[1:]):.1f} on {os.cpu_count()} CPUs"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--draws", type=int, default=3, help="starting draws of the in-process comparison")
    parser.add_argument("--skip-cli", action="store_true", help="only the in-process comparison")
    parser.add_argument("--skip-in-process", action="store_true", help="only the CLI run")
    args = parser.parse_args()
    home = use_temp_homes()
    os.environ["PAWLAB_HOME"] = str(home / "pawlab")  # never the user's: the dataset is made there
    cache = os.environ.get("PAWLAB_BENCH_EMBEDDINGS")
    if cache:
        shutil.copytree(cache, home / "pawlab" / "cache" / "embeddings")
    print(f"load before: {os.getloadavg()} on {os.cpu_count()} CPUs", flush=True)
    if not args.skip_in_process:
        in_process(args.draws)
    if not args.skip_cli:
        with_cli()


if __name__ == "__main__":
    main()
