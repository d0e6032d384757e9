"""Which dataset each browser session works on, and which one a new session opens.

A chosen dataset has two scopes, kept apart on purpose:

- *this session's choice* lives in the session's own state (``st.session_state``
  on the pages; any dict in tests). Nothing another person does changes it.
- *the workspace* (``PAWLAB_HOME/workspace.json``) only remembers which datasets
  were used recently, newest first, so that a NEW session opens the most
  recently used one instead of an empty page.

A value that comes back from the browser (a select box, a typed path) is never
trusted: ``resolve_choice`` accepts only a dataset under ``PAWLAB_HOME/datasets``,
or a folder on the server's disk when the operator allowed local paths. No
Streamlit here; the pages call::

    root = session_dataset(st.session_state)                 # this session's, or the default
    root = choose_dataset(st.session_state, selected_value)  # checked, kept, remembered
    options = list_datasets()
"""

from __future__ import annotations

import os
import time
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path

from core.config import Settings, get_settings
from core.data.acquire import list_local_datasets, use_local_folder
from core.data.dataset import DatasetError
from core.fileio import FileLock, read_json, write_json

# The session-state key that holds a session's dataset root (a str).
DATASET_KEY = "dataset_root"
WORKSPACE_FILE = "workspace.json"
# Uses remembered; older ones fall off so the file stays small.
MAX_RECENT = 20
# Remembering takes milliseconds; waiting longer than this means something is stuck.
WORKSPACE_LOCK_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class RecentUse:
    path: Path  # resolved dataset root
    used_at: float  # time.time() of the use


# --- The workspace file: recently used datasets, newest first -------------------


def _file(settings: Settings) -> Path:
    return settings.home / WORKSPACE_FILE


def _parse_use(entry) -> RecentUse | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        return None
    used_at = entry.get("used_at")
    return RecentUse(Path(entry["path"]), float(used_at) if isinstance(used_at, (int, float)) else 0.0)


def recent_uses(settings: Settings | None = None) -> list[RecentUse]:
    """Datasets used recently, newest first; a missing or damaged file means none."""
    record = read_json(_file(settings or get_settings()))
    if not record.ok:
        return []
    entries = record.value.get("recent")
    uses = [_parse_use(entry) for entry in entries] if isinstance(entries, list) else []
    legacy = record.value.get("dataset")  # workspace.json before sessions had their own choice
    if isinstance(legacy, str):
        uses.append(RecentUse(Path(legacy), 0.0))
    return [use for use in uses if use is not None]


def remember_use(root: str | os.PathLike, settings: Settings | None = None) -> None:
    """Record that ``root`` was just used: the default for sessions that start from now on.

    Only workspace.json changes, whole (a lock keeps two sessions' uses from
    overwriting each other); no session's current choice is touched.
    """
    settings = settings or get_settings()
    use = RecentUse(Path(root).expanduser().resolve(), time.time())
    path = _file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(
        path.with_name(f".{WORKSPACE_FILE}.lock"), timeout=WORKSPACE_LOCK_TIMEOUT_SECONDS, what="the workspace"
    ):
        others = [old for old in recent_uses(settings) if old.path != use.path]
        recent = [use, *others][:MAX_RECENT]
        write_json(path, {"recent": [{"path": str(u.path), "used_at": u.used_at} for u in recent]})


# --- Which datasets a session may open ---------------------------------------------


def _is_inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _managed_datasets(settings: Settings) -> list[Path]:
    """Completed datasets that really are under datasets_dir: a symlink out is not one."""
    datasets_dir = settings.datasets_dir.resolve()
    resolved = (path.resolve() for path in list_local_datasets(settings))
    return list(dict.fromkeys(path for path in resolved if path.parent == datasets_dir))


def list_datasets(settings: Settings | None = None) -> list[Path]:
    """What a session can choose from: completed datasets under PAWLAB_HOME/datasets
    (by name), then, only while local paths are allowed, local folders used recently."""
    settings = settings or get_settings()
    managed = _managed_datasets(settings)
    if not settings.allow_local_paths:
        return managed
    datasets_dir = settings.datasets_dir.resolve()
    local = [use.path for use in recent_uses(settings) if use.path.is_dir() and not _is_inside(use.path, datasets_dir)]
    return managed + list(dict.fromkeys(local))


def default_dataset(settings: Settings | None = None) -> Path | None:
    """The dataset a new session opens: the most recently used listed one, else the first."""
    listed = list_datasets(settings)
    for use in recent_uses(settings):
        if use.path in listed:
            return use.path
    return listed[0] if listed else None


def resolve_choice(value: str | os.PathLike, settings: Settings | None = None) -> Path:
    """The dataset root a browser-sent ``value`` names, checked on the server.

    Accepted: a completed dataset directly under PAWLAB_HOME/datasets (a path
    or just its name), compared after resolving symlinks; or, only when the
    operator allowed local paths, a folder on the server's disk that holds a
    dataset. Anything else raises DatasetError or PermissionError with one
    sentence for the person.
    """
    settings = settings or get_settings()
    text = str(value).strip()
    if not text:
        raise DatasetError("No dataset was chosen.")
    candidate = Path(text).expanduser()
    if ".." in candidate.parts:
        raise DatasetError(f"{text!r} is refused: a dataset path may not contain '..'.")
    if not candidate.is_absolute():
        candidate = settings.datasets_dir / candidate
    datasets_dir = settings.datasets_dir.resolve()
    resolved = candidate.resolve()
    if resolved.parent == datasets_dir:
        if resolved in _managed_datasets(settings):
            return resolved
        raise DatasetError(f"There is no complete dataset named {resolved.name!r}; download or import it again.")
    if settings.allow_local_paths:
        return use_local_folder(resolved, settings)
    if _is_inside(resolved, datasets_dir):
        raise DatasetError(f"{text!r} is a folder inside a dataset; choose the dataset itself.")
    raise PermissionError(
        f"{text!r} is not one of PawLab's datasets, and opening folders elsewhere on the "
        "server is switched off (the operator can allow it with PAWLAB_ALLOW_LOCAL_PATHS=1)."
    )


# --- A session's dataset --------------------------------------------------------


def session_dataset(state: MutableMapping, settings: Settings | None = None) -> Path | None:
    """This session's dataset; a new session, or one whose dataset is gone, gets the default.

    The stored value is checked again each time: the browser can set session state.
    """
    for value in (state.get(DATASET_KEY), default_dataset(settings)):
        if not value:
            continue
        try:
            root = resolve_choice(value, settings)
        except (DatasetError, OSError):
            continue
        state[DATASET_KEY] = str(root)
        return root
    state.pop(DATASET_KEY, None)
    return None


def choose_dataset(state: MutableMapping, value: str | os.PathLike, settings: Settings | None = None) -> Path:
    """Check ``value``, make it this session's dataset and the default for new sessions."""
    root = resolve_choice(value, settings)
    state[DATASET_KEY] = str(root)
    remember_use(root, settings)
    return root
