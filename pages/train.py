"""Train: start runs, watch them learn, compare them, inspect the results.

Training never happens in this script. Start only writes a run folder and
asks core.runs.jobs to start a worker process; everything shown here is read back
from the run folders (core.runs.store), so a browser reload, a second tab or a
server restart shows the same runs, at the same point. TensorFlow is never
imported here, except on demand for a Keras layer summary.

    form ──submit──> core.runs.jobs.submit ──> worker process writes PAWLAB_HOME/runs/<id>/
    live panel (st.fragment, polls the files) <── status.json, metrics.jsonl
    runs table, results, tutorial comparison  <── + evaluation.json, model.keras
"""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path

import streamlit as st

from core.models import param_counts
from core.runs import jobs, tutorial
from core.data.augment import list_configs
from core.config import get_settings
from core.data.dataset import DatasetError, scan_dataset
from core.data.images import ImageError
from core.models.zoo import ARCHITECTURES
from core.runs.store import (
    ACTIVE_STATES, DEFAULT_FINE_TUNE_LEARNING_RATE, DEFAULT_LEARNING_RATE, EVALUATION_FILE,
    HEARTBEAT_SECONDS, MODEL_FILE, RunSummary, delete_run, list_runs, make_config, read_config,
    read_json, read_metrics, read_status,
)
from core.data.splits import make_splits
from core.data.thumbnails import thumbnail_jpeg
from core.models.weights import IMAGENET_SIZES, imagenet_weights_filename, keras_models_dir
from core.data.workspace import last_dataset
from pages import _train_views as views
from pages._shell import ensure_app_shell

IMAGE_SIZES = (32, 64, 96, 128, 160, 192, 224)  # 32 and 64 px: quick tries
BATCH_SIZES = (8, 16, 32, 64, 128)
LEARNING_RATES = tuple(sorted({1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, DEFAULT_LEARNING_RATE}))
# The live panel re-reads the run files this often (seconds): every second
# while something trains, slowly otherwise, to notice runs started elsewhere.
ACTIVE_REFRESH, IDLE_REFRESH = 1.0, 10.0
MISCLASSIFIED_SHOWN = 24


# --- cached resources: once per server process -------------------------------------

@st.cache_resource(show_spinner=False)
def recover_runs_at_start(runs_dir: str) -> list[Path]:
    """Runs whose worker died while no server was up are marked interrupted, and
    queued runs get started, once per server process (and runs folder)."""
    interrupted = jobs.recover(runs_dir)
    jobs.dispatch(runs_dir)
    return interrupted


@st.cache_resource(show_spinner=False)
def _param_counter() -> ThreadPoolExecutor:
    # Counting builds the models, which needs TensorFlow: a child process does
    # it (core.models.param_counts) while this thread only waits, so the page never does.
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="count-params")


@st.cache_resource(show_spinner=False, max_entries=64)
def _param_counts_future(num_classes: int, image_size: int) -> Future:
    return _param_counter().submit(param_counts.count_in_subprocess, list(ARCHITECTURES),
                                   num_classes, image_size)


def param_count(arch: str, num_classes: int, image_size: int) -> tuple[bool, int | None]:
    """(done, count): count is None while being computed, or if counting failed."""
    known = param_counts.cached_counts([arch], num_classes, image_size)
    if arch in known:
        return True, known[arch]
    future = _param_counts_future(num_classes, image_size)
    if not future.done():
        return False, None
    return True, None if future.exception() is not None else future.result()[arch]


@st.cache_resource(show_spinner="Loading the model…", max_entries=2)
def keras_summary(model_file: str, modified: float) -> str:
    """Keras' layer-by-layer summary of a saved model (imports TensorFlow)."""
    from core.serving.inference import load_run_model

    model = load_run_model(Path(model_file).parent)
    lines: list[str] = []
    model.summary(print_fn=lambda line, **_: lines.append(line), line_length=100)
    return "\n".join(lines)


@st.cache_data(show_spinner="Checking the dataset…", ttl=60)
def dataset_facts(root: str) -> dict:
    """Classes and split sizes of the chosen dataset (scan results are cached on disk)."""
    info = scan_dataset(root)
    return {"classes": info.classes, "counts": make_splits(info).counts()}


@st.cache_data(show_spinner=False, max_entries=256)
def figure(builder: str, *args) -> dict:
    """``views.<builder>(*args)`` as a Plotly dict. Building a figure takes a tenth
    of a second or more and the live panel redraws every second, mostly with
    the same epochs: same data, same figure, built once."""
    return getattr(views, builder)(*args).to_dict()


@st.cache_data(show_spinner=False, max_entries=512)
def thumbnail(path: str, modified: float) -> bytes:
    return thumbnail_jpeg(path, size=160)


# --- which run the page is about -----------------------------------------------------

def runs_table_key(summaries: list[RunSummary]) -> str:
    # A new or deleted run changes the key, so a row selection never points
    # at a different run than the one that was clicked.
    digest = hashlib.sha1("\n".join(s.id for s in summaries).encode()).hexdigest()[:12]
    return f"runs_table_{digest}"


def selected_runs(summaries: list[RunSummary]) -> list[RunSummary]:
    """Rows selected in the runs table (its state from the last interaction)."""
    state = st.session_state.get(runs_table_key(summaries))
    rows = state["selection"]["rows"] if state else []
    return [summaries[row] for row in rows if row < len(summaries)]


def focused_run(summaries: list[RunSummary]) -> RunSummary | None:
    """The run the live panel and the results show, derived from disk:
    the one selected in the table, else the newest running one, else the
    newest queued one, else the newest run."""
    selected = selected_runs(summaries)
    if len(selected) == 1:
        return selected[0]
    for states in (("running",), ("queued",)):
        for summary in summaries:  # newest first
            if summary.state in states:
                return summary
    return summaries[0] if summaries else None


def runs_signature(summaries: list[RunSummary]) -> tuple:
    return tuple((s.id, s.state) for s in summaries)


# --- the form -------------------------------------------------------------------------

def model_caption(arch: str, num_classes: int, image_size: int, polling: bool) -> None:
    spec = ARCHITECTURES[arch]
    counted, count = param_count(arch, num_classes, image_size)
    if polling and counted:
        st.rerun(scope="app")  # the full run sees the count is there and stops polling
    where = f"for {num_classes} classes at {image_size} px"
    if not counted:
        size = f" Counting its parameters {where}…"
    else:
        size = f" {count:,} parameters {where}." if count else ""
    note = f" The tutorial reported {spec.tutorial_val_accuracy:.0%} validation accuracy." \
        if spec.tutorial_val_accuracy else ""
    st.caption(f"{spec.description}{size}{note}")


def new_run_form(data_root: Path, classes: list[str]) -> None:
    num_classes = len(classes)
    arch = st.selectbox("Model", list(ARCHITECTURES), key="train_arch",
                        format_func=lambda name: ARCHITECTURES[name].title)
    image_size = st.selectbox("Image size", IMAGE_SIZES, index=IMAGE_SIZES.index(160), key="train_image_size",
                              format_func=lambda s: f"{s} × {s} px",
                              help="Photos are resized to this square. 32 or 64 px train in seconds, "
                                   "160 px is the tutorial's size.")
    spec = ARCHITECTURES[arch]
    # Polls until the background count is ready, then shows it.
    counted, _ = param_count(arch, num_classes, image_size)
    st.fragment(model_caption, run_every=None if counted else 1.0)(arch, num_classes, image_size,
                                                                   polling=not counted)
    if spec.family == "transfer":
        weights = keras_models_dir() / imagenet_weights_filename(image_size)
        if not weights.is_file():
            st.caption(f"ImageNet weights for {image_size} px are not on this machine yet; the run "
                       f"downloads `{weights.name}` first. Keras publishes "
                       f"{', '.join(map(str, IMAGENET_SIZES))} px.")

    augmentations = list_configs()
    with st.form("new_run", border=False):
        left, right = st.columns(2)
        epochs = left.number_input("Epochs", min_value=1, max_value=500, value=10, key="train_epochs")
        batch_size = right.selectbox("Batch size", BATCH_SIZES, index=BATCH_SIZES.index(32),
                                     key="train_batch_size")
        # Keys per model: each model keeps its own default (and what was typed for it).
        learning_rate = st.select_slider(
            "Learning rate (Adam)", LEARNING_RATES, value=DEFAULT_LEARNING_RATE, format_func=lambda r: f"{r:g}",
            key=f"train_learning_rate_{arch}",
        )
        augment_names = list(augmentations)
        augment = st.selectbox(
            "Augmentation", augment_names, index=augment_names.index(spec.default_augment),
            format_func=lambda name: f"{name}: {augmentations[name].describe()}",
            key=f"train_augment_{arch}",
            help="Random changes to the training photos each epoch. Preview them on the Dataset page.",
        )
        left, right = st.columns(2)
        patience = left.number_input(
            "Early stopping patience", min_value=0, max_value=100, value=0, key="train_patience",
            help="Stop after this many epochs without a better validation accuracy (0 = never). "
                 "Either way the best epoch's model is the one kept.",
        )
        subset = right.number_input(
            "Training photos per class", min_value=0, value=0, step=10, key="train_subset",
            help="0 = all. A few dozen make a quick trial run.",
        )
        fine_tune_epochs = 0
        if spec.fine_tune:
            fine_tune_epochs = st.number_input(
                "Fine-tuning epochs", min_value=0, max_value=500, value=10, key=f"train_fine_tune_{arch}",
                help=f"After the head is trained, the top of the ImageNet base is unfrozen and trained "
                     f"with a {DEFAULT_FINE_TUNE_LEARNING_RATE:g} learning rate.",
            )
        too_few_classes = num_classes < 2
        if too_few_classes:
            st.warning("Training needs at least two classes (two class folders) in the dataset.")
        start = st.form_submit_button("Start training", type="primary", icon="▶️", disabled=too_few_classes)

    if start:
        try:
            config = make_config(
                data_root, arch, int(epochs), batch_size=int(batch_size), image_size=int(image_size),
                learning_rate=float(learning_rate), fine_tune_epochs=int(fine_tune_epochs),
                patience=int(patience), augment=augment, subset=int(subset),
            )
        except ValueError as error:
            st.error(str(error))
            return
        run_dir = jobs.submit(config)
        st.toast(f"Run {run_dir.name} {read_status(run_dir)['state']}.", icon="🚀")


def tutorial_tab(data_root: Path, summaries: list[RunSummary]) -> None:
    st.markdown(
        f"The tutorial trains four models on {tutorial.IMAGE_SIZE} px photos, batch "
        f"{tutorial.BATCH_SIZE}, {tutorial.EPOCHS} epochs each. One button queues all four on "
        "this dataset with the same settings; they train one after another in the background "
        "(you can close the browser), and a comparison appears below as they finish."
    )
    presets = list_configs()
    st.markdown("\n".join(
        f"- **{ARCHITECTURES[m.arch].title}**: "
        f"{presets[ARCHITECTURES[m.arch].default_augment].describe()}; reported {m.reported:.0%}"
        for m in tutorial.TUTORIAL_MODELS
    ))
    found = tutorial.find_tutorial_runs(data_root)
    by_id = {s.id: s for s in summaries}
    busy = [arch for arch, run_dir in found.items()
            if by_id.get(run_dir.name) and by_id[run_dir.name].state in ACTIVE_STATES]
    if busy:
        st.info(f"The tutorial's runs are under way ({len(busy)} still queued or running).")
    if st.button("Reproduce the tutorial", icon="🧪", disabled=bool(busy), key="train_tutorial"):
        for config in tutorial.tutorial_configs(data_root):
            jobs.submit(config)
        st.toast("Queued the tutorial's four models.", icon="🧪")
        st.rerun()
    st.caption(tutorial.LEAK_NOTE)


# --- live panel ---------------------------------------------------------------------------

def live_panel() -> None:
    summaries = list_runs()
    if runs_signature(summaries) != st.session_state.get("train_signature"):
        # A run started, finished or appeared: the table and results need the whole page.
        st.rerun(scope="app")
    run = focused_run(summaries)
    if run is None:
        st.info("No training runs yet. Choose a model and press **Start training**.")
        return
    status = read_status(run.path)
    metrics = read_metrics(run.path)
    state = status["state"]
    if state == "running" and time.time() - (status["heartbeat"] or 0) > 5 * HEARTBEAT_SECONDS:
        jobs.recover()  # its process may be gone: mark it interrupted instead of "running" forever

    epochs_total = status["epochs_total"] or run.epochs_total
    latest = metrics[-1] if metrics else {}
    speed = latest.get("images_per_second")
    st.subheader(f"{views.arch_title(run.arch)}")
    st.caption(f"Run `{run.id}` · {run.image_size} px · {views.STATE_LABELS.get(state, state)}"
               + (f" · {speed:,.0f} images/s" if speed else ""))
    columns = st.columns(3)
    columns[0].metric("Epoch", f"{status['epoch'] or len(metrics)} / {epochs_total}")
    last_two = [m.get("val_accuracy") for m in metrics[-2:]]
    change = last_two[1] - last_two[0] if len(last_two) == 2 and None not in last_two else None
    columns[1].metric("Validation accuracy", views.percent(latest.get("val_accuracy")),
                      delta=f"{100 * change:+.1f} points" if change else None,
                      help="After the last finished epoch; the delta is the change from the epoch before.")
    eta = views.eta_seconds(status, metrics)
    columns[2].metric("Time left", f"≈ {views.format_duration(eta)}" if eta is not None else "–",
                      help="From the epochs finished so far. Early stopping can end the run sooner; "
                           "fine-tuning epochs take longer than the ones before.")

    if state == "queued":
        ahead = views.queue_position(run.id, summaries)
        waiting = f"{ahead} queued run{'s' if ahead != 1 else ''} and any running ones" if ahead \
            else "a free training slot"
        st.progress(0.0, text=f"Queued: waiting for {waiting}.")
    elif state == "running":
        phase = views.PHASE_LABELS.get(status["phase"], "Starting: loading TensorFlow and the photos")
        if status["batches_total"]:
            unit = "batch" if status["phase"] != "features" else "feature batch"
            text = f"{phase} · {unit} {status['batch']} / {status['batches_total']}"
        else:
            text = phase
        st.progress(views.batch_fraction(status), text=text)
    elif state == "completed":
        st.success(f"Completed in {views.format_duration(run.duration)}: best validation accuracy "
                   f"{views.percent(run.best_val_accuracy)}, test accuracy {views.percent(run.test_accuracy)}.")
    elif state == "failed":
        st.error(status["error"] or "The run failed.")
        if status.get("traceback"):
            with st.expander("Traceback"):
                st.code(status["traceback"], language=None)
    else:  # cancelled, interrupted
        kept = " The best model so far is kept." if (Path(run.path) / MODEL_FILE).exists() else ""
        st.warning((status["error"] or f"The run was {state} after {len(metrics)} epochs.") + kept)

    st.plotly_chart(figure("curves_figure", metrics, epochs_total), key=f"curves_{run.id}",
                    config={"displayModeBar": False})
    if state in ACTIVE_STATES and st.button("Cancel run", icon="⏹️", key=f"cancel_{run.id}"):
        new_state = jobs.cancel(run.path)
        st.toast("Cancelled." if new_state == "cancelled" else "Stopping after the current batch…")


# --- runs table -------------------------------------------------------------------------------

def runs_table(summaries: list[RunSummary]) -> list[RunSummary]:
    """The table of all runs; returns the selected ones."""
    event = st.dataframe(
        views.runs_frame(summaries),
        key=runs_table_key(summaries), on_select="rerun", selection_mode="multi-row", hide_index=True,
        placeholder="–",
        column_config={
            "Run": st.column_config.TextColumn(width="medium"),
            "Model": st.column_config.TextColumn(width="medium"),
            "Status": st.column_config.TextColumn(width="medium"),
            "Best val accuracy": st.column_config.NumberColumn(format="%.1f%%"),
            "Test accuracy": st.column_config.NumberColumn(format="%.1f%%"),
        },
    )
    selected = [summaries[row] for row in event.selection.rows if row < len(summaries)]
    if len(selected) >= 2:
        curves = [(f"{s.arch} · {s.id}", read_metrics(s.path)) for s in selected]
        st.plotly_chart(figure("overlay_figure", curves), key="runs_overlay")
    elif not selected:
        st.caption("Select a run to see it above and its results below; select several to "
                   "compare their validation accuracy.")
    if selected:
        delete_dialog(selected)
    return selected


def delete_dialog(selected: list[RunSummary]) -> None:
    with st.popover(f"Delete {len(selected)} selected run{'s' if len(selected) > 1 else ''}", icon="🗑️"):
        active = [s for s in selected if s.state in ACTIVE_STATES]
        if active:
            st.warning("Cancel queued or running runs before deleting them: "
                       + ", ".join(s.id for s in active))
            return
        st.write("This removes the runs' folders: their models, metrics and logs. It cannot be undone.")
        st.markdown("\n".join(f"- `{s.id}` ({views.arch_title(s.arch)})" for s in selected))
        if st.button("Delete for good", type="primary", key="train_delete_confirm"):
            for summary in selected:
                try:
                    delete_run(summary.path)
                except (OSError, ValueError) as error:
                    st.error(str(error))
                    return
            st.rerun()


# --- results of one finished run ---------------------------------------------------------

def results(run: RunSummary) -> None:
    run_dir = Path(run.path)
    try:
        evaluation = read_json(run_dir / EVALUATION_FILE)
    except (OSError, ValueError):
        evaluation = None
    config = read_config(run_dir)
    st.header(f"Results · {views.arch_title(run.arch)}")
    st.caption(f"Run `{run.id}`")
    columns = st.columns(4)
    columns[0].metric("Test accuracy", views.percent(run.test_accuracy),
                      help="On test photos the model never saw, neither for training nor for "
                           "choosing its best epoch.")
    columns[1].metric("Best validation accuracy", views.percent(run.best_val_accuracy))
    columns[2].metric("Test photos", evaluation.get("count", "–") if evaluation else "–")
    columns[3].metric("Training time", views.format_duration(run.duration))

    if evaluation:
        classes = evaluation.get("classes") or config.classes
        left, right = st.columns([3, 2])
        with left:
            st.markdown("**Confusion matrix** (test photos)")
            st.plotly_chart(figure("confusion_figure", classes, evaluation["confusion_matrix"]),
                            key=f"confusion_{run.id}", config={"displayModeBar": False})
        with right:
            st.markdown("**Per class**")
            st.dataframe(views.per_class_frame(evaluation), hide_index=True, column_config={
                name: st.column_config.NumberColumn(format="%.1f%%") for name in ("Precision", "Recall", "F1")
            })
        misclassified_grid(evaluation.get("misclassified", []))
    else:
        st.info("This run has no test evaluation (it did not get that far).")

    with st.expander("Model", expanded=False):
        count = param_count(run.arch, len(config.classes), config.image_size)[1] if config.classes else None
        st.code("\n".join(views.config_lines(config)
                          + ([f"Parameters: {count:,}"] if count else [])), language=None)
        model_file = run_dir / MODEL_FILE
        if model_file.exists():
            summary_key = f"train_show_summary_{run.id}"
            if st.button("Show the Keras layer summary", key=f"summary_button_{run.id}",
                         help="Loads the model with TensorFlow: takes a few seconds the first time."):
                st.session_state[summary_key] = True
            if st.session_state.get(summary_key):
                st.code(keras_summary(str(model_file), model_file.stat().st_mtime), language=None)
            st.download_button(
                f"Download model.keras ({model_file.stat().st_size / 1e6:.1f} MB)",
                data=partial(model_file.read_bytes), file_name=f"{run.id}.keras",
                mime="application/octet-stream", on_click="ignore", icon="⬇️", key=f"download_{run.id}",
            )
        st.markdown("Training curves in TensorBoard:")
        st.code(f"tensorboard --logdir {get_settings().runs_dir}", language="bash")


def misclassified_grid(misclassified: list[dict]) -> None:
    if not misclassified:
        st.success("No test photo was misclassified.")
        return
    st.markdown(f"**Misclassified test photos** ({len(misclassified)}"
                + (f", first {MISCLASSIFIED_SHOWN} shown" if len(misclassified) > MISCLASSIFIED_SHOWN else "")
                + ")")
    columns = st.columns(6)
    for index, item in enumerate(misclassified[:MISCLASSIFIED_SHOWN]):
        probabilities = sorted(item["probabilities"].items(), key=lambda kv: -kv[1])
        caption = f"{item['true']} → **{item['predicted']}**  \n" + " · ".join(
            f"{name} {p:.0%}" for name, p in probabilities[:3])
        with columns[index % len(columns)]:
            path = Path(item["file"])
            try:
                st.image(thumbnail(str(path), path.stat().st_mtime))
            except (OSError, ImageError):
                st.caption(f"({path.name} is no longer readable)")
            st.caption(caption)


# --- the tutorial comparison ------------------------------------------------------------------

def tutorial_comparison(data_root: Path) -> None:
    found = tutorial.find_tutorial_runs(data_root)
    if not found:
        return
    st.header("The tutorial, reproduced")
    panels, rows = [], []
    for model in tutorial.TUTORIAL_MODELS:
        run_dir = found.get(model.arch)
        metrics = read_metrics(run_dir) if run_dir else []
        status = read_status(run_dir) if run_dir else {"state": "not run"}
        evaluation = {}
        if run_dir and (run_dir / EVALUATION_FILE).exists():
            try:
                evaluation = read_json(run_dir / EVALUATION_FILE)
            except (OSError, ValueError):
                pass
        val = [m["val_accuracy"] for m in metrics if m.get("val_accuracy") is not None]
        panels.append((model.label, metrics, model.reported))
        rows.append({
            "Model": ARCHITECTURES[model.arch].title,
            "Tutorial reported": views.in_percent(model.reported),
            "Tutorial code, re-run": views.in_percent(model.rerun),
            "PawLab best validation": views.in_percent(max(val)) if val else None,
            "PawLab test": views.in_percent(evaluation.get("accuracy")),
            "Status": f"{views.STATE_LABELS.get(status['state'], status['state'])}"
                      + (f" ({len(metrics)}/{tutorial.EPOCHS})" if status["state"] == "running" else ""),
        })
    st.plotly_chart(figure("comparison_figure", panels, tutorial.EPOCHS), key="tutorial_comparison",
                    config={"displayModeBar": False})
    percent = st.column_config.NumberColumn(format="%.1f%%")
    st.dataframe(rows, hide_index=True, placeholder="–", column_config={
        name: percent
        for name in ("Tutorial reported", "Tutorial code, re-run", "PawLab best validation", "PawLab test")
    })
    st.caption(tutorial.LEAK_NOTE)

    st.markdown("**Next step: our recipes.**")
    columns = st.columns(len(tutorial.NEXT_STEPS))
    for column, (arch, recipe) in zip(columns, tutorial.NEXT_STEPS.items()):
        spec = ARCHITECTURES[arch]
        with column:
            st.markdown(f"**{spec.title}**: {spec.description}")
            st.caption(tutorial.describe_recipe(arch))
            if st.button(f"Train {spec.title}", key=f"train_recipe_{arch}", icon="🚀"):
                run_dir = jobs.submit(tutorial.recipe_config(data_root, arch))
                st.toast(f"Run {run_dir.name} {read_status(run_dir)['state']}.", icon="🚀")
                st.rerun(scope="app")


# --- the page ---------------------------------------------------------------------------------

ensure_app_shell()
st.title(":material/monitoring: Train")
recover_runs_at_start(str(get_settings().runs_dir))

data_root = last_dataset()
facts = None
if data_root is not None:
    try:
        facts = dataset_facts(str(data_root))
    except DatasetError as error:
        st.error(f"The chosen dataset cannot be used: {error}")

left, right = st.columns([2, 3], gap="large")
with left:
    if facts is None:
        st.info("Choose a dataset first: download cats vs dogs, upload a zip of photos, "
                "or pick a folder on the Dataset page.")
        st.page_link("pages/dataset.py", label="Go to the Dataset page", icon="🖼️")
    else:
        counts = facts["counts"]
        st.markdown(f"Dataset **{data_root.name}**: {len(facts['classes'])} classes "
                    f"({', '.join(facts['classes'])}), "
                    + ", ".join(f"{sum(c.values())} {split}" for split, c in counts.items()) + " photos.")
        new_tab, tutorial_tab_ = st.tabs(["New run", "Reproduce the tutorial"])
        with new_tab:
            new_run_form(data_root, facts["classes"])

# Read after the form, so a run just started is part of everything below.
summaries = list_runs()
st.session_state["train_signature"] = runs_signature(summaries)
if facts is not None:
    with tutorial_tab_:
        tutorial_tab(data_root, summaries)
with right:
    active = any(s.state in ACTIVE_STATES for s in summaries)
    with st.container(key="train_live"):
        st.fragment(live_panel, run_every=ACTIVE_REFRESH if active else IDLE_REFRESH)()

if summaries:
    st.header("Runs")
    runs_table(summaries)
    run = focused_run(summaries)
    if run is not None and run.state not in ACTIVE_STATES and (
            (Path(run.path) / EVALUATION_FILE).exists() or run.state == "completed"):
        with st.container(key="train_results"):
            results(run)
if data_root is not None:
    tutorial_running = any(s.state in ACTIVE_STATES and s.arch in tutorial.TUTORIAL_ARCHS for s in summaries)
    st.fragment(tutorial_comparison, run_every=5.0 if tutorial_running else None)(data_root)
