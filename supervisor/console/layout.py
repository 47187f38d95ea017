"""The live view's layout: the status table fitted to the terminal, and fair recent lines.

Each process gets a fair share of the recent lines, so one flood never hides another's crash.
"""

from __future__ import annotations

import heapq
import time
from collections import Counter
from typing import TYPE_CHECKING, NamedTuple

from rich import box
from rich.cells import cell_len
from rich.console import Group
from rich.table import Table
from rich.text import Text

from supervisor import humanize, signals
from supervisor.events import ProcessState

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from supervisor.process.status import ProcessStatus

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
_PROGRESS = "PROGRESS"
"""The column shown when a worker reports progress or asks a question; it gives way first."""
_PROGRESS_FLOOR = 15  # the bar and its percentage
_NAME_CELLS = 16
"""A recent line's process name is cut down to this, at most, to leave room for the text."""


DSUP_KEYS = ("~", "#")
"""The keys of dsup's own lines: its log records, and its other notes."""


class Entry(NamedTuple):
    """One line of the recent area: ``head mark text``, shared fairly by ``key``.

    ``key`` is the process for its output lines, drop notes and state changes,
    ``~`` for dsup's log records and ``#`` for dsup's other notes (orphans
    cleaned, state changes lost, output dropped from several processes);
    ``mark`` is ``|`` or ``!`` for output, ``#`` or ``~`` for a note.
    ``dropped`` is the count of lost lines a drop note stands for.
    ``stopping`` marks a state change into STOPPING.
    """

    key: str
    head: str
    mark: str
    text: str
    dropped: int = 0
    stopping: bool = False

    @property
    def is_note(self) -> bool:
        """A state change or log record rather than a line of output or a drop note."""
        return self.mark in "#~" and not self.dropped


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


def fair_tail(entries: Sequence[Entry], room: int, busy: Mapping[str, int]) -> list[Entry]:
    """The ``room`` entries worth showing, in time order.

    First come the notes that tell where things stand: dsup's own records and
    each process's state changes since its last line of output. Then every key
    gets its newest entry, then its second newest, and so on (a fair share:
    a key with few entries keeps them all, a flooding key gets what is left).
    Within a round, dsup's notes go first, then state changes, then the
    processes that wrote the fewest lines lately (``busy``), so a quiet
    process's crash line beats a flood; then the newest.
    """
    if len(entries) <= room:
        return list(entries)
    last_output = {e.key: i for i, e in enumerate(entries) if not e.is_note}
    last_words = _last_words(entries, last_output)
    depth: Counter[tuple[bool, str]] = Counter()
    ranked = []
    for i in range(len(entries) - 1, -1, -1):
        e = entries[i]
        is_current = e.is_note and (i > last_output.get(e.key, -1) or i in last_words)
        rank = depth[is_current, e.key]
        depth[is_current, e.key] += 1
        order = (e.key not in DSUP_KEYS, not e.is_note, busy.get(e.key, 0), -i)
        ranked.append(((not is_current, rank, *order), i))
    return [entries[i] for i in sorted(i for _, i in heapq.nsmallest(room, ranked))]


def _last_words(entries: Sequence[Entry], last_output: Mapping[str, int]) -> set[int]:
    """The changes into STOPPING that a process's last lines of output followed.

    Lines a process wrote before the stop signal reached it are often read
    after its STOPPING change; once a later change (STOPPED) closes the stop,
    they do not make the STOPPING change history.
    """
    opened: dict[str, int] = {}
    closed: set[int] = set()
    for i, e in enumerate(entries):
        if not e.is_note or e.key not in last_output:
            continue
        if i < last_output[e.key]:
            opened[e.key] = i
        elif e.key in opened:
            closed.add(opened.pop(e.key))
    return {i for i in closed if entries[i].stopping}


def on_screen(
    entries: Sequence[Entry], room: int, busy: Mapping[str, int], *, explain: bool = False
) -> list[Entry]:
    """``fair_tail``'s pick for the screen, drop notes merged and gaps marked.

    One line (``[660 lines dropped from 20 processes]``, where the newest of
    them was) stands for every drop note kept, so that they never fill the room.
    Where recent lines of a process are left out, a line before its first one
    shown marks the gap (``[3 lines not shown]``, see :func:`_gaps`), for the
    quietest processes, in at most one row of ``GAP_SHARE``; with ``explain``,
    the first mark also says where the lines are.
    """
    drops = [i for i, e in enumerate(entries) if e.dropped]
    processes = {entries[i].key for i in drops}
    if len(processes) >= 2:
        total = humanize.plural(sum(entries[i].dropped for i in drops), "line")
        merged = Entry("#", "dsup", "#", f"[{total} dropped from {len(processes)} processes]")
        kept = [e for e in entries if not e.dropped]
        kept.insert(drops[-1] - len(drops) + 1, merged)
        entries = kept
    shown = fair_tail(entries, room, busy)
    wanted = min(len(_gaps(entries, shown, busy)), room // GAP_SHARE)
    shown, freed = _make_room(shown, wanted, busy)
    gaps = dict(list(_gaps(entries, shown, busy).items())[:freed])
    out: list[Entry] = []
    for e in shown:
        if missed := gaps.get(id(e)):
            count = humanize.plural(missed, "line")
            hint = f"; dsup ctl tail {e.key} shows every line" if explain else ""
            out.append(Entry(e.key, e.key, GAP_MARK, f"[{count} not shown{hint}]"))
            explain = False
        out.append(e)
    return out


def _make_room(shown: list[Entry], rows: int, busy: Mapping[str, int]) -> tuple[list[Entry], int]:
    """Free up to ``rows`` rows for gap marks: output lines only, never a note.

    Each row is the oldest line of the process with the most lines shown (the
    busiest on a tie), as long as it keeps one. Returns the lines left and the
    rows freed.
    """
    shown = list(shown)
    for freed in range(rows):
        lines = Counter(e.key for e in shown if e.key not in DSUP_KEYS and e.mark in "|!")
        if not lines or max(lines.values()) < 2:
            return shown, freed
        key = max(lines, key=lambda k: (lines[k], busy.get(k, 0)))
        shown.remove(next(e for e in shown if e.key == key and e.mark in "|!"))
    return shown, rows


GAP_MARK = ":"
"""The mark of a line that stands for output lines of a process left off the screen."""
GAP_SHARE = 5
"""Gap marks take at most one row in this many: a flood of processes keeps its lines."""


def _gaps(
    entries: Sequence[Entry], shown: Sequence[Entry], busy: Mapping[str, int]
) -> dict[int, int]:
    """For each process, the ``id`` of its first line shown and how many before it are not.

    A process's pick is its newest lines, so the recent lines left off are all
    before its first line shown: its lines 4 and 5 would appear without 1 to 3.
    The quietest processes come first (``busy``): a flood's left-off lines are
    expected, a quiet process's few are the ones read as lost output.
    """
    on = {id(e) for e in shown}
    gaps: dict[int, int] = {}
    keys: dict[int, str] = {}
    missed: Counter[str] = Counter()
    marked: set[str] = set()
    for e in entries:
        if e.key in DSUP_KEYS or e.mark not in "|!" or e.key in marked:
            continue
        if id(e) not in on:
            missed[e.key] += 1
            continue
        marked.add(e.key)
        if missed[e.key]:
            gaps[id(e)], keys[id(e)] = missed[e.key], e.key
    quiet = sorted(gaps, key=lambda i: busy.get(keys[i], 0))
    return {i: gaps[i] for i in quiet}


def layout(
    node: str,
    rows: Sequence[ProcessStatus],
    recent: Sequence[Entry],
    *,
    size: tuple[int, int],
    busy: Mapping[str, int],
    explain: bool = False,
) -> tuple[Group, bool]:
    """Title, table and recent lines in ``height - 1`` lines of ``width`` cells.

    ``busy`` counts the lines each process wrote lately (``fair_tail``). The
    last line is left for the shell's prompt after the final table. The view
    is drawn from the terminal's top row (``terminal.LiveView`` makes room
    first), so the title never scrolls away. Returns the view and whether it
    marks a gap in a process's lines (``explain`` spells out the first mark).
    """
    width, height = size
    max_rows = max(1, height - 6)  # title, header, rule, 2 recent lines, prompt
    table, lines = _table(rows, max_rows, now=time.time(), size=size)
    room = max(2, height - 2 - lines)  # title and the prompt's line
    shown = on_screen(recent, room, busy, explain=explain)
    parts = [_title(node, rows), *table, *(_recent_line(e, width) for e in shown)]
    return Group(*parts), any(e.mark == GAP_MARK for e in shown)


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
    has_progress = any(r.progress is not None or r.question is not None for r in shown)
    columns = (*_COLUMNS, _PROGRESS) if has_progress else _COLUMNS
    cells = [(*_cells(r, now), *((_progress(r),) if has_progress else ())) for r in shown]
    natural = [max(map(cell_len, column)) for column in zip(columns, *cells, strict=True)]
    fits = sum(natural) + _overhead(_LOOSE, len(columns)) <= width
    style = _LOOSE if fits and len(shown) == len(rows) and len(rows) <= height - 12 else _TIGHT
    table = Table(
        box=box.SIMPLE_HEAD,
        expand=False,
        show_edge=style.show_edge,
        pad_edge=style.show_edge,
        padding=(0, style.padding),
    )
    order = (((len(_COLUMNS),), _PROGRESS_FLOOR), *_SHRINK_ORDER) if has_progress else _SHRINK_ORDER
    widths = _widths(natural, width - _overhead(style, len(columns)), order)
    for name, most in zip(columns, widths, strict=True):
        table.add_column(name, no_wrap=True, overflow="ellipsis", max_width=most)
    for r, row in zip(shown, cells, strict=True):
        name = humanize.short_name(row[0], widths[0])  # ``web…:0`` and ``web…:1`` differ
        table.add_row(name, Text(row[1], style=_STATE_STYLE[r.state]), *row[2:])
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


def _progress(r: ProcessStatus) -> str:
    """PROGRESS: the open question, or the bar, percentage and text of the latest progress."""
    if r.question is not None:
        return humanize.printable(f"asks #{r.question.id}: {r.question.text}")
    if r.progress is None:
        return ""
    bar = humanize.progress_bar(r.progress.fraction)
    return humanize.printable(f"{bar} {r.progress.text}".rstrip())


def _widths(
    natural: Sequence[int],
    room: int,
    order: Sequence[tuple[tuple[int, ...], int]] = _SHRINK_ORDER,
) -> list[int]:
    """Column widths that fit ``room`` cells of content, shrinking in ``order``.

    Within a step the widest column shrinks first.
    """
    widths = list(natural)
    excess = sum(widths) - room
    for columns, floor in order:
        while excess > 0:  # bounded: every pass takes one cell off a column above floor
            widest = max(columns, key=lambda i: widths[i])
            if widths[widest] <= floor:
                break
            widths[widest] -= 1
            excess -= 1
    return widths


def _last_exit(r: ProcessStatus) -> str:
    if r.last_exit_signal:
        return signals.name(r.last_exit_signal)
    if r.last_exit_code is not None:
        return f"exit {r.last_exit_code}"
    return humanize.printable(r.last_error) if r.last_error else "-"


def _recent_line(entry: Entry, width: int) -> Text:
    """``head mark text`` in ``width`` cells: a long process name gives way before the text."""
    key, head, mark, line = entry[:4]
    style = {"!": "red", "#": "dim", "~": "yellow", GAP_MARK: "dim"}.get(mark, "")
    if mark == GAP_MARK:
        message = Text(line, style="dim italic")
    elif mark in "#~":
        message = Text(humanize.printable(line), style="bold")
    else:  # only SGR is left, which rich turns into styles
        message = Text.from_ansi(humanize.printable(line, keep_color=True))
    excess = cell_len(head) + 3 + message.cell_len - width
    if excess > 0 and key not in DSUP_KEYS and len(key) > _NAME_CELLS:
        short = humanize.short_name(key, max(_NAME_CELLS, len(key) - excess))
        if head == key:
            head = short
        elif message.plain.startswith(key):  # a state change: the name begins the text
            message = Text(short, style=message.style) + message[len(key) :]
    text = Text.assemble((head, "cyan"), " ", (mark, style), " ", no_wrap=True, overflow="ellipsis")
    return text.append_text(message)
