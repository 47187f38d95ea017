"""What one slot shows: a :class:`ProcessStatus` snapshot.

Status views and command results carry these immutable snapshots, so they can
cross tasks and front ends without reaching into a live ``Slot``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from supervisor.events import ProcessState, Progress, Question


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessStatus:
    """A snapshot of one slot, for status views and command results.

    Attributes:
        process: ``program:index``.
        program: the program name.
        index: the index within the program.
        state: the current state.
        pid: the main process while it is alive (unreaped), else None.
        run_id: the current run while it or its tree is being handled, else None.
        started_at: wall time the current run was spawned, or None.
        state_since: wall time of the last state change.
        restarts: runs the slot started by itself, by the restart policy or as
            a BACKOFF retry, since dsup began supervising it; a start or
            restart by an operator is not counted, nor a spawn that failed.
        last_exit_code: exit status of the last ended run, if it called exit().
        last_exit_signal: signal that killed the last ended run, if any.
        last_error: the last spawn error, "" after a successful spawn.
        reason: why the slot entered its current state, the ``reason`` of the
            last ``StateChanged`` ("exited too quickly (exit code 1); gave up
            after 4 failed starts in a row"); "" before the first change.
        next_start_at: wall time the slot starts its next run by itself (a
            BACKOFF retry or a restart by policy), while it waits for it;
            else None.
        progress: the current run's latest progress (``worker_sdk.progress``), if any.
        question: the current run's oldest open question (``worker_sdk.ask``), if any.
    """

    process: str
    program: str
    index: int
    state: ProcessState
    pid: int | None
    run_id: str | None
    started_at: float | None
    state_since: float
    restarts: int
    last_exit_code: int | None
    last_exit_signal: int | None
    last_error: str
    reason: str = ""
    next_start_at: float | None = None
    progress: Progress | None = None
    question: Question | None = None
