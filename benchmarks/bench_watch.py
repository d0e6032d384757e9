"""Watching costs: the CPU a Train page tab costs while a run trains.

    python benchmarks/bench_watch.py [--quick] [--photos 100] [--epochs 10] [--image-size 64]
                                     [--order closed,watched] [--screenshots DIR]
                                     [--py-spy FILE] [--out benchmarks/results/watch]

Makes a fresh PAWLAB_HOME holding a small dataset (a symlinked subset of
../shared/data/cats_and_dogs: ``--photos`` per class from train/ and half as
many from validation/), starts ``streamlit run app.py --server.headless true``
on a free loopback port, and trains the same from-scratch ``cnn`` run
(``python -m core train``, same seed and photos) once per case:

* ``closed``: no browser open;
* ``watched``: one headless Chromium tab (Playwright, /usr/bin/chromium) open
  on the Train page, watching the run from before it starts until it ends.

Over each run (from launching the command to its exit) it reads the CPU
seconds (user + system, from /proc) of the Streamlit server process and of
every Chromium process this script started, and prints them per wall second
("cores") side by side, with the run's own wall time. The watching cost is
the server's cores watched minus closed, plus Chromium's. For the watched
case it also prints what the page received over its websocket (messages and
kilobytes per second), how often its progress bar changed, and how long after
an epoch's line was written the page's chart showed that epoch's point (from a
MutationObserver in the page). The machine may be shared: compare the cases
of one invocation, and read CPU seconds rather than wall times.

``--py-spy FILE`` records the server (and its children) with py-spy over the
watched run: collapsed stacks (``.txt``) or a flame graph (``.svg``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from _common import REPO, cats_and_dogs, table, use_temp_homes

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
TICKS = os.sysconf("SC_CLK_TCK")
SAMPLE_SECONDS = 0.5
CASES = ("closed", "watched")

# Installed in the page: when the curves get a new point, note the time (ms since the epoch) under
# "run id/points" (the panel's caption names the run: an earlier run's chart must not count), so its
# lag behind the epoch's line in metrics.jsonl can be read at the end; count progress bar changes.
OBSERVER_JS = """() => {
    window.__watch = {points: {}, progress: 0, lastProgress: ''};
    const note = () => {
        const panel = document.querySelector('.st-key-train_live');
        const run = panel && panel.innerText.match(/Run (\\S+) ·/);
        const plot = document.querySelector('.st-key-train_live .js-plotly-plot');
        const points = plot && plot.data && plot.data[0] && plot.data[0].x ? plot.data[0].x.length : 0;
        const seen = run && points ? run[1] + '/' + points : null;
        if (seen && !(seen in window.__watch.points)) window.__watch.points[seen] = Date.now();
        const bar = document.querySelector('.st-key-train_live [data-testid="stProgress"]');
        const text = bar ? bar.innerText : '';
        if (text !== window.__watch.lastProgress) {
            window.__watch.lastProgress = text;
            window.__watch.progress += 1;
        }
    };
    new MutationObserver(note).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


# --- CPU seconds from /proc ----------------------------------------------------------


def _stat(pid: int) -> tuple[int, str, float] | None:
    """(parent pid, command, CPU seconds of the process and its reaped children)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = text[text.index("(") + 1 : text.rindex(")")]
    fields_ = text[text.rindex(")") + 2 :].split()
    # fields_[0] is field 3 (state): utime is field 14, stime 15, cutime 16, cstime 17.
    return int(fields_[1]), name, sum(int(v) for v in fields_[11:15]) / TICKS


def _processes() -> dict[int, tuple[int, str, float]]:
    found = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            found[int(entry.name)] = stat
    return found


def descendants(root: int, table_: dict[int, tuple[int, str, float]]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (parent, _, _) in table_.items():
        children.setdefault(parent, []).append(pid)
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


@dataclass
class CpuMeter:
    """CPU seconds of a group of processes over a window; a process that ends inside
    the window counts with the last value seen (sampled every SAMPLE_SECONDS)."""

    pick: object  # (process table) -> pids in the group
    start: dict[int, float] = field(default_factory=dict)
    last: dict[int, float] = field(default_factory=dict)

    def sample(self, table_: dict[int, tuple[int, str, float]], *, first: bool = False) -> None:
        for pid in self.pick(table_):
            seconds = table_[pid][2]
            if first:
                self.start[pid] = seconds
            self.last[pid] = seconds

    @property
    def seconds(self) -> float:
        return sum(value - self.start.get(pid, 0.0) for pid, value in self.last.items())


# --- the app and the dataset ---------------------------------------------------------


def make_dataset(home: Path, photos: int) -> Path:
    root = home / "datasets" / "watch"
    for split, count in (("train", photos), ("validation", max(2, photos // 2))):
        for folder in sorted((cats_and_dogs() / split).iterdir()):
            target = root / split / folder.name
            target.mkdir(parents=True)
            for photo in sorted(folder.iterdir())[:count]:
                (target / photo.name).symlink_to(photo)
    from core.data.acquire import COMPLETE_MARKER
    from core.data.dataset import scan_dataset
    from core.data.workspace import remember_use

    (root / COMPLETE_MARKER).write_text("{}\n")  # a finished dataset, which sessions may open
    scan_dataset(root)  # cached in PAWLAB_HOME: neither the page nor the run decodes every photo again
    remember_use(root)  # a new browser session opens it
    return root


def precount_parameters(image_sizes: set[int]) -> None:
    """The Train page counts the models' parameters (a TensorFlow child process of the server,
    10-20 s of CPU) for the form's size and, once the run ends, for the run's size: a one-off
    per PAWLAB_HOME, not watching, so it is done here, before the server starts."""
    from core.models import param_counts
    from core.models.zoo import ARCHITECTURES

    for size in sorted(image_sizes):
        param_counts.count_in_subprocess(list(ARCHITECTURES), 2, size)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(home: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true"]
    command += ["--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log, "wb") as out:
        server = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    import urllib.request

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                return server, url
        except OSError:
            if server.poll() is not None:
                sys.exit(f"streamlit exited:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
    sys.exit("streamlit did not become healthy in 120 s")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# --- one case ---------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    run_seconds: float = 0.0
    server_cpu: float = 0.0
    chromium_cpu: float = 0.0
    ws_messages: int = 0
    ws_bytes: int = 0
    chart_lags: list[float] = field(default_factory=list)  # s from an epoch's line to the chart's new point
    progress_updates: int = 0  # changes of the progress bar's text the page showed
    load_before: str = ""
    load_after: str = ""

    def row(self) -> dict:
        wall = self.run_seconds or 1.0
        row = {
            "case": self.name,
            "run wall s": self.run_seconds,
            "server CPU s": self.server_cpu,
            "server cores": self.server_cpu / wall,
            "Chromium CPU s": self.chromium_cpu,
            "Chromium cores": self.chromium_cpu / wall,
            "load before/after (1 min)": f"{self.load_before.split('/')[0]}/{self.load_after.split('/')[0]}",
        }
        if self.name == "watched":
            row["ws msgs/s"] = self.ws_messages / wall
            row["ws KB/s"] = self.ws_bytes / 1000 / wall
            row["chart lag s (median/max)"] = _lags(self.chart_lags)
            row["progress updates/s"] = self.progress_updates / wall
        return row


def _lags(lags: list[float]) -> str:
    return f"{statistics.median(lags):.2f}/{max(lags):.2f}" if lags else "–"


def train_command(data: Path, args) -> list[str]:
    return [sys.executable, "-m", "core", "train", "--data", str(data), "--arch", "cnn"] + [
        *("--epochs", str(args.epochs), "--image-size", str(args.image_size), "--patience", "0")
    ]


def run_case(name: str, data: Path, server: subprocess.Popen, page, args, shots: Path | None) -> Case:
    case = Case(name, load_before=load())
    me = os.getpid()
    server_meter = CpuMeter(lambda t: {server.pid} | descendants(server.pid, t))
    chromium_meter = CpuMeter(lambda t: {p for p in descendants(me, t) if "chrom" in t[p][1].lower()})
    if page is not None:
        page.evaluate(OBSERVER_JS)
    table_ = _processes()
    server_meter.sample(table_, first=True)
    chromium_meter.sample(table_, first=True)
    profiler = _start_py_spy(server.pid, args.py_spy) if page is not None and args.py_spy else None
    started = time.monotonic()
    with open(args.out / f"train-{name}.log", "wb") as log:
        run = subprocess.Popen(train_command(data, args), cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    shot_at = {2, args.epochs - 1}
    while run.poll() is None:
        if page is not None:
            page.wait_for_timeout(SAMPLE_SECONDS * 1000)  # lets Playwright deliver the websocket events
            epochs = len(json.loads(page.evaluate("() => JSON.stringify(window.__watch.points)")))  # any run's
            if shots and epochs in shot_at:
                shot_at.discard(epochs)
                page.screenshot(path=str(shots / f"watch-epoch{epochs}.png"), full_page=True)
        else:
            time.sleep(SAMPLE_SECONDS)
        table_ = _processes()
        server_meter.sample(table_)
        chromium_meter.sample(table_)
    case.run_seconds = time.monotonic() - started
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        profiler.wait(timeout=60)
    table_ = _processes()
    server_meter.sample(table_)
    chromium_meter.sample(table_)
    case.server_cpu, case.chromium_cpu = server_meter.seconds, chromium_meter.seconds
    case.load_after = load()
    if run.returncode:
        sys.exit(f"the run failed; see {args.out / f'train-{name}.log'}")
    if page is not None:
        _read_lags(case, page, Path(args.out / f"train-{name}.log").read_text().strip().splitlines()[-1])
        if shots:
            page.wait_for_timeout(3000)  # the finished run's results
            page.screenshot(path=str(shots / "watch-finished.png"), full_page=True)
    return case


def _start_py_spy(pid: int, output: Path) -> subprocess.Popen:
    form = "flamegraph" if output.suffix == ".svg" else "raw"
    command = ["py-spy", "record", "--pid", str(pid), "--subprocesses", "--rate", "50"]
    return subprocess.Popen(command + ["--format", form, "--output", str(output)], stdout=subprocess.DEVNULL)


def _read_lags(case: Case, page, run_dir: str) -> None:
    from core.runs.store import read_metrics

    seen = json.loads(page.evaluate("() => JSON.stringify(window.__watch)"))
    case.progress_updates = seen["progress"]
    for record in read_metrics(run_dir):
        shown_at = seen["points"].get(f"{Path(run_dir).name}/{record['epoch']}")
        if shown_at is not None:
            case.chart_lags.append(shown_at / 1000 - record["time"])


def open_train_page(browser, url: str, case: Case):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()

    def count(frame):
        case.ws_messages += 1
        case.ws_bytes += len(frame) if isinstance(frame, (bytes, str)) else 0

    page.on("websocket", lambda ws: ws.on("framereceived", count))
    page.goto(url + "/", timeout=120_000)
    page.wait_for_selector('[data-testid="stSidebarNavLink"][href$="/train"]', timeout=120_000).click()
    page.wait_for_selector(".st-key-train_live", timeout=120_000)
    # The counts were made before the server started (precount_parameters): the caption shows
    # one at once. ("Counting its parameters for ..." does not match: a digit comes first.)
    page.wait_for_selector("text=/[0-9] parameters for/", timeout=300_000)
    page.wait_for_timeout(3000)
    return context, page


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 epochs on 60 photos per class")
    parser.add_argument("--photos", type=int, default=100, help="training photos per class")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--order", default="closed,watched", help="the cases, in the order they run")
    parser.add_argument("--screenshots", type=Path, help="a folder for screenshots of the watched page")
    parser.add_argument("--py-spy", type=Path, help="record the server with py-spy over the watched run (.txt or .svg)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "watch")
    args = parser.parse_args()
    if args.quick:
        args.photos, args.epochs = 60, 4
    order = [name.strip() for name in args.order.split(",")]
    if any(name not in CASES for name in order):
        sys.exit(f"--order: cases are {', '.join(CASES)}")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.screenshots:
        args.screenshots.mkdir(parents=True, exist_ok=True)
    home = use_temp_homes()
    data = make_dataset(Path(os.environ["PAWLAB_HOME"]), args.photos)
    from core.runs.recipes import recipe_for

    precount_parameters({recipe_for("cnn").image_size, args.image_size})  # the form's model is cnn
    print(f"home {home}; load {load()}; os.cpu_count() {os.cpu_count()}", flush=True)
    server, url = start_server(Path(os.environ["PAWLAB_HOME"]), args.out / "streamlit.log")
    cases = []
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = None
            for name in order:
                context = page = None
                case = Case(name)
                if name == "watched":
                    browser = browser or playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                    context, page = open_train_page(browser, url, case)
                    case.ws_messages = case.ws_bytes = 0  # the run's window only
                measured = run_case(name, data, server, page, args, args.screenshots)
                measured.ws_messages, measured.ws_bytes = case.ws_messages, case.ws_bytes
                cases.append(measured)
                print(json.dumps(measured.row()), flush=True)
                if context is not None:
                    context.close()
            if browser is not None:
                browser.close()
    finally:
        stop(server)
    report(cases, args)


def report(cases: list[Case], args) -> None:
    rows = [case.row() for case in cases]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = [table(rows, columns)]
    by_name = {case.name: case for case in cases}
    if {"closed", "watched"} <= by_name.keys():
        closed, watched = by_name["closed"], by_name["watched"]
        server_extra = watched.server_cpu / watched.run_seconds - closed.server_cpu / closed.run_seconds
        cost = server_extra + watched.chromium_cpu / watched.run_seconds
        lines.append(
            f"watching costs {cost:.3f} cores (server {server_extra:+.3f}, Chromium "
            f"{watched.chromium_cpu / watched.run_seconds:.3f}); the run took {watched.run_seconds:.1f} s "
            f"watched against {closed.run_seconds:.1f} s closed ({watched.run_seconds / closed.run_seconds:.2f}x)"
        )
    lines.append(f"load at the end {load()}; os.cpu_count() {os.cpu_count()}")
    lines.append("command: python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]))
    text = "\n".join(lines)
    print(text)
    (args.out / "output.txt").write_text(text + "\n")
    record = {"cases": [asdict(case) for case in cases], "rows": rows, "argv": sys.argv[1:]}
    (args.out / "results.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
