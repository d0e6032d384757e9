"""The data doctor on the real photos: planted problems found, and how long it takes.

    python benchmarks/bench_doctor.py [--out benchmarks/results/doctor]

A copy of the shared cats and dogs gets the planted problems of
tests/_planted.py (20 photos moved to the other class, 15 re-encoded copies
in another split, 10 natural photos of other things). Then
``python -m core doctor --data COPY`` runs twice from launch, as a person
would start it: first with an empty PAWLAB_HOME (cold: TensorFlow start-up
and features of every photo included), then again (features cached). It
prints what was found against what was planted, the two wall times and the
load averages it measured, and runs the doctor once more on the unmodified
photos to list what it finds in the real dataset.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from _common import cats_and_dogs, use_temp_homes  # noqa: E402
from _planted import plant  # noqa: E402


def doctor(data: Path, env: dict) -> tuple[dict, float]:
    """``python -m core doctor`` from launch to its JSON; (report, wall seconds)."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "core", "doctor", "--data", str(data)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout), time.perf_counter() - start


def score(report: dict, planted) -> dict:
    top30 = [issue["file"] for issue in report["label_issues"][:30]]
    top15 = [outlier["file"] for outlier in report["outliers"][:15]]
    leaks = [{member["file"] for member in group["files"]} for group in report["leaks"]]
    copies = [set(pair) for pair in planted.copies]
    return {
        "moved_in_top_30_label_issues": f"{sum(f in planted.moved for f in top30)}/{len(planted.moved)}",
        "strangers_in_top_15_outliers": f"{sum(f in planted.strangers for f in top15)}/{len(planted.strangers)}",
        "copies_found_as_leaks": f"{sum(any(c <= leak for leak in leaks) for c in copies)}/{len(copies)}",
        "other_leaks": [sorted(leak) for leak in leaks if not any(c <= leak for c in copies)],
        "unplanted_above_a_missed_moved_photo": [
            issue["file"] for issue in report["label_issues"][:30] if issue["file"] not in planted.moved
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="folder for results.json (default: print only)")
    args = parser.parse_args()
    work = use_temp_homes()  # a fresh PAWLAB_HOME: the first doctor run is cold
    env = dict(os.environ, PYTHONPATH=str(REPO))
    planted = plant(cats_and_dogs(), work / "planted")
    results = {"cpu_count": os.cpu_count(), "load_before": os.getloadavg()}
    report, results["cold_seconds"] = doctor(planted.root, env)
    results["load_after_cold"] = os.getloadavg()
    report, results["cached_seconds"] = doctor(planted.root, env)
    results["load_after_cached"] = os.getloadavg()
    results["planted"] = score(report, planted)
    real, results["real_photos_cached_seconds"] = doctor(cats_and_dogs(), env)
    results["real_photos"] = {key: real[key][:10] for key in ("label_issues", "outliers", "leaks", "duplicates")}
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
