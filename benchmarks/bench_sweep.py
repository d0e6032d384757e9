"""A sweep of the transfer head's knobs on the real photos, beside one run of the recipe.

    python benchmarks/bench_sweep.py [--arch mobilenet_v2] [--trials 20] [--out benchmarks/results/sweep]

Both start from launch with a fresh PAWLAB_HOME, as a person would type them:

1. ``python -m core train --arch ARCH`` with the recipe's knobs (cold: the
   frozen base's features of every photo are computed first);
2. ``python -m core sweep --arch ARCH --trials N``: an embedded Ray on this
   machine (loopback only), one feature pass, then N trials sampling the
   head's learning rate, dropout and hidden units, ASHA stopping the worst.

It prints each one's wall time, the ratio, the best validation and the test
accuracy of the recipe's run and of the sweep's best trial (chosen on
validation; test is reported once, for it), every trial, and the 1/5/15-minute
load averages it measured before, during (every 5 s) and after. Nothing else
about the machine is claimed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from _common import cats_and_dogs, table, use_temp_homes  # noqa: E402


def timed(command: list[str], env: dict) -> tuple[subprocess.CompletedProcess, float, list[float]]:
    """Run ``command`` from launch to exit; (result, wall seconds, 1-min load every 5 s)."""
    loads, done = [], threading.Event()

    def sample():
        while not done.wait(5.0):
            loads.append(os.getloadavg()[0])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return result, wall, loads


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="mobilenet_v2")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--out", type=Path, help="folder for results.json (default: print only)")
    args = parser.parse_args()
    use_temp_homes()
    from core.runs.store import read_evaluation, summarize
    from core.runs.sweep import read_sweep_result

    data, env = cats_and_dogs(), dict(os.environ)
    python = [sys.executable, "-m", "core"]
    load_before = os.getloadavg()
    print(f"os.cpu_count(): {os.cpu_count()}; load average (1/5/15 min) before: {load_before}", flush=True)

    run, run_wall, run_loads = timed(python + ["train", "--data", str(data), "--arch", args.arch], env)
    run_dir = Path(run.stdout.strip().splitlines()[-1])
    recipe = summarize(run_dir)
    print(
        f"recipe run: {run_wall:.1f} s, val {recipe.best_val_accuracy:.4f}, test {recipe.test_accuracy:.4f}", flush=True
    )

    # A second fresh home, so the sweep's feature pass is cold too.
    env["PAWLAB_HOME"] = str(Path(env["PAWLAB_HOME"]).with_name("pawlab-sweep"))
    sweep, sweep_wall, sweep_loads = timed(
        python + ["sweep", "--data", str(data), "--arch", args.arch, "--trials", str(args.trials)], env
    )
    best = json.loads(sweep.stdout.strip().splitlines()[-1])
    sweep_dir = Path(env["PAWLAB_HOME"]) / "runs"
    result = read_sweep_result(next(p for p in sweep_dir.iterdir() if (p / "sweep.json").exists()))
    best_run = sweep_dir / best["run"]
    best_summary, best_eval = summarize(best_run), read_evaluation(best_run)
    load_after = os.getloadavg()

    rows = [
        {
            "what": f"one {args.arch} run, recipe knobs",
            "wall s": run_wall,
            "best val": recipe.best_val_accuracy,
            "test": recipe.test_accuracy,
        },
        {
            "what": f"sweep, {len(result.trials)} trials, embedded Ray",
            "wall s": sweep_wall,
            "best val": best_summary.best_val_accuracy,
            "test": best_eval.accuracy if best_eval else None,
        },
    ]
    print(table(rows, ["what", "wall s", "best val", "test"]))
    print(
        f"sweep / one run wall time: {sweep_wall / run_wall:.2f}x; the sweep's own count "
        f"(Ray start to result): {result.seconds:.1f} s"
    )
    states = {}
    for trial in result.trials:
        states[trial.state] = states.get(trial.state, 0) + 1
    print(f"trials: {states}; best {best['run']} knobs {next(t.knobs for t in result.trials if t.run == best['run'])}")
    print(
        table(
            [
                {
                    "run": t.run,
                    **{k: (round(v, 5) if isinstance(v, float) else v) for k, v in t.knobs.items()},
                    "state": t.state,
                    "epochs": t.epochs,
                    "val": t.best_val_accuracy or "",
                    "test": t.test_accuracy or "",
                }
                for t in result.trials
            ],
            ["run", *result.trials[0].knobs, "state", "epochs", "val", "test"],
        )
    )
    print(
        f"load average 1-min during the run {min(run_loads, default=0):.2f}-{max(run_loads, default=0):.2f}, "
        f"during the sweep {min(sweep_loads, default=0):.2f}-{max(sweep_loads, default=0):.2f}; "
        f"(1/5/15 min) before {load_before}, after {load_after}"
    )
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(
            json.dumps(
                {
                    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    "cpu_count": os.cpu_count(),
                    "rows": rows,
                    "ratio": sweep_wall / run_wall,
                    "trials": [vars(t) for t in result.trials],
                    "best": best["run"],
                    "load": {"before": load_before, "after": load_after, "run": run_loads, "sweep": sweep_loads},
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
