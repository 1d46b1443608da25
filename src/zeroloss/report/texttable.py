"""Plain-text tables for the terminal whose long cells wrap inside their column instead of being cut.

Standard library only (the command line imports it before anything heavy). The width defaults to the terminal's
(``COLUMNS``, else the terminal, else 100 columns when the output is not a terminal).

Examples:
    >>> print(wrap_table(["verdict", "claim"], [["PASS", "the loss decays geometrically at rate 1 - eta lambda0 / 2"]],
    ...                  width=36, flexible=[1]))
    verdict  claim
    -------  ---------------------------
    PASS     the loss decays
             geometrically at rate 1 -
             eta lambda0 / 2
"""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Mapping, Sequence

#: A flexible column is never narrowed below this many characters (or its header), however narrow the terminal.
MIN_FLEXIBLE = 12
#: Between two columns.
GAP = "  "


def terminal_width(default: int = 100) -> int:
    """The terminal's width in characters (``COLUMNS`` wins; ``default`` when the output is not a terminal)."""
    return shutil.get_terminal_size((default, 24)).columns


def _column_widths(natural: list[int], minimum: list[int], weights: dict[int, float], available: int) -> list[int]:
    """Narrow the flexible column (a key of ``weights``) with the largest width / weight one character at a time until
    the row fits ``available`` (or nothing flexible can shrink further): a column of weight 2 keeps about twice the
    width of one of weight 1."""
    widths = list(natural)
    excess = sum(widths) - available
    while excess > 0:
        candidates = [i for i in weights if widths[i] > minimum[i]]
        if not candidates:
            break
        widest = max(candidates, key=lambda i: (widths[i] / weights[i], -i))
        widths[widest] -= 1
        excess -= 1
    return widths


def wrap_table(header: Sequence[str], rows: Sequence[Sequence[str]], width: int | None = None,
               flexible: Sequence[int] | Mapping[int, float] = (), right: Sequence[int] = (),
               titles: Mapping[int, str] | None = None) -> str:
    """Lay out ``rows`` under ``header`` in at most ``width`` characters, wrapping the ``flexible`` columns.

    Args:
        header: column titles.
        rows: the cells, as text (one sequence per row, as long as ``header``).
        width: total line width (default: :func:`terminal_width`). Columns that are not flexible keep their natural
            width; flexible ones are narrowed, widest first, down to ``MIN_FLEXIBLE`` characters, and their cells
            wrap at word boundaries (a word longer than the column is split). Only if even that does not fit do the
            lines come out longer than ``width``.
        flexible: indices of the columns that may wrap, or index → weight (the share of the width it keeps when
            columns must narrow; 1 by default).
        right: indices of right-aligned columns (numbers).
        titles: row index → a title line printed above that row, across the columns (a group's name), wrapped to
            ``width``.

    Returns:
        The table: header, a rule, then one block per row; when some row wraps, rows are separated by blank lines,
        and a title is preceded by one.
    """
    width = terminal_width() if width is None else width
    ncol = len(header)
    table = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    if any(len(row) != ncol for row in table):
        raise ValueError("wrap_table: every row must have one cell per header column")
    natural = [max(len(line) for row in table for line in (row[i].splitlines() or [""])) for i in range(ncol)]
    minimum = [min(natural[i], max(MIN_FLEXIBLE, len(header[i]))) for i in range(ncol)]
    weights = dict(flexible) if isinstance(flexible, Mapping) else dict.fromkeys(flexible, 1.0)
    widths = _column_widths(natural, minimum, weights, width - len(GAP) * (ncol - 1))

    def cell_lines(text: str, w: int) -> list[str]:
        lines: list[str] = []
        for paragraph in text.splitlines() or [""]:
            lines += textwrap.wrap(paragraph, w, break_on_hyphens=False) or [""]
        return lines

    blocks = []
    for row in table:
        cells = [cell_lines(text, w) for text, w in zip(row, widths, strict=True)]
        height = max(len(c) for c in cells)
        lines = []
        for k in range(height):
            parts = [(c[k] if k < len(c) else "") for c in cells]
            parts = [p.rjust(w) if i in right else p.ljust(w) for i, (p, w) in enumerate(zip(parts, widths,
                                                                                               strict=True))]
            lines.append(GAP.join(parts).rstrip())
        blocks.append(lines)
    rule = GAP.join("-" * w for w in widths)
    wrapped = any(len(b) > 1 for b in blocks[1:])
    out = blocks[0] + [rule]
    titles = titles or {}
    for i, block in enumerate(blocks[1:]):
        if i and (wrapped or i in titles):
            out.append("")
        if i in titles:
            out += textwrap.wrap(titles[i], max(width, MIN_FLEXIBLE), break_on_hyphens=False) or [""]
        out += block
    return "\n".join(out)
