"""One sentence for a write that failed, instead of an OSError traceback.

PAWLAB_HOME may be read-only, full or locked by another process; every
write a page triggers (start a run, delete one, save a config, a correction,
an import) says what went wrong in words::

    except OSError as error:
        st.error(cannot("start the run", error))
"""

from __future__ import annotations

from core.fileio import CANNOT_WRITE, LockTimeout
from pages._common.text import code, md


def cannot(action: str, error: BaseException) -> str:
    """'Could not <action>: <why> (`<file>`).' as Markdown, every part shown as written."""
    where = ""
    if isinstance(error, OSError) and not isinstance(error, LockTimeout) and error.errno is not None:
        known = CANNOT_WRITE.get(error.errno)
        why = known.page if known else (error.strerror or str(error)).lower()
        where = f" ({code(error.filename)})" if error.filename else ""
    else:
        why = str(error).rstrip(".") or type(error).__name__
    return f"Could not {md(action)}: {md(why)}{where}."
