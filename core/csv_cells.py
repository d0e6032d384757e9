"""Every CSV PawLab writes, written so that no cell runs as a spreadsheet formula.

File and class names come from visitors, and a spreadsheet runs a cell that
starts with ``=``, ``+``, ``-`` or ``@`` (tab and carriage return too) as a
formula: ``=HYPERLINK(...)`` in a file name becomes a link that leaks the
sheet. OWASP's rule (CSV injection): prefix such a cell with a single quote,
which spreadsheets show as text.

Only strings are neutralised: numbers PawLab computes itself (a negative
float, a probability) stay numbers, so the CSV still sorts and sums.

    text = write_csv(rows, fieldnames)   # rows: dicts, as csv.DictWriter takes
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence

# First characters a spreadsheet reads as the start of a formula (OWASP).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_csv_cell(value: object) -> object:
    """``value`` as it may go into a CSV cell: a string that could start a formula gets a leading quote."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def write_csv(rows: Iterable[Mapping[str, object]], fieldnames: Sequence[str]) -> str:
    """The CSV text of ``rows`` under a header of ``fieldnames``, every string cell (header too) neutralised."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([safe_csv_cell(name) for name in fieldnames])
    for row in rows:
        writer.writerow([safe_csv_cell(row.get(name)) for name in fieldnames])
    return buffer.getvalue()
