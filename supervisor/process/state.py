"""A slot's state machine: its state, counters and last exit, and a ``StateChanged`` per change.

Synchronous, and the only code that changes a slot's state, so each change is emitted once.
"""

from __future__ import annotations

import logging
import random
import time
from typing import TYPE_CHECKING

from supervisor.events import ProcessState, StateChanged
from supervisor.process import policy
from supervisor.process.status import ProcessStatus

if TYPE_CHECKING:
    from collections.abc import Callable

    from supervisor.config.schema import ProgramSpec
    from supervisor.errors import SpawnError
    from supervisor.events import Event
    from supervisor.process.run import Run

logger = logging.getLogger(__name__)


_JITTER = random.Random()
"""The source of every slot's backoff jitter: one for all (a Random holds 2.5 KB of state)."""


class SlotState:
    """The state of one slot ``program:index`` and its changes.

    Args:
        spec: the program.
        process: ``program:index``.
        index: 0 .. numprocs-1.
        emit: takes every ``StateChanged``; must not block.
        on_change: called with the new state on every change, once the slot
            shows it and before its ``StateChanged`` is emitted.

    Only its own methods change it; the slot reads ``spec``, ``state``, ``run``
    and ``next_start``.
    """

    __slots__ = (
        "_emit",
        "_failures",
        "_index",
        "_last_error",
        "_last_exit",
        "_next_start",
        "_on_change",
        "_process",
        "_reason",
        "_restarts",
        "_run",
        "_short_runs",
        "_since",
        "_spec",
        "_state",
    )

    def __init__(
        self,
        spec: ProgramSpec,
        *,
        process: str,
        index: int,
        emit: Callable[[Event], None],
        on_change: Callable[[ProcessState], None],
    ) -> None:
        self._spec = spec
        self._state = ProcessState.STOPPED
        self._run: Run | None = None
        self._next_start: float | None = None
        self._process = process
        self._index = index
        self._emit = emit
        self._on_change = on_change
        self._since = time.time()
        self._reason = ""
        self._restarts = 0
        self._failures = 0
        self._short_runs = 0
        self._last_exit: tuple[int | None, int | None] = (None, None)
        self._last_error = ""

    @property
    def spec(self) -> ProgramSpec:
        """The program, as last reloaded."""
        return self._spec

    @property
    def state(self) -> ProcessState:
        """The current state."""
        return self._state

    @property
    def run(self) -> Run | None:
        """The current run from its spawn until its tree is handled, else None."""
        return self._run

    @property
    def next_start(self) -> float | None:
        """Wall time of a pending retry or restart, else None."""
        return self._next_start

    def status(self) -> ProcessStatus:
        """Return a snapshot of the slot."""
        run = self._run
        alive = run is not None and not run.exited.is_set()
        link = run.link if run is not None else None
        return ProcessStatus(
            process=self._process,
            program=self._spec.name,
            index=self._index,
            state=self._state,
            pid=run.pid if run is not None and alive else None,
            run_id=run.run_id if run is not None else None,
            started_at=run.started_wall if run is not None and alive else None,
            state_since=self._since,
            restarts=self._restarts,
            last_exit_code=self._last_exit[0],
            last_exit_signal=self._last_exit[1],
            last_error=self._last_error,
            reason=self._reason,
            next_start_at=self._next_start,
            progress=link.progress if link is not None else None,
            question=link.open_question if link is not None else None,
        )

    def reload(self, spec: ProgramSpec) -> None:
        """Take ``spec`` as the program: the same one, as reloaded."""
        self._spec = spec

    def reset_failures(self) -> None:
        """Forget the failed starts in a row, for a start or restart by request."""
        self._failures = self._short_runs = 0

    def spawned(self, run: Run, *, by_policy: bool) -> None:
        """Take ``run`` as the current run; count it if the slot started it by itself."""
        self._run, self._last_error = run, ""
        self._restarts += by_policy

    def run_handled(self) -> None:
        """Let go of the current run: it has ended and its tree is handled."""
        self._run = None

    def start_pending(self, at: float | None) -> None:
        """A retry or restart is due at wall time ``at``; None: none is pending."""
        self._next_start = at

    def failed_spawn(self, exc: SpawnError) -> policy.Decision:
        """Apply the policy to a spawn that failed; enter its state."""
        self._last_error = exc.reason
        decision = policy.after_failed_start(
            self._spec,
            failures=self._failures,
            reason=f"cannot start: {exc.reason}",
            rng=_JITTER,
        )
        self._failures, self._short_runs = decision.failures, decision.short_runs
        self.enter(decision.state, reason=decision.reason)
        return decision

    def went_up(self, run: Run) -> None:
        """Enter RUNNING: ``run`` stayed up for ``start_seconds``."""
        self.enter(ProcessState.RUNNING, run=run, reason=f"up for {self._spec.start_seconds:g} s")

    def exited(self, run: Run, *, now: float) -> policy.Decision:
        """Apply the policy to a run that ended on its own; enter its state."""
        decision = policy.after_exit(
            self._spec,
            failures=self._failures,
            short_runs=self._short_runs,
            started_at=run.started_at,
            now=now,
            exit_code=run.exit_code,
            exit_signal=run.exit_signal,
            rng=_JITTER,
        )
        self._failures, self._short_runs = decision.failures, decision.short_runs
        if (
            decision.state is ProcessState.EXITED
            and self._state is ProcessState.STARTING
            and not policy.is_failed_start(self._spec, started_at=run.started_at, now=now)
        ):  # it was up for start_seconds, but its exit was seen first
            self.went_up(run)
        self.enter(decision.state, run=run, ended=True, reason=decision.reason)
        return decision

    def enter(
        self,
        new: ProcessState,
        *,
        reason: str,
        run: Run | None = None,
        ended: bool = False,
    ) -> None:
        """Enter ``new`` and emit a StateChanged (also when a state is re-entered).

        Args:
            new: the state entered.
            reason: why, for people.
            run: the run the change is about, if any.
            ended: ``run`` has ended; its exit becomes the slot's last exit.
        """
        old, self._state, self._since = self._state, new, time.time()
        self._reason = reason
        code = signo = None
        if ended and run is not None:
            code, signo = run.exit_code, run.exit_signal
            self._last_exit = (code, signo)
        pid = run.pid if run is not None else None
        logger.info(
            "process %s (pid %s): %s -> %s: %s", self._process, pid, old.value, new.value, reason
        )
        self._on_change(new)
        self._emit(
            StateChanged(
                process=self._process,
                program=self._spec.name,
                old=old,
                new=new,
                pid=pid,
                run_id=run.run_id if run is not None else None,
                exit_code=code,
                exit_signal=signo,
                reason=reason,
                restarts=self._restarts,
                at=self._since,
            )
        )
