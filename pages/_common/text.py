"""User-controlled strings in Markdown: shown as they are, never interpreted.

Class names, file names, dataset names, run ids and augmentation names come
from folders, zips and forms. Written into ``st.markdown`` (or a caption, a
subheader, a widget label: all Markdown) as they are, ``[x](http://…)``
would become a link, ``:red[x]`` coloured text and ``$x$`` LaTeX. Every such
string goes through ``md`` (in running text) or ``code`` (as inline code).
"""

from __future__ import annotations

import re

# Every ASCII punctuation character may be backslash-escaped in CommonMark.
# These mean something anywhere in a line: emphasis, code, links, tables,
# strikethrough, Streamlit's ":red[...]" and ":material/...:" directives,
# LaTeX and HTML entities.
_SPECIAL = re.compile(r"([\\`*_{}\[\]<>|~:$^&!])")
# These only at the start of a line: headings, lists ("-", "+", "1.", "1)"), quotes.
_LINE_START = re.compile(r"^(\s*\d*)([-+#=>.)])")


def md(text: object) -> str:
    """``text`` escaped for running Markdown text: it reads exactly as written.

    A line break inside a name would end a list item or a heading, so the
    result is one line.
    """
    line = " ".join(str(text).splitlines())
    escaped = _SPECIAL.sub(r"\\\1", line)
    return _LINE_START.sub(r"\1\\\2", escaped, count=1)


def code(text: object) -> str:
    """``text`` as inline code: a fence longer than any run of backticks in it."""
    text = " ".join(str(text).splitlines())
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table of cells already written as Markdown (``md`` escapes
    their pipes and line breaks, so a cell never spills into the next)."""
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(cell or " " for cell in line) + " |" for line in lines)
