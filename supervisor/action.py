"""What one operator command does to one process, and how its outcome is judged.

This module owns the per-process step of ``start``, ``stop``, ``restart`` and
``signal``: running the transition, calling it ``unchanged`` when the process
is already as asked, and explaining a failure. It does not own access checks,
audit or fan-out over a target (``commands``), nor the state machine itself
(``child``).
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

from supervisor.errors import InvalidArgument, InvalidTransition, SupervisorError
from supervisor.events import ProcessState
from supervisor.policy import describe_exit
from supervisor.reports import ProcessResult

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from supervisor.access import Actor
    from supervisor.child import ChildProcess, ProcessStatus
    from supervisor.reports import ProcessOutcome


def parse_signal(value: str | int) -> signal.Signals:
    """Turn ``TERM``, ``SIGTERM``, ``term`` or ``15`` into a signal.

    Raises:
        InvalidArgument: not a signal of this platform.
    """
    text = str(value).strip().upper()
    try:
        if text.isdigit():
            return signal.Signals(int(text))
        return signal.Signals[text if text.startswith("SIG") else f"SIG{text}"]
    except (KeyError, ValueError):
        raise InvalidArgument(
            "signal", "signal", value, "give a name like TERM, HUP, USR1 or a number"
        ) from None


async def start_one(child: ChildProcess, actor: Actor) -> ProcessResult:
    """Start ``child`` unless it is up; ``failed`` when it does not come up."""
    return await _transition(
        child, lambda: child.start(reason=f"started by {actor.name}"), wanted_alive=True
    )


async def stop_one(child: ChildProcess, actor: Actor) -> ProcessResult:
    """Stop ``child`` unless it is STOPPED already."""
    return await _transition(
        child, lambda: child.stop(reason=f"stopped by {actor.name}"), wanted_alive=False
    )


async def restart_one(child: ChildProcess, actor: Actor) -> ProcessResult:
    """Stop then start ``child``, whatever its state; ``failed`` when it does not come up."""
    return await _transition(
        child,
        lambda: child.restart(reason=f"restarted by {actor.name}"),
        wanted_alive=True,
        is_restart=True,
    )


async def _transition(
    child: ChildProcess,
    action: Callable[[], Awaitable[ProcessStatus]],
    *,
    wanted_alive: bool,
    is_restart: bool = False,
) -> ProcessResult:
    """Run a state change; ``unchanged`` when the process is already as wanted."""
    if not is_restart and _is_settled(child.status().state, wanted_alive=wanted_alive):
        st = child.status()
        return _result(st, "unchanged", f"already {st.state.value}")
    try:
        st = await action()
    except InvalidTransition as exc:
        st = child.status()
        settled = _is_settled(st.state, wanted_alive=wanted_alive)
        return _result(st, "unchanged" if settled else "failed", str(exc))
    except SupervisorError as exc:  # SpawnError and friends: this process only
        return _result(child.status(), "failed", str(exc))
    if wanted_alive and not _is_up(st.state):
        return _result(st, "failed", _why_down(st))
    return _result(st, "ok", "")


async def signal_one(child: ChildProcess, sig: signal.Signals) -> ProcessResult:
    """Send ``sig`` to ``child``; ``failed`` when it is not running."""
    try:
        child.send_signal(sig)
    except InvalidTransition as exc:
        return _result(child.status(), "failed", str(exc))
    return _result(child.status(), "ok", "")


def _is_up(state: ProcessState) -> bool:
    return state in (ProcessState.STARTING, ProcessState.RUNNING)


def _is_settled(state: ProcessState, *, wanted_alive: bool) -> bool:
    """Already where a start (up) or a stop (STOPPED) would take it."""
    return _is_up(state) if wanted_alive else state is ProcessState.STOPPED


def _why_down(st: ProcessStatus) -> str:
    if st.last_error:
        return st.last_error
    if st.last_exit_signal is None and st.last_exit_code is None:
        return "did not come up"
    return describe_exit(st.last_exit_code, st.last_exit_signal)  # as status says it


def _result(st: ProcessStatus, outcome: ProcessOutcome, message: str) -> ProcessResult:
    return ProcessResult(
        process=st.process, outcome=outcome, state=st.state, pid=st.pid, message=message
    )
