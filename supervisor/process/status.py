"""The records of a process slot that other modules import.

This module owns :class:`SlotContext` (what every slot of a fleet shares) and
:class:`ProcessStatus` (a snapshot of one slot, for status views and command
results). It does not own the slot itself or its commands (``child``), its
state machine (``slot_state``), nor the states (``events``). ``child``
re-exports both names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from supervisor.events import Event, ProcessState, Progress, Question
    from supervisor.output.pump import LineConsumer
    from supervisor.process.questions import QuestionDesk
    from supervisor.reaper.reaper import Reaper
    from supervisor.state.ledger import Ledger
    from supervisor.state.worker_store import WorkerStore


@dataclass(frozen=True, slots=True, kw_only=True)
class SlotContext:
    """What every slot of a fleet shares.

    Attributes:
        node: the node name (``DSUP_NODE``).
        instance_id: this state_dir's instance id (``DSUP_INSTANCE``).
        log_dir: where ``program-index.out.log`` / ``.err.log`` go.
        ledger: the run history (written before a run is reported STARTING).
        reaper: ends process trees and leftovers.
        emit: takes every ``StateChanged``; must not block.
        lines: takes framed output lines.
        clock: monotonic seconds for run durations, on anyio's time line.
        desk: the node's open questions; with ``store``, gives each run a
            channel to dsup (``DSUP_FD``); without, runs get none.
        store: where workers' results and questions are recorded.
    """

    node: str
    instance_id: str
    log_dir: Path
    ledger: Ledger
    reaper: Reaper
    emit: Callable[[Event], None]
    lines: LineConsumer
    clock: Callable[[], float] = anyio.current_time
    desk: QuestionDesk | None = None
    store: WorkerStore | None = None


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
