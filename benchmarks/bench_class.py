"""A class at once: one Streamlit server, one real Chromium, one session and then ten at the same moment.

    python benchmarks/bench_class.py [--sessions 10] [--rounds 2] [--quick] [--home DIR] [--profile DIR]
                                     [--trace DIR] [--out benchmarks/results/class]

Sets up a fresh PAWLAB_HOME (or reuses ``--home``, prepared by an earlier
call): the 3000 shared cats-and-dogs photos as a dataset under
PAWLAB_HOME/datasets (symlinks, never copies; its scan cached as any server
that has opened it once has it), and a ``mobilenet_v2`` run at 160 px trained
with ``python -m core train`` on 100 photos per class, the model a class
would classify with. Then, for each scenario, starts ``streamlit run app.py
--server.headless true`` on a free loopback port and drives Chromium
(one browser, one context per session, Playwright's async API):

- **classify**: open the Classify page, drop 3 photos (each session its own
  photos), time from the drop until the three answers and their photos show.
  One server for the scenario; a first session classifies once so the model
  is loaded, as on a server that has answered before.
- **browse**: open the Dataset page, time from clicking "Browse photos" until
  the 24 thumbnails are loaded (every img complete). Each measurement gets a
  fresh server whose first visitor opened the dataset's overview (the scan
  read, no thumbnail made yet), so every phase makes the page's thumbnails
  once: the first visitors after a restart, the slowest case.

Phases: ``--rounds`` of one session alone, then ``--rounds`` of
``--sessions`` sessions together: their tabs open first (asyncio.gather),
then, once Chromium has finished drawing them (below 0.15 of a core for a
second; printed as "tabs idle after s"), all act at the same moment, as a
class does when the teacher says "now"; only the actions are timed (ten
page loads in one Chromium on the server's two cores would be timed too
otherwise). For each phase it
prints the median seconds, the 1-minute load average before and after, and
the CPU seconds (user+sys, from /proc) the Streamlit server process and the
Chromium processes used during it. ``--profile DIR`` records the server with
py-spy during the first many-session phase of each scenario (raw collapsed
stacks); ``--trace DIR`` records Chrome's trace of the same phase and prints
how many frames each tab drew. Nothing else is claimed about the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from _common import REPO, cats_and_dogs, table, use_temp_homes

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
VIEWPORT = {"width": 1280, "height": 800}
DATASET_NAME = "cats_and_dogs_filtered"
TRAIN_PHOTOS_PER_CLASS = 100
TRAIN_EPOCHS = 2
PHOTOS_PER_DROP = 3
THUMBNAILS_PER_PAGE = 24  # pages/_dataset/views.py PHOTOS_PER_PAGE
TIMEOUT_MS = 180_000
# How often a tab checks whether the answers or thumbnails show. Playwright's default
# checks on every animation frame: in ten tabs that cost Chromium 0.45 of a core
# while they waited (a one-off probe, 2026-12-03), CPU the server and the other tabs did not get.
POLL_MS = 100
# Opened tabs are idle once Chromium uses less than this, averaged over QUIET_WINDOW_S.
QUIET_CORES = 0.15
QUIET_WINDOW_S = 1.0

APP_IDLE_JS = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    return app && app.dataset.testConnectionState === 'CONNECTED'
        && app.dataset.testScriptState === 'notRunning'
        && !document.querySelector('[data-testid="stStatusWidgetRunningIcon"]');
}"""
LOADED = "(imgs, n) => imgs.length >= n && imgs.every(i => i.complete && i.naturalWidth > 0)"
# The answer headings the Classify page writes (a class with its confidence, or an abstention).
ANSWERS_SHOWN_JS = f"""(n) => {{
    const answers = [...document.querySelectorAll('h3')]
        .filter(h => /^(.+ — \\d{{1,3}}\\.\\d%|Not sure|None of these)$/.test(h.innerText.trim()));
    const photos = [...document.querySelectorAll('[data-testid="stImage"] img')];
    return answers.length >= n && ({LOADED})(photos, n);
}}"""
# The Browse tab's thumbnails: in a container keyed "thumbnails" (keyed thumb_N, one per photo, before 2026-12-03).
THUMBNAILS_SHOWN_JS = f"""(n) => ({LOADED})([...document.querySelectorAll('[class*="st-key-thumb"] img')], n)"""


# --- Set-up: the dataset, its scan, a trained run ------------------------------------


def prepare_home(home: Path) -> Path:
    """PAWLAB_HOME with the dataset (scanned once) and a trained run; returns the dataset root."""
    os.environ["PAWLAB_HOME"] = str(home)
    root = home / "datasets" / DATASET_NAME
    if not (root / ".complete").is_file():
        link_photos(cats_and_dogs(), root)
        (root / ".complete").write_text("{}\n")
    from core.data.dataset import scan_dataset
    from core.data.workspace import remember_use

    scan_dataset(root)  # its disk cache: what a server that opened the dataset once has
    remember_use(root)  # the dataset a new session opens
    if not list((home / "runs").glob("*/model.keras")):
        train_run(home, root)
    return root


def link_photos(source: Path, target: Path, per_class: int | None = None) -> None:
    for split in ("train", "validation"):
        for folder in sorted((source / split).iterdir()):
            (target / split / folder.name).mkdir(parents=True, exist_ok=True)
            for photo in sorted(folder.iterdir())[:per_class]:
                (target / split / folder.name / photo.name).symlink_to(photo)


def train_run(home: Path, root: Path) -> None:
    subset = home.parent / "train-subset"
    shutil.rmtree(subset, ignore_errors=True)
    link_photos(root, subset, TRAIN_PHOTOS_PER_CLASS)
    command = [sys.executable, "-m", "core", "train", "--data", str(subset), "--arch", "mobilenet_v2"]
    command += ["--image-size", "160", "--epochs", str(TRAIN_EPOCHS)]
    print("training:", " ".join(command[1:]), flush=True)
    subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL)


def drop_photos(count: int) -> list[list[Path]]:
    """``count`` drops of PHOTOS_PER_DROP validation photos, no photo in two drops, cats and dogs mixed."""
    validation = cats_and_dogs() / "validation"
    photos = [p for pair in zip(*(sorted((validation / c).iterdir()) for c in ("cats", "dogs"))) for p in pair]
    return [photos[i * PHOTOS_PER_DROP : (i + 1) * PHOTOS_PER_DROP] for i in range(count)]


# --- The server and CPU seconds --------------------------------------------------------


@dataclass
class Server:
    url: str
    process: subprocess.Popen

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start_server(home: Path, log_dir: Path) -> Server:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true"]
    command += ["--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAWLAB_")}
    env.update(PAWLAB_HOME=str(home), TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    log = open(log_dir / f"streamlit-{port}.log", "wb")  # noqa: SIM115 -- the server's, for its lifetime
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(f"http://127.0.0.1:{port}", process)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"streamlit exited: see {log.name}")
        try:
            with urllib.request.urlopen(f"{server.url}/_stcore/health", timeout=2):
                return server
        except OSError:
            time.sleep(0.3)
    server.stop()
    sys.exit("streamlit did not become healthy in 120 s")


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int) -> tuple[int, str, float]:
    """(parent pid, command name, CPU seconds of it and its reaped children)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    name = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), name, sum(int(f) for f in fields[11:15]) / CLOCK_TICKS


def cpu_seconds(server_pid: int) -> tuple[float, float]:
    """CPU seconds so far of the server's process tree and of every Chromium process this script started."""
    stats = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):  # gone meanwhile
                stats[int(entry.name)] = _proc_stat(int(entry.name))

    def descends(pid: int, ancestor: int) -> bool:
        while pid > 1 and pid in stats:
            if pid == ancestor:
                return True
            pid = stats[pid][0]
        return False

    server = sum(cpu for pid, (_, _, cpu) in stats.items() if descends(pid, server_pid))
    chromium = sum(cpu for pid, (_, name, cpu) in stats.items() if "chrom" in name and descends(pid, os.getpid()))
    return server, chromium


# --- Sessions ----------------------------------------------------------------------------


async def open_page(browser, server: Server, url_path: str):
    """A new context's tab on the app's page ``url_path``, reached through the sidebar as a person does."""
    context = await browser.new_context(viewport=VIEWPORT)
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    await page.goto(server.url + "/")
    await wait_idle(page)
    await page.locator(f'[data-testid="stSidebarNavLink"][href$="/{url_path}"]').click()
    await wait_idle(page)
    return context, page


async def wait_idle(page) -> None:
    await page.wait_for_timeout(200)  # lets a just-triggered rerun begin
    await page.wait_for_function(APP_IDLE_JS, polling=POLL_MS, timeout=TIMEOUT_MS)


async def classify(page, photos: list[Path], shot: Path | None) -> float:
    """Drop ``photos`` on an open Classify page; seconds until their answers and photos show."""
    uploader = page.get_by_test_id("stFileUploader").filter(has_text="Drop photos here")
    started = time.perf_counter()
    await uploader.locator('input[type="file"]').set_input_files([str(p) for p in photos])
    await page.wait_for_function(ANSWERS_SHOWN_JS, arg=len(photos), polling=POLL_MS, timeout=TIMEOUT_MS)
    seconds = time.perf_counter() - started
    if shot:
        await page.screenshot(path=str(shot), full_page=True)
    return seconds


async def browse(page, shot: Path | None) -> float:
    """Click "Browse photos" on an open Dataset page; seconds until its thumbnails are loaded."""
    started = time.perf_counter()
    await page.get_by_role("tab", name="Browse photos").click()
    await page.wait_for_function(THUMBNAILS_SHOWN_JS, arg=THUMBNAILS_PER_PAGE, polling=POLL_MS, timeout=TIMEOUT_MS)
    seconds = time.perf_counter() - started
    if shot:
        await page.screenshot(path=str(shot), full_page=True)
    return seconds


async def chromium_quiet(server: Server, limit_s: float = 120.0) -> float:
    """Seconds until the opened tabs are done drawing: Chromium below QUIET_CORES.

    A page's script can have finished while its browser still draws it (ten
    Dataset tabs drew their Plotly charts for 20 s more): a class's tabs are
    drawn before the teacher says "now", so that work is not in the timed window.
    """
    started = time.monotonic()
    _, before = cpu_seconds(server.process.pid)
    while time.monotonic() - started < limit_s:
        await asyncio.sleep(QUIET_WINDOW_S)
        _, after = cpu_seconds(server.process.pid)
        if (after - before) / QUIET_WINDOW_S < QUIET_CORES:
            break
        before = after
    return time.monotonic() - started


async def warm_overview(browser, server: Server) -> None:
    """A first visitor opens the dataset (its scan read into the server), no thumbnails."""
    context, _ = await open_page(browser, server, "dataset")
    await context.close()


# --- Phases --------------------------------------------------------------------------------


@dataclass
class Phase:
    scenario: str
    sessions: int
    seconds: list[float] = field(default_factory=list)
    server_cpu_s: float = 0.0
    chromium_cpu_s: float = 0.0
    load_before: list[float] = field(default_factory=list)
    settle_s: list[float] = field(default_factory=list)
    load_after: list[float] = field(default_factory=list)

    def row(self) -> dict:
        return {
            "scenario": self.scenario,
            "sessions": self.sessions,
            "median s": statistics.median(self.seconds),
            "max s": max(self.seconds),
            "server CPU s": round(self.server_cpu_s, 1),
            "Chromium CPU s": round(self.chromium_cpu_s, 1),
            "tabs idle after s": "/".join(f"{s:.0f}" for s in self.settle_s),
            "load 1-min before/after": "/".join(f"{a:.2f}-{b:.2f}" for a, b in zip(self.load_before, self.load_after)),
        }


TRACE_CATEGORIES = ["toplevel", "devtools.timeline", "disabled-by-default-devtools.timeline", "cc", "viz"]


def frames_per_tab(trace: bytes) -> list[int]:
    """Frames each renderer (tab) drew during a Chrome trace: a tab that only waits draws none."""
    counts: dict[int, int] = {}
    for event in json.loads(trace)["traceEvents"]:
        if event.get("name") == "ProxyImpl::ScheduledActionDraw":
            counts[event["pid"]] = counts.get(event["pid"], 0) + 1
    return sorted(counts.values())


async def measured(
    phase: Phase, browser, server: Server, url_path: str, act, profile: Path | None = None, trace: Path | None = None
) -> None:
    """Open ``phase.sessions`` tabs on ``url_path``, then run ``act(index, page)`` in all of them at once;
    add the actions' seconds, and the CPU seconds and load while they ran, to ``phase``.
    ``trace``: a file for Chrome's trace of the actions (where Chromium's CPU goes; open it
    in chrome://tracing or Perfetto), and the frames each tab drew are printed.

    The tabs open first, as a class's do before the teacher says "now": the page loads
    are not in the timed window (on this machine they would be: the browser shares its
    two cores with the server).
    """
    opened = await asyncio.gather(*(open_page(browser, server, url_path) for _ in range(phase.sessions)))
    phase.settle_s.append(await chromium_quiet(server))
    spy = None
    if profile is not None:
        profile.parent.mkdir(parents=True, exist_ok=True)
        spy = subprocess.Popen(
            ["py-spy", "record", "-p", str(server.process.pid), "-r", "50", "--format", "raw", "-o", str(profile)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        await asyncio.sleep(1.0)  # attached before the sessions start
    try:
        phase.load_before.append(os.getloadavg()[0])
        if trace is not None:
            await browser.start_tracing(categories=TRACE_CATEGORIES)
        server_cpu, chromium_cpu = cpu_seconds(server.process.pid)
        seconds = await asyncio.gather(*(act(index, page) for index, (_, page) in enumerate(opened)))
        server_after, chromium_after = cpu_seconds(server.process.pid)
        if trace is not None:
            recorded = await browser.stop_tracing()
            trace.parent.mkdir(parents=True, exist_ok=True)
            trace.write_bytes(recorded)
            print(f"frames drawn per tab while acting: {frames_per_tab(recorded)}; trace in {trace}", flush=True)
        phase.load_after.append(os.getloadavg()[0])
    finally:
        for context, _ in opened:
            await context.close()
    phase.seconds += seconds
    phase.server_cpu_s += server_after - server_cpu
    phase.chromium_cpu_s += chromium_after - chromium_cpu
    print(f"{phase.scenario}, {phase.sessions} at once: " + ", ".join(f"{s:.1f}" for s in seconds) + " s", flush=True)
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)


async def classify_phases(browser, home: Path, args, log_dir: Path) -> list[Phase]:
    drops = drop_photos(1 + args.rounds * (1 + args.sessions))
    server = start_server(home, log_dir)
    try:
        # The model loaded once, as on a server that has answered before.
        await measured(Phase("warm-up", 1), browser, server, "classify", lambda i, page: classify(page, drops[0], None))
        one, many = Phase("classify", 1), Phase("classify", args.sessions)
        used = 1
        for phase in (one, many):
            for round_ in range(args.rounds):
                first_many = phase is many and round_ == 0
                profile = args.profile / "classify.txt" if args.profile and first_many else None
                trace = args.trace / "classify.json" if args.trace and first_many else None
                batch, used = drops[used : used + phase.sessions], used + phase.sessions
                name = f"classify-{phase.sessions}"

                async def act(index, page, batch=batch, name=name, round_=round_):
                    return await classify(page, batch[index], shot(args, name, round_, index))

                await measured(phase, browser, server, "classify", act, profile, trace)
        return [one, many]
    finally:
        server.stop()


async def browse_phases(browser, home: Path, args, log_dir: Path) -> list[Phase]:
    one, many = Phase("browse", 1), Phase("browse", args.sessions)
    for phase in (one, many):
        for round_ in range(args.rounds):
            server = start_server(home, log_dir)
            try:
                await warm_overview(browser, server)
                first_many = phase is many and round_ == 0
                profile = args.profile / "browse.txt" if args.profile and first_many else None
                trace = args.trace / "browse.json" if args.trace and first_many else None
                name = f"browse-{phase.sessions}"

                async def act(index, page, name=name, round_=round_):
                    return await browse(page, shot(args, name, round_, index))

                await measured(phase, browser, server, "dataset", act, profile, trace)
            finally:
                server.stop()
    return [one, many]


def shot(args, name: str, round_: int, index: int = 0) -> Path | None:
    """A full-page screenshot of the first session of each phase's first round, to look at
    (outside the repo: they show the dataset's photos)."""
    return args.screenshots / f"{name}.png" if round_ == 0 and index == 0 else None


async def run_all(home: Path, args, log_dir: Path) -> list[Phase]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        phases = []
        if "classify" in args.scenarios:
            phases += await classify_phases(browser, home, args, log_dir)
        if "browse" in args.scenarios:
            phases += await browse_phases(browser, home, args, log_dir)
        await browser.close()
        return phases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=10, help="sessions at once (default: 10)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each phase (default: 2)")
    parser.add_argument("--quick", action="store_true", help="one round of each phase")
    parser.add_argument("--scenarios", default="classify,browse", help="comma-separated: classify, browse")
    parser.add_argument("--home", type=Path, help="a PAWLAB_HOME to prepare, or reuse when prepared before")
    parser.add_argument("--profile", type=Path, help="folder for py-spy profiles of the server")
    parser.add_argument(
        "--trace", type=Path, help="folder for Chrome traces of each scenario's first many-session phase"
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "class")
    args = parser.parse_args()
    args.rounds = 1 if args.quick else args.rounds
    args.scenarios = set(args.scenarios.split(","))
    args.out.mkdir(parents=True, exist_ok=True)

    temp = use_temp_homes()  # KERAS_HOME with the shared weights, for training and the server
    home = (args.home or temp / "pawlab").resolve()
    args.screenshots = temp / "screenshots"
    args.screenshots.mkdir()
    started = time.time()
    load_at_start = os.getloadavg()
    prepare_home(home)
    print(f"home {home}; load {'/'.join(f'{x:.2f}' for x in os.getloadavg())}; {os.cpu_count()} CPUs", flush=True)
    phases = asyncio.run(run_all(home, args, temp))

    columns = ["scenario", "sessions", "median s", "max s", "server CPU s", "Chromium CPU s", "tabs idle after s"]
    columns += ["load 1-min before/after"]
    print(table([p.row() for p in phases], columns))
    for scenario in sorted({p.scenario for p in phases}):
        one, many = (p for p in phases if p.scenario == scenario)
        ratio = statistics.median(many.seconds) / statistics.median(one.seconds)
        print(f"{scenario}: {many.sessions} at once take {ratio:.1f}x one session's median")
    summary = {
        "command": " ".join(sys.argv),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
        "cpu_count": os.cpu_count(),
        "load_at_start": load_at_start,
        "load_at_end": os.getloadavg(),
        "phases": [asdict(p) for p in phases],
    }
    (args.out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"load at start {'/'.join(f'{x:.2f}' for x in load_at_start)}, at end "
        f"{'/'.join(f'{x:.2f}' for x in os.getloadavg())}; {os.cpu_count()} CPUs; results in {args.out}, "
        f"screenshots in {args.screenshots}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
