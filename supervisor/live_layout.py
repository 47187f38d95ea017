"""The live view's layout: the status table fitted to the terminal, and fair recent lines.

This module owns how the live view uses the terminal's cells: the title line,
the status table (padding goes before content, then columns shrink in a fixed
order, "... N more" below the table when rows do not fit), and which recent
lines are kept and shown when one process writes far more than the others
(each process gets a fair share, so a flood never hides a crash traceback nor
its state changes). It does not own writing to the terminal nor log capture
(``terminal``).
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from typing import TYPE_CHECKING, NamedTuple

from rich import box
from rich.cells import cell_len
from rich.console import Group
from rich.table import Table
from rich.text import Text

from supervisor import humanize
from supervisor.events import ProcessState

if TYPE_CHECKING:
    from collections.abc import Sequence

    from supervisor.child import ProcessStatus

_STATE_STYLE = {
    ProcessState.STOPPED: "dim",
    ProcessState.STARTING: "cyan",
    ProcessState.RUNNING: "green",
    ProcessState.BACKOFF: "yellow",
    ProcessState.STOPPING: "magenta",
    ProcessState.EXITED: "blue",
    ProcessState.FATAL: "bold red",
}
_COLUMNS = ("PROCESS", "STATE", "PID", "UPTIME", "RESTARTS", "LAST EXIT")
_SHRINK_ORDER = (((5, 0), 7), ((4, 3), 4), ((5, 0), 3))
"""Which columns give up width, in turn, and down to how many cells: LAST EXIT and
PROCESS first, then RESTARTS and UPTIME; STATE and PID only in rich's last even cut."""


class Entry(NamedTuple):
    """One line of the recent area: ``head mark text``, shared fairly by ``key``.

    ``key`` is the process for its output lines, drop notes and state changes,
    ``~`` for dsup's log records and ``#`` for dsup's other notes (orphans
    cleaned, state changes lost); ``mark`` is ``|`` or ``!`` for output, ``#`` or
    ``~`` for a note.
    """

    key: str
    head: str
    mark: str
    text: str

    @property
    def is_note(self) -> bool:
        """A state change, drop note or log record rather than a line of output."""
        return self.mark in "#~"


class _Style(NamedTuple):
    """How loosely the table is drawn."""

    show_edge: bool  # a blank line above and below, and a padded edge left and right
    padding: int  # cells each side of a cell's content
    chrome: int  # lines beyond the rows: header, rule and the edge lines


_LOOSE = _Style(show_edge=True, padding=1, chrome=4)
_TIGHT = _Style(show_edge=False, padding=0, chrome=2)


def _overhead(style: _Style, columns: int) -> int:
    """Cells a table of ``style`` takes beyond its content: padding, dividers, edges."""
    p = style.padding
    return (2 * p + 1) * columns + (1 if style.show_edge else -1 - 2 * p)


def fair_tail(entries: Sequence[Entry], room: int) -> list[Entry]:
    """The newest ``room`` entries, with no key taking more than its fair share.

    The share is the largest count ``q`` such that every key keeping its newest
    ``min(count, q)`` entries fits in ``room``: a key with few entries keeps
    them all, a flooding key gets what is left. The cells the rounding leaves
    go to the newest notes (state changes, log records) first, then to the
    newest lines. Time order is kept.
    """
    if len(entries) <= room:
        return list(entries)
    quota = _share(sorted(Counter(e.key for e in entries).values()), room)
    used: Counter[str] = Counter()
    picked: set[int] = set()
    newest_first = range(len(entries) - 1, -1, -1)
    for i in newest_first:
        if used[entries[i].key] < quota and len(picked) < room:
            used[entries[i].key] += 1
            picked.add(i)
    for notes in (True, False):
        left = (i for i in newest_first if entries[i].is_note == notes and i not in picked)
        picked.update(itertools.islice(left, max(0, room - len(picked))))
    return [entries[i] for i in sorted(picked)]


def _share(counts: Sequence[int], room: int) -> int:
    """The fair share of ``room`` for keys with ``counts`` entries (ascending): water-filling."""
    left, keys = room, len(counts)
    for count in counts:  # small keys first: they keep all they have
        if count * keys > left:
            return max(1, left // keys)
        left -= count
        keys -= 1
    return counts[-1]


def layout(
    node: str, rows: Sequence[ProcessStatus], recent: Sequence[Entry], *, size: tuple[int, int]
) -> Group:
    """Title, table and recent lines in ``height - 1`` lines of ``width`` cells.

    The last line is left for the shell's prompt after the final table. The
    view is drawn from the terminal's top row (``terminal.LiveView`` makes room
    first), so the title never scrolls away.
    """
    height = size[1]
    max_rows = max(1, height - 6)  # title, header, rule, 2 recent lines, prompt
    table, lines = _table(rows, max_rows, now=time.time(), size=size)
    room = max(2, height - 2 - lines)  # title and the prompt's line
    parts = [_title(node, rows), *table, *(_recent_line(e) for e in fair_tail(recent, room))]
    return Group(*parts)


def _title(node: str, rows: Sequence[ProcessStatus]) -> Text:
    """One line (never wrapped, so the layout's height is known) counting states."""
    counts = Counter(r.state.value for r in rows)
    summary = ", ".join(f"{n} {state}" for state, n in counts.most_common())
    title = f"dsup {node}: {humanize.plural(len(rows), 'process')}" + (
        f" ({summary})" if summary else ""
    )
    return Text(title, style="table.title", no_wrap=True, overflow="ellipsis")


def _table(
    rows: Sequence[ProcessStatus], max_rows: int, *, now: float, size: tuple[int, int]
) -> tuple[list[Table | Text], int]:
    """The status table (and a "... N more" line) in ``max_rows`` rows; its lines.

    The loose style (edge lines, padding) is used only when every row fits and
    no column has to be cut; otherwise the tight one gives its cells and lines
    to content first.
    """
    width, height = size
    shown = rows if len(rows) <= max_rows else rows[: max_rows - 1]
    cells = [_cells(r, now) for r in shown]
    natural = [max(map(cell_len, column)) for column in zip(_COLUMNS, *cells, strict=True)]
    fits = sum(natural) + _overhead(_LOOSE, len(_COLUMNS)) <= width
    style = _LOOSE if fits and len(shown) == len(rows) and len(rows) <= height - 12 else _TIGHT
    table = Table(
        box=box.SIMPLE_HEAD,
        expand=False,
        show_edge=style.show_edge,
        pad_edge=style.show_edge,
        padding=(0, style.padding),
    )
    widths = _widths(natural, width - _overhead(style, len(_COLUMNS)))
    for name, most in zip(_COLUMNS, widths, strict=True):
        table.add_column(name, no_wrap=True, overflow="ellipsis", max_width=most)
    for r, row in zip(shown, cells, strict=True):
        table.add_row(row[0], Text(row[1], style=_STATE_STYLE[r.state]), *row[2:])
    parts: list[Table | Text] = [table]
    if len(shown) < len(rows):
        more = f"... {len(rows) - len(shown)} more"
        parts.append(Text(more, style="dim", no_wrap=True, overflow="ellipsis"))
    return parts, len(shown) + style.chrome + len(parts) - 1


def _cells(r: ProcessStatus, now: float) -> tuple[str, str, str, str, str, str]:
    is_up = r.state.is_alive and r.started_at is not None
    return (
        r.process,
        r.state.value,
        str(r.pid) if r.pid is not None else "-",
        humanize.duration(now - r.started_at) if is_up and r.started_at is not None else "-",
        str(r.restarts),
        _last_exit(r),
    )


def _widths(natural: Sequence[int], room: int) -> list[int]:
    """Column widths that fit ``room`` cells of content, shrinking in ``_SHRINK_ORDER``.

    Within a step the widest column shrinks first.
    """
    widths = list(natural)
    excess = sum(widths) - room
    for columns, floor in _SHRINK_ORDER:
        while excess > 0:  # bounded: every pass takes one cell off a column above floor
            widest = max(columns, key=lambda i: widths[i])
            if widths[widest] <= floor:
                break
            widths[widest] -= 1
            excess -= 1
    return widths


def _last_exit(r: ProcessStatus) -> str:
    if r.last_exit_signal:
        return humanize.signal_name(r.last_exit_signal)
    if r.last_exit_code is not None:
        return f"exit {r.last_exit_code}"
    return humanize.printable(r.last_error) if r.last_error else "-"


def _recent_line(entry: Entry) -> Text:
    _, head, mark, line = entry
    style = {"!": "red", "#": "dim", "~": "yellow"}.get(mark, "")
    text = Text.assemble((head, "cyan"), " ", (mark, style), " ", no_wrap=True, overflow="ellipsis")
    if mark in "#~":
        text.append(humanize.printable(line), style="bold")
    else:  # only SGR is left, which rich turns into styles
        text.append_text(Text.from_ansi(humanize.printable(line, keep_color=True)))
    return text
