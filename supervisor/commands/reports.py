"""The typed results of the command surface: what status, tail and the actions return.

Frozen records that every front end renders its own way (JSON for ``ctl``, messages for
Discord).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from collections.abc import AsyncIterable
    from pathlib import Path

    from supervisor.commands.access import Command
    from supervisor.commands.health import BridgeHealth
    from supervisor.events import ProcessState, Question, Stream, WorkerResult
    from supervisor.process.status import ProcessStatus

MAX_TAIL_LINES = 1000
"""The most lines one ``tail`` returns per process (the log file has the rest)."""

ProcessOutcome = Literal["ok", "unchanged", "skipped", "failed"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessInfo:
    """One row of ``status``: the process's state and its resource use.

    Attributes:
        status: the state of the process slot.
        rss_bytes: resident memory (RSS) summed over the tree, a shared page
            once per process that maps it; None when not running.
        cpu_percent: CPU use of the tree (100 = one core), None when not running.
        nprocs: processes in the tree, None when not running.
    """

    status: ProcessStatus
    rss_bytes: int | None = None
    cpu_percent: float | None = None
    nprocs: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusReport:
    """The answer to ``status``.

    Attributes:
        node: the node name.
        at: wall-clock time of the snapshot (for uptimes; display only).
        processes: one row per process, in config order.
        bridge: the Discord bridge's health, None on a node without one.
    """

    node: str
    at: float
    processes: tuple[ProcessInfo, ...]
    bridge: BridgeHealth | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessResult:
    """What one command did to one process.

    Attributes:
        process: process name.
        outcome: ``ok``, ``unchanged`` (already as asked, e.g. stopping a
            stopped process), ``skipped`` (a ``signal`` to a process that is
            not running, while others of the target got it) or ``failed``.
        state: the state after the command.
        pid: the pid after the command, if running.
        message: why it failed, was unchanged or skipped ("" when ok).
    """

    process: str
    outcome: ProcessOutcome
    state: ProcessState
    pid: int | None = None
    message: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionReport:
    """The answer to ``start``, ``stop``, ``restart`` and ``signal``."""

    command: Command
    target: str
    processes: tuple[ProcessResult, ...]

    @property
    def is_ok(self) -> bool:
        """True when no process failed."""
        return all(p.outcome != "failed" for p in self.processes)


@dataclass(frozen=True, slots=True, kw_only=True)
class LogLines:
    """Lines of one process's log file, oldest first.

    Attributes:
        process: process name.
        stream: which log: ``stdout`` or ``stderr``.
        lines: the lines, without newlines.
        dropped: lines missed just before these by a follower too slow for them.
        capped: more lines were asked than ``tail`` gives (MAX_TAIL_LINES)
            and the log had more than that.
    """

    process: str
    stream: Stream
    lines: tuple[str, ...]
    dropped: int = 0
    capped: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class LogFollow:
    """An open ``tail -f``: the processes followed and their lines as they come.

    Attributes:
        processes: the names of the processes followed.
        lines: iterate it for :class:`LogLines`; it ends only with the follow.
            The command surface gives a ``FollowBuffer`` (its ``buffered_bytes`` says
            how much waits for the consumer).
    """

    processes: tuple[str, ...]
    lines: AsyncIterable[LogLines]


@dataclass(frozen=True, slots=True, kw_only=True)
class TailReport:
    """The answer to ``tail``: the last lines of each process named."""

    logs: tuple[LogLines, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ShutdownReport:
    """The answer to ``shutdown``: the node is stopping every process.

    Attributes:
        node: the node name.
        pid: the pid of the dsup shutting down.
        wait_seconds: the longest the node should take to stop every process
            and exit (from the programs' stop timeouts); a client waiting
            for the exit can give up after it.
    """

    node: str
    pid: int
    wait_seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class LogFile:
    """Where one process's current log file is (``logs``: sent whole, not as lines).

    Attributes:
        process: process name.
        stream: which log: ``stdout`` or ``stderr``.
        path: the current file (older parts are rotated beside it as ``.1``, ``.2``...).
    """

    process: str
    stream: Stream
    path: Path


@dataclass(frozen=True, slots=True, kw_only=True)
class LogFilesReport:
    """The answer to ``logs``: the log file of each process named."""

    files: tuple[LogFile, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class DiscordSyncReport:
    """The answer to ``discord-sync``: the slash commands registered in the guild.

    Attributes:
        guild_id: the guild the commands were registered in.
        commands: their names.
    """

    guild_id: int
    commands: tuple[str, ...]


MAX_RESULTS = 100
"""The most results one ``results`` returns (the ledger keeps more)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AsksReport:
    """The answer to ``asks``: every open question, oldest first."""

    questions: tuple[Question, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class AnswerReport:
    """The answer to ``answer``: the question, the answer the worker got, and who gave it."""

    question: Question
    answer: str
    by: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ResultsReport:
    """The answer to ``results``: the latest results of the processes named, newest first."""

    results: tuple[WorkerResult, ...]
