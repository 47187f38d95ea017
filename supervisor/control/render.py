"""How ``dsup ctl`` prints results for people: the status table, actions, reloads and logs.

Process output is made safe to show; standard library only, so ``dsup ctl`` starts fast.
"""

from __future__ import annotations

import math
import re
import shutil
import sys
import textwrap
import time
from typing import TYPE_CHECKING

from supervisor import humanize, signals
from supervisor.commands import health

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

_ALIVE = ("STARTING", "RUNNING", "STOPPING")
_DROPPABLE = ("MEMORY", "CPU")  # left out, in turn, to put INFO on its row
_LAST_RESORT = ("RESTARTS", "UPTIME", "LAST EXIT", "PID")  # for a very narrow terminal
_INDENT = "    "  # an INFO too long for its row goes under it
_NAME_MOST = 32  # NAME's widest, on a terminal of 96 columns or more
_NAME_LEAST = 10  # NAME is cut down to this before the table outgrows a terminal


def render(cmd: str, result: object) -> str:
    """The human form of one command's result."""
    data = result if isinstance(result, dict) else {}
    if cmd == "status":
        width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
        return render_status(data, width=width)
    if cmd == "tail":
        logs = _list(data.get("logs"))
        return render_logs(logs, many=len(logs) > 1)
    if cmd == "reload":
        return "\n".join(
            f"{key}: {', '.join(str(n) for n in _list(data.get(key))) or '-'}"
            for key in ("added", "removed", "changed", "updated", "unchanged")
        )
    if cmd == "shutdown":
        return f"node {data.get('node')!s}: stopping every process and exiting"
    if cmd == "discord-sync":
        names = ", ".join(f"/{n}" for n in _list(data.get("commands")))
        return f"registered in guild {data.get('guild_id')!s}: {names or 'no commands'}"
    if cmd == "task":
        return str(data.get("id"))
    if cmd == "tasks":
        return render_tasks(data)
    if cmd == "task-cancel":
        return f"task {data.get('id')}: {data.get('state')} ({_text(data.get('reason'))})"
    if cmd == "asks":
        return render_asks(_list(data.get("questions")), now=time.time())
    if cmd == "answer":
        question = data.get("question")
        q = question if isinstance(question, dict) else {}
        return humanize.printable(
            f"question {q.get('id')} of {q.get('process')}: answered "
            f"{data.get('answer')!r} by {data.get('by')}"
        )
    if cmd == "results":
        return render_results(_list(data.get("results")))
    return _render_actions(data)


_TASK_HEAD = ("ID", "PROGRAM", "STATE", "TRIES", "AGE", "AUTHOR", "TEXT")
_TASK_TEXT_CHARS = 40


def render_tasks(report: Mapping[str, object], *, now: float | None = None) -> str:
    """The ``tasks`` table: one row per task, newest first; the text cut short."""
    at = time.time() if now is None else now
    rows: list[tuple[str, ...]] = [_TASK_HEAD]
    for item in _list(report.get("tasks")):
        task = item if isinstance(item, dict) else {}
        text = " ".join(_text(task.get("text")).split())
        if len(text) > _TASK_TEXT_CHARS:
            text = text[: _TASK_TEXT_CHARS - 3] + "..."
        rows.append(
            (
                _opt(task.get("id")),
                _text(task.get("program")),
                _text(task.get("state")),
                _opt(task.get("attempts")),
                humanize.duration(at - _number(task.get("created_at"), at)),
                _text(task.get("author")),
                text,
            )
        )
    if len(rows) == 1:
        return "no tasks"
    return "\n".join(_aligned(rows))


def _text(value: object) -> str:
    """A string from the wire, safe to print."""
    return humanize.printable(str(value)) if value is not None else "-"


def render_status(
    report: Mapping[str, object], *, now: float | None = None, width: int | None = None
) -> str:
    """The ``status`` table: one aligned row per process.

    The INFO column says why a process that is not RUNNING is in its state:
    its last spawn error, or the reason of its last state change; a pending
    retry or restart counts down from ``now`` ("next try in 4s").

    A node with a Discord bridge adds its health below the table.

    Args:
        report: a ``StatusReport`` as sent over the socket.
        now: wall-clock time for uptimes (default: the report's own time).
        width: fit the table in this many columns (see :func:`_fit`); by
            default every column is shown and INFO stays on its row.
    """
    at = _number(report.get("at"), time.time()) if now is None else now
    rows = [_row(p if isinstance(p, dict) else {}, at) for p in _list(report.get("processes"))]
    table = _aligned([_HEAD, *rows]) if width is None else _fit(rows, width)
    bridge = health.from_wire(report.get("bridge"))
    return "\n".join(table + (health.describe(bridge, now=at) if bridge else []))


_HEAD = ("NAME", "STATE", "PID", "UPTIME", "RESTARTS", "LAST EXIT", "MEMORY", "CPU", "INFO")


def _row(info: Mapping[str, object], at: float) -> tuple[str, ...]:
    st = info.get("status")
    status = st if isinstance(st, dict) else {}
    state = str(status.get("state", "?"))
    started = status.get("started_at")
    up = state in _ALIVE and isinstance(started, int | float)
    return (
        str(status.get("process", "?")),
        state,
        _opt(status.get("pid")),
        humanize.duration(at - float(started)) if up and isinstance(started, int | float) else "-",
        _opt(status.get("restarts")),
        _last_exit(status),
        humanize.memory(info.get("rss_bytes")),
        humanize.cpu(info.get("cpu_percent")),
        _worker_info(status) if state == "RUNNING" else _why(status, at),
    )


def _worker_info(status: Mapping[str, object]) -> str:
    """INFO of a running process: its open question, else its progress, else ""."""
    question, progress = status.get("question"), status.get("progress")
    if isinstance(question, dict):
        return humanize.printable(f"asks #{question.get('id')}: {question.get('text')}")
    if isinstance(progress, dict):
        bar = humanize.progress_bar(_number(progress.get("fraction"), 0.0))
        return humanize.printable(f"{bar} {progress.get('text') or ''}".rstrip())
    return ""


def render_asks(questions: Sequence[object], *, now: float) -> str:
    """The open questions: id, process, age, timeout, the question and its choices."""
    if not questions:
        return "no open questions"
    rows = [("ID", "PROCESS", "ASKED", "TIMEOUT", "QUESTION")]
    for item in questions:
        q = item if isinstance(item, dict) else {}
        choices = q.get("choices")
        offered = f" [{'/'.join(map(str, choices))}]" if isinstance(choices, list) else " [text]"
        default = f" (default {q['default']})" if q.get("default") is not None else ""
        timeout_at = q.get("timeout_at")
        left = (
            f"in {humanize.duration(max(0.0, timeout_at - now))}"
            if isinstance(timeout_at, int | float)
            else "never"
        )
        asked = _number(q.get("asked_at"), now)
        rows.append(
            (
                str(q.get("id")),
                str(q.get("process")),
                f"{humanize.duration(max(0.0, now - asked))} ago",
                left,
                humanize.printable(f"{q.get('text')}{offered}{default}"),
            )
        )
    hint = "answer with: dsup ctl answer ID CHOICE (or ID 'free text')"
    return "\n".join([*_aligned(rows), hint])


def render_results(results: Sequence[object]) -> str:
    """Results, newest first: id, time, process and text, then data and files indented."""
    if not results:
        return "no results"
    out = []
    for item in results:
        r = item if isinstance(item, dict) else {}
        at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(_number(r.get("at"), 0.0)))
        text = humanize.printable(str(r.get("text") or ""))
        out.append(f"#{r.get('id')} {at} {r.get('process')}" + (f": {text}" if text else ""))
        if r.get("data"):
            out.append(f"{_INDENT}{humanize.printable(str(r.get('data')))}")
        files = _list(r.get("files"))
        if files:
            out.append(f"{_INDENT}files: {humanize.printable(', '.join(map(str, files)))}")
    return "\n".join(out)


def _aligned(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _fit(rows: list[tuple[str, ...]], width: int) -> list[str]:
    """The table in ``width`` columns: whole columns left out, INFO moved below its row.

    A long name is cut in the middle first (:func:`_short_names`). An INFO
    that does not fit on its row is printed whole on indented lines under
    it. Columns are left out whole (:func:`_columns`); no header or other
    cell is ever cut. Only a terminal narrower than 20 columns gets longer
    lines.
    """
    rows = _short_names(rows, width)
    keep, room = _columns(rows, width)
    infos = [row[-1] for row in rows]
    inline = [info if len(info) <= room else "" for info in infos]
    has_info = any(inline) and room >= len(_HEAD[-1])
    columns = [*keep, len(_HEAD) - 1] if has_info else keep
    table = _aligned(
        [
            tuple(_HEAD[i] for i in columns),
            *(
                tuple(row[i] for i in keep) + ((cell,) if has_info else ())
                for row, cell in zip(rows, inline, strict=True)
            ),
        ]
    )
    lines = table[:1]
    for line, info, cell in zip(table[1:], infos, inline, strict=True):
        lines.append(line)
        if info and not (has_info and cell):
            lines.extend(
                textwrap.wrap(
                    info,
                    max(width, len(_INDENT) + 8),
                    initial_indent=_INDENT,
                    subsequent_indent=_INDENT,
                )
            )
    return lines


def _short_names(rows: list[tuple[str, ...]], width: int) -> list[tuple[str, ...]]:
    """``rows`` with names cut in the middle (``:N`` kept) to fit NAME's width.

    NAME takes at most a third of the terminal (between 10 and 32 cells),
    and less when even NAME and STATE would not fit ``width`` otherwise; a
    long name never pushes the other columns out.
    """
    state = max(len(r[1]) for r in [_HEAD, *rows])
    most = max(_NAME_LEAST, min(_NAME_MOST, width // 3, width - state - 2))
    return [(humanize.short_name(row[0], most), *row[1:]) for row in rows]


def _columns(rows: list[tuple[str, ...]], width: int) -> tuple[list[int], int]:
    """The columns (INFO aside) that fit ``width``, and the room left for INFO.

    MEMORY, then CPU, are left out when that puts more INFOs on their rows,
    and so are they, then RESTARTS, UPTIME, LAST EXIT and PID, while the
    table would be wider than ``width`` even without INFO.
    """
    widths = [max(len(r[i]) for r in [_HEAD, *rows]) for i in range(len(_HEAD))]
    best: tuple[int, list[int], int] | None = None
    for dropped in range(len(_DROPPABLE) + 1):
        gone = {_HEAD.index(name) for name in _DROPPABLE[:dropped]}
        keep = [i for i in range(len(_HEAD) - 1) if i not in gone]
        for name in (*_DROPPABLE, *_LAST_RESORT):
            if sum(widths[i] + 2 for i in keep) - 2 <= width:
                break
            if _HEAD.index(name) in keep:
                keep.remove(_HEAD.index(name))
        room = width - sum(widths[i] + 2 for i in keep)
        fits = sum(0 < len(row[-1]) <= room for row in rows) if room >= len(_HEAD[-1]) else 0
        if best is None or fits > best[0]:
            best = (fits, keep, room)
    assert best is not None
    return best[1], best[2]


def _why(status: Mapping[str, object], at: float) -> str:
    """INFO: the last spawn error or the state's reason, with a live countdown."""
    error, reason = status.get("last_error"), status.get("reason")
    text = error if isinstance(error, str) and error else reason
    text = text if isinstance(text, str) else ""
    next_start = status.get("next_start_at")
    if isinstance(next_start, int | float):
        text = _countdown(text, next_start - at)
    return humanize.printable(text)


# The delay a state's reason gave when it was entered: "next try in 17.77 s".
_DELAY = re.compile(r"\bin \d+(?:\.\d+)? s\b")


def _countdown(text: str, left: float) -> str:
    """``text`` with its delay replaced by the time ``left`` now ("in 4s", "now")."""
    when = f"in {humanize.duration(math.ceil(left))}" if left > 0 else "now"
    counted, found = _DELAY.subn(when, text, count=1)
    if found:
        return counted
    return f"{text}; next start {when}" if text else f"next start {when}"


def _render_actions(data: Mapping[str, object]) -> str:
    lines = []
    for proc in _list(data.get("processes")):
        p = proc if isinstance(proc, dict) else {}
        message = p.get("message")
        lines.append(
            humanize.outcome(
                str(p.get("process")),
                str(p.get("outcome")),
                str(p.get("state")),
                p.get("pid"),
                message if isinstance(message, str) else "",
            )
        )
    return "\n".join(lines)


def render_logs(logs: Sequence[object], *, many: bool) -> str:
    """Log lines for people: control characters and escapes made harmless.

    A worker's escape sequences could otherwise retitle the terminal, move its
    cursor or write the clipboard; colours are kept on a terminal only.
    """
    color = sys.stdout.isatty()
    out = []
    for item in logs:
        log = item if isinstance(item, dict) else {}
        prefix = f"{log.get('process')} | " if many else ""
        dropped = log.get("dropped")
        if isinstance(dropped, int) and dropped:
            lost = humanize.plural(dropped, "line")
            out.append(f"{prefix}[{lost} dropped: this client fell behind]")
        out.extend(
            f"{prefix}{humanize.printable(str(line), keep_color=color)}"
            for line in _list(log.get("lines"))
        )
    return "\n".join(out)


def _list(value: object) -> list[object]:
    return list(value) if isinstance(value, list) else []


def _number(value: object, default: float) -> float:
    return float(value) if isinstance(value, int | float) else default


def _opt(value: object) -> str:
    return "-" if value is None else str(value)


def _last_exit(status: Mapping[str, object]) -> str:
    code, sig = status.get("last_exit_code"), status.get("last_exit_signal")
    if isinstance(sig, int):
        return signals.name(sig)
    return f"exit {code}" if isinstance(code, int) else "-"
