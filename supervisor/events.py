"""The process states, and the events slots emit for the fleet to fan out to its sinks.

Plain frozen records, so the console, the ledger and the bridge can each take them their way.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal, Protocol

Stream = Literal["stdout", "stderr"]


class ProcessState(enum.Enum):
    """Life-cycle states of one process, with supervisord's meanings."""

    STOPPED = "STOPPED"  # never started, or stopped by an operator
    STARTING = "STARTING"  # spawned, not yet up for start_seconds
    RUNNING = "RUNNING"  # up for at least start_seconds
    BACKOFF = "BACKOFF"  # exited too early; waiting before the next try
    STOPPING = "STOPPING"  # stop signal sent, waiting for the tree to end
    EXITED = "EXITED"  # exited on its own, not a failed start; maybe restarted by policy
    FATAL = "FATAL"  # too many failed starts; stays down until started by hand

    @property
    def is_alive(self) -> bool:
        """True while a process of this slot may exist (spawned and not reaped)."""
        return self in _ALIVE


_ALIVE = frozenset({ProcessState.STARTING, ProcessState.RUNNING, ProcessState.STOPPING})


@dataclass(frozen=True, slots=True, kw_only=True)
class StateChanged:
    """A process moved from one state to another.

    Attributes:
        process: process name, ``program:index``.
        program: program name.
        old: the state before.
        new: the state after.
        pid: the pid of the run concerned, if any.
        run_id: the run concerned, if any.
        exit_code: exit status when the run ended with ``exit()``.
        exit_signal: signal number when the run was killed by a signal.
        reason: a short human explanation ("exited too quickly", "stopped by alice").
        at: wall-clock time (display only).
    """

    process: str
    program: str
    old: ProcessState
    new: ProcessState
    pid: int | None = None
    run_id: str | None = None
    exit_code: int | None = None
    exit_signal: int | None = None
    reason: str = ""
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputLines:
    """Lines a process wrote, framed in bulk for consumers that need lines.

    Attributes:
        process: process name, ``program:index``.
        stream: ``stdout`` or ``stderr``.
        lines: decoded lines without their newline (invalid UTF-8 replaced; a
            line longer than ``max_line_bytes`` arrives as several pieces).
        dropped: lines this consumer missed just before these, because it was slow.
    """

    process: str
    stream: Stream
    lines: tuple[str, ...]
    dropped: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class OrphansCleaned:
    """The reaper ended processes left behind by an earlier run or a dead worker.

    Attributes:
        pids: the pids ended.
        reason: ``startup`` (left by a previous dsup) or ``sweep`` (periodic).
    """

    pids: tuple[int, ...]
    reason: str


Event = StateChanged | OutputLines | OrphansCleaned


class EventSink(Protocol):
    """Something that takes events without ever blocking the producer."""

    def deliver(self, event: Event) -> None:
        """Take one event; must not block and must not raise for a slow consumer."""
