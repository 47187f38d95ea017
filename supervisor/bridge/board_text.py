"""What the status board says: the node, the bridge's health, counts, a line per process.

Pure text that never moves with time alone (uptimes are Discord timestamps), so an idle fleet
costs no edit; it always fits the embed, summarising healthy processes first.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from supervisor import humanize, signals
from supervisor.events import ProcessState

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from supervisor.commands.health import BridgeHealth
    from supervisor.process.status import ProcessStatus

MARKER = "dsup board"
"""Starts the board's footer, which names the node: how dsup finds its own board."""
BODY_CHARS = 4000
"""Room for the body in an embed description (4,096), with the "updated" line."""
UPDATED = "\n\nupdated <t:"
"""Starts the line under the body that says when the board was last edited."""

# Worst first: the board lists processes in this order.
_ORDER = (
    ProcessState.FATAL,
    ProcessState.BACKOFF,
    ProcessState.EXITED,
    ProcessState.STARTING,
    ProcessState.STOPPING,
    ProcessState.STOPPED,
    ProcessState.RUNNING,
)
UNHEALTHY = frozenset({ProcessState.FATAL, ProcessState.BACKOFF, ProcessState.EXITED})
EMOJI = {
    ProcessState.FATAL: "🔴",
    ProcessState.BACKOFF: "🟠",
    ProcessState.EXITED: "🟤",
    ProcessState.STARTING: "🟡",
    ProcessState.STOPPING: "🟡",
    ProcessState.STOPPED: "⚪",
    ProcessState.RUNNING: "🟢",
}
_HEALTH_EMOJI = {"connected": "🟢", "connecting": "🟡", "reconnecting": "🟠", "stopped": "🔴"}


@dataclass(frozen=True, slots=True, kw_only=True)
class BoardText:
    """The board's texts: ``body`` goes in the embed description.

    ``level`` is ``bad`` with a FATAL process, ``warn`` with another unhealthy
    one, else ``ok`` (the embed's colour).
    """

    title: str
    body: str
    footer: str
    level: Literal["ok", "warn", "bad"]


def render_board(
    statuses: Sequence[ProcessStatus],
    *,
    node: str,
    health: BridgeHealth,
    stopped_at: float | None = None,
    budget: int = BODY_CHARS,
    tasks: Mapping[str, Mapping[str, int]] | None = None,
) -> BoardText:
    """The board of ``node`` for these process states, fitting ``budget`` characters.

    ``tasks`` gives the queued and running tasks per program (a line when any).

    With ``stopped_at`` (wall-clock time), the board says that dsup stopped then
    and is no longer kept up to date, instead of the bridge's health.
    """
    ordered = sorted(statuses, key=lambda s: _ORDER.index(s.state))
    state_line = (
        _health_line(health)
        if stopped_at is None
        else f"⚫ dsup stopped <t:{int(stopped_at)}:R>: no updates until it runs again"
    )
    problems = [f"⚠️ {p[:200]}" for p in health.problems[:5]] if stopped_at is None else []
    head = [_counts(node, ordered), state_line, *problems, *_task_line(tasks or {}), ""]
    bad = [s for s in ordered if s.state in UNHEALTHY]
    good = [s for s in ordered if s.state not in UNHEALTHY]
    tries: tuple[Callable[[], list[str]], ...] = (
        lambda: [_line(s) for s in ordered],
        lambda: [_line(s) for s in bad] + _summaries(good),
        lambda: [_short(s) for s in bad] + _summaries(good),
    )
    for lines in tries:
        body = "\n".join(head + lines())
        if len(body) <= budget:
            break
    else:
        body = _squeezed(head, bad, good, budget)
    level: Literal["ok", "warn", "bad"] = (
        "bad" if any(s.state == ProcessState.FATAL for s in bad) else "warn" if bad else "ok"
    )
    return BoardText(
        title=f"dsup · {node}", body=body, footer=f"{MARKER} · node {node}", level=level
    )


def description(text: BoardText, *, at: float) -> str:
    """The embed's description: the body, then when it was edited (``at``, wall time)."""
    return f"{text.body}{UPDATED}{int(at)}:R>"


def _squeezed(
    head: list[str], bad: list[ProcessStatus], good: list[ProcessStatus], budget: int
) -> str:
    """As many short unhealthy lines as fit, the rest summarised (binary search on how many)."""

    def body(kept: int) -> str:
        return "\n".join(head + [_short(s) for s in bad[:kept]] + _summaries(bad[kept:] + good))

    low, high = 0, len(bad)
    while low < high:
        mid = (low + high + 1) // 2
        if len(body(mid)) <= budget:
            low = mid
        else:
            high = mid - 1
    return body(low)[:budget]  # a fleet of thousands of programs: the cut is the last resort


def _counts(node: str, ordered: Sequence[ProcessStatus]) -> str:
    counts = [
        f"{EMOJI[state]} {len(list(group))} {state.value}"
        for state, group in itertools.groupby(ordered, key=lambda s: s.state)
    ]
    total = humanize.plural(len(ordered), "process")
    return f"**{node}** · {total}" + (": " + " · ".join(counts) if counts else "")


def _task_line(tasks: Mapping[str, Mapping[str, int]]) -> list[str]:
    """``📋 tasks: `summarize` 3 queued, 1 running · ...`` (no line when none wait or run)."""
    parts = [
        f"`{program}` "
        + ", ".join(f"{n} {state}" for state in ("queued", "running") if (n := by.get(state)))
        for program, by in tasks.items()
        if by.get("queued") or by.get("running")
    ]
    return ["📋 tasks: " + " · ".join(parts)] if parts else []


def _health_line(health: BridgeHealth) -> str:
    emoji = _HEALTH_EMOJI.get(health.state, "⚪")
    since = f"<t:{int(health.since)}:R>"
    if health.state == "connected":
        return f"{emoji} Discord: connected as {health.user} since {since}"
    error = f": {health.last_error[:200]}" if health.last_error else ""
    return f"{emoji} Discord: {health.state} since {since}{error}"


def _line(st: ProcessStatus) -> str:
    since = st.started_at if st.state == ProcessState.RUNNING and st.started_at else st.state_since
    parts = [f"{EMOJI[st.state]} {st.state.value} `{st.process}`"]
    if st.pid is not None:
        parts.append(f"pid {st.pid}")
    parts.append(f"since <t:{int(since)}:R>")
    if st.restarts:
        parts.append(humanize.plural(st.restarts, "restart"))
    last = _last_exit(st)
    if last:
        parts.append(f"last exit {last}")
    return " · ".join(parts)


def _short(st: ProcessStatus) -> str:
    last = _last_exit(st)
    return f"{EMOJI[st.state]} `{st.process}` {st.state.value}" + (f" ({last})" if last else "")


def _summaries(statuses: Sequence[ProcessStatus]) -> list[str]:
    """One line per program and state (``🟢 `scraper` x 40 RUNNING``); one process alone
    keeps its name."""
    groups: dict[tuple[ProcessState, str], list[ProcessStatus]] = {}
    for st in statuses:
        groups.setdefault((st.state, st.program), []).append(st)
    ranked = sorted(groups.items(), key=lambda item: _ORDER.index(item[0][0]))
    return [
        _short(members[0])
        if len(members) == 1
        else f"{EMOJI[state]} `{program}` x {len(members)} {state.value}"
        for (state, program), members in ranked
    ]


def _last_exit(st: ProcessStatus) -> str:
    if st.last_exit_signal is not None:
        return signals.name(st.last_exit_signal)
    if st.last_exit_code is not None:
        return f"code {st.last_exit_code}"
    return ""
