"""Text from data (names, labels, reasons, paths) made literal in the reports' Markdown.

Every report is written as Markdown and rendered to HTML by markdown-it-py with raw HTML off and
links checked (``render.markdown_renderer``); what comes from a result set or a grid file goes
through :func:`text` or :func:`code` first, so that nothing in it becomes a link, an image,
emphasis or code, in report.md as in report.html.
"""

from __future__ import annotations

import re
from typing import Any

#: characters of data that could make markup: links and images ([ ] !), autolinks and HTML (<),
#: code spans (`), emphasis (*) and escapes (\); a table's writer escapes its cells' column
#: separators (|) itself (``render.md_escape``).
_MARKUP = re.compile(r"([\\`*\[\]<!])")


def text(value: Any) -> str:
    """Text from data as literal Markdown, on one line: nothing in it becomes markup."""
    return _MARKUP.sub(r"\\\1", " ".join(str(value).splitlines()))


def code(value: Any) -> str:
    """Text from data as a code span, fenced by more backticks than it holds."""
    value = " ".join(str(value).splitlines())
    fence = "`" * (max((len(run) for run in re.findall(r"`+", value)), default=0) + 1)
    pad = " " if value.startswith("`") or value.endswith("`") else ""
    return f"{fence}{pad}{value}{pad}{fence}"
