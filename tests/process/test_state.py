"""Tests of a slot's state machine alone: states, counters, last exit and StateChanged events.

Each run is a real process that has already exited and been reaped, so the state machine
sees what a slot hands it, and no timing is involved: ``now`` is given.
"""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from supervisor.config.schema import ProgramSpec, RestartPolicy
from supervisor.errors import SpawnError
from supervisor.events import ProcessState, StateChanged
from supervisor.process.run import Run
from supervisor.process.state import SlotState
from supervisor.state.records import ProcIdent

if TYPE_CHECKING:
    from collections.abc import Iterator

    from supervisor.events import Event

S = ProcessState
SPEC = ProgramSpec(name="w", command=("true",), cwd=Path("/"), start_seconds=1.0, start_retries=3)


class Machine:
    """A SlotState with what it emitted and the states ``on_change`` saw, in order."""

    def __init__(self, spec: ProgramSpec = SPEC) -> None:
        self.events: list[Event] = []
        self.seen: list[tuple[ProcessState, int]] = []  # (state, events emitted before it)
        self.state = SlotState(
            spec, process="w:0", index=0, emit=self.events.append, on_change=self._changed
        )

    def _changed(self, new: ProcessState) -> None:
        self.seen.append((new, len(self.events)))

    def states(self) -> list[ProcessState]:
        return [e.new for e in self.events if isinstance(e, StateChanged)]


@pytest.fixture
def machine() -> Machine:
    return Machine()


@pytest.fixture
def ended() -> Iterator[list[subprocess.Popen[bytes]]]:
    """The processes the runs of a test stand for; each is reaped before it is used."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        proc.wait()


def _run(
    procs: list[subprocess.Popen[bytes]], *, code: int = 0, killed_by: int = 0, at: float = 100.0
) -> Run:
    """A run started at monotonic ``at`` whose process exited with ``code`` (or was killed
    by signal ``killed_by``), and was reaped."""
    how = f"os.kill(os.getpid(), {killed_by})" if killed_by else f"raise SystemExit({code})"
    proc = subprocess.Popen([sys.executable, "-c", f"import os; {how}"])
    procs.append(proc)
    proc.wait()
    return Run(
        run_id=f"run-{len(procs)}",
        process="w:0",
        program="w",
        popen=proc,
        ident=ProcIdent(proc.pid, 0.0),
        started_at=at,
        started_wall=1_000.0 + at,
        fds=(),
        logs=(),
        pidfd=None,
    )


def _reaped(run: Run) -> Run:
    """Record the reaped exit as the run's exit watcher does."""
    code = run.popen.returncode
    run.exit_code, run.exit_signal = (code, None) if code >= 0 else (None, -code)
    run.exited.set()
    return run


def test_state_starts_stopped_with_an_empty_history(machine: Machine) -> None:
    st = machine.state.status()
    assert (st.process, st.program, st.index, st.state) == ("w:0", "w", 0, S.STOPPED)
    assert (st.pid, st.run_id, st.started_at, st.next_start_at) == (None, None, None, None)
    assert (st.restarts, st.last_exit_code, st.last_exit_signal, st.last_error) == (
        0,
        None,
        None,
        "",
    )
    assert machine.events == []
    assert (machine.state.spec, machine.state.run) == (SPEC, None)


def test_state_enter_shows_the_state_before_it_emits_the_change(
    machine: Machine, ended: list[subprocess.Popen[bytes]]
) -> None:
    run = _run(ended)
    machine.state.spawned(run, by_policy=False)
    machine.state.enter(S.STARTING, run=run, reason="started by alice")
    assert machine.seen == [(S.STARTING, 0)]  # on_change ran before the event went out
    (change,) = machine.events
    assert isinstance(change, StateChanged)
    assert (change.process, change.program, change.old, change.new) == (
        "w:0",
        "w",
        S.STOPPED,
        S.STARTING,
    )
    assert (change.run_id, change.reason) == (run.run_id, "started by alice")
    st = machine.state.status()
    assert (st.state, st.reason, st.run_id, st.started_at) == (
        S.STARTING,
        "started by alice",
        run.run_id,
        1_100.0,
    )
    assert st.state_since == change.at


def test_state_went_up_enters_running(
    machine: Machine, ended: list[subprocess.Popen[bytes]]
) -> None:
    run = _run(ended)
    machine.state.spawned(run, by_policy=False)
    machine.state.enter(S.STARTING, run=run, reason="start")
    machine.state.went_up(run)
    assert machine.states() == [S.STARTING, S.RUNNING]
    assert machine.state.status().reason == "up for 1 s"


def test_state_counts_only_the_runs_it_started_by_itself(
    machine: Machine, ended: list[subprocess.Popen[bytes]]
) -> None:
    machine.state.spawned(_run(ended), by_policy=False)  # an operator's start
    machine.state.spawned(_run(ended), by_policy=True)  # a restart by policy
    machine.state.spawned(_run(ended), by_policy=True)  # a BACKOFF retry
    assert machine.state.status().restarts == 2


def test_state_short_failing_runs_back_off_then_turn_fatal(
    machine: Machine, ended: list[subprocess.Popen[bytes]]
) -> None:
    decisions = []
    for attempt in range(SPEC.start_retries):
        run = _run(ended, code=3, at=100.0 + 10 * attempt)
        machine.state.spawned(run, by_policy=attempt > 0)
        machine.state.enter(S.STARTING, run=run, reason="start")
        decisions.append(machine.state.exited(_reaped(run), now=run.started_at + 0.1))
    assert [d.state for d in decisions] == [S.BACKOFF, S.BACKOFF, S.FATAL]
    assert [d.restart for d in decisions] == [True, True, False]
    st = machine.state.status()
    assert (st.state, st.last_exit_code, st.last_exit_signal, st.restarts) == (S.FATAL, 3, None, 2)
    assert machine.states() == [S.STARTING, S.BACKOFF] * 2 + [S.STARTING, S.FATAL]


def test_state_reset_failures_gives_an_operator_start_every_retry_again(
    machine: Machine, ended: list[subprocess.Popen[bytes]]
) -> None:
    for attempt in range(2):
        run = _run(ended, code=1, at=100.0 + attempt)
        machine.state.spawned(run, by_policy=False)
        machine.state.exited(_reaped(run), now=run.started_at)
    machine.state.reset_failures()
    run = _run(ended, code=1, at=200.0)
    machine.state.spawned(run, by_policy=False)
    assert machine.state.exited(_reaped(run), now=200.0).state is S.BACKOFF  # not FATAL


def test_state_a_run_seen_ending_while_starting_was_up_first(
    ended: list[subprocess.Popen[bytes]],
) -> None:
    """A run up for start_seconds whose exit is seen before its RUNNING shows both."""
    machine = Machine(dataclasses.replace(SPEC, restart=RestartPolicy.NEVER))
    run = _run(ended, code=0)
    machine.state.spawned(run, by_policy=False)
    machine.state.enter(S.STARTING, run=run, reason="start")
    decision = machine.state.exited(_reaped(run), now=run.started_at + 5.0)
    assert (decision.state, decision.restart) == (S.EXITED, False)
    assert machine.states() == [S.STARTING, S.RUNNING, S.EXITED]
    assert machine.state.status().last_exit_code == 0


def test_state_records_a_death_by_signal_as_the_last_exit(
    machine: Machine, ended: list[subprocess.Popen[bytes]]
) -> None:
    run = _run(ended, killed_by=signal.SIGKILL)
    machine.state.spawned(run, by_policy=False)
    machine.state.exited(_reaped(run), now=run.started_at + 60.0)
    st = machine.state.status()
    assert (st.last_exit_code, st.last_exit_signal) == (None, signal.SIGKILL)
    assert st.pid is None  # reaped: no pid to show


def test_state_failed_spawn_keeps_the_error_until_the_next_spawn(
    machine: Machine, ended: list[subprocess.Popen[bytes]]
) -> None:
    decision = machine.state.failed_spawn(SpawnError("w:0", ["/nope"], "no such file: /nope"))
    assert decision.state is S.BACKOFF
    st = machine.state.status()
    assert (st.state, st.last_error) == (S.BACKOFF, "no such file: /nope")
    machine.state.spawned(_run(ended), by_policy=True)
    assert machine.state.status().last_error == ""


def test_state_start_pending_shows_when_the_next_start_is_due(machine: Machine) -> None:
    machine.state.start_pending(1_234.5)
    assert (machine.state.next_start, machine.state.status().next_start_at) == (1_234.5, 1_234.5)
    machine.state.start_pending(None)
    assert machine.state.status().next_start_at is None


def test_state_run_handled_forgets_the_run(
    machine: Machine, ended: list[subprocess.Popen[bytes]]
) -> None:
    run = _run(ended)
    machine.state.spawned(run, by_policy=False)
    assert machine.state.status().run_id == run.run_id
    machine.state.run_handled()
    assert (machine.state.run, machine.state.status().run_id) == (None, None)


def test_state_reload_takes_the_new_spec(machine: Machine) -> None:
    reloaded = dataclasses.replace(SPEC, start_seconds=7.0)
    machine.state.reload(reloaded)
    assert machine.state.spec is reloaded
    assert machine.events == []  # a reload is no state change
