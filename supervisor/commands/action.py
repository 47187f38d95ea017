"""What start, stop, restart and signal do to one process, and how the outcome is judged.

``unchanged`` when the process is already as asked, ``failed`` with the reason otherwise, so
every front end reports a process's result the same way.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from supervisor import signals
from supervisor.commands.reports import ProcessResult
from supervisor.errors import InvalidArgument, InvalidTransition, SupervisorError
from supervisor.events import ProcessState
from supervisor.process.policy import describe_exit

if TYPE_CHECKING:
    import signal
    from collections.abc import Awaitable, Callable, Sequence

    from supervisor.commands.access import Actor
    from supervisor.commands.reports import ProcessOutcome
    from supervisor.process.slot import Slot
    from supervisor.process.status import ProcessStatus


def parse_signal(value: str | int) -> signal.Signals | int:
    """The signal ``value`` names, as :func:`supervisor.signals.parse` reads it.

    Raises:
        InvalidArgument: not a signal of this platform; the message says what is.
    """
    try:
        return signals.parse(value)
    except ValueError as exc:
        raise InvalidArgument("signal", "signal", value, str(exc)) from None


async def start_one(slot: Slot, actor: Actor) -> ProcessResult:
    """Start ``slot`` unless it is up; ``failed`` when it does not come up.

    A one-shot job that ran and exited 0 (EXITED, not restarted) is ``ok``.
    """
    return await _transition(
        slot, lambda: slot.start(reason=f"started by {actor.name}"), wanted_alive=True
    )


async def stop_one(slot: Slot, actor: Actor) -> ProcessResult:
    """Stop ``slot`` unless it is STOPPED already."""
    return await _transition(
        slot, lambda: slot.stop(reason=f"stopped by {actor.name}"), wanted_alive=False
    )


async def restart_one(slot: Slot, actor: Actor) -> ProcessResult:
    """Stop then start ``slot``, whatever its state; ``failed`` when it does not come up."""
    return await _transition(
        slot,
        lambda: slot.restart(reason=f"restarted by {actor.name}"),
        wanted_alive=True,
        is_restart=True,
    )


async def _transition(
    slot: Slot,
    action: Callable[[], Awaitable[ProcessStatus]],
    *,
    wanted_alive: bool,
    is_restart: bool = False,
) -> ProcessResult:
    """Run a state change; ``unchanged`` when the process is already as wanted."""
    if not is_restart and _is_settled(slot.status().state, wanted_alive=wanted_alive):
        st = slot.status()
        return _result(st, "unchanged", f"already {st.state.value}")
    try:
        st = await action()
    except InvalidTransition as exc:
        st = slot.status()
        settled = _is_settled(st.state, wanted_alive=wanted_alive)
        return _result(st, "unchanged" if settled else "failed", str(exc))
    except SupervisorError as exc:  # SpawnError and friends: this process only
        return _result(slot.status(), "failed", str(exc))
    if wanted_alive and _has_finished(st):
        return _result(st, "ok", f"finished ({describe_exit(0, None)})")
    if wanted_alive and not _is_up(st.state):
        return _result(st, "failed", _why_down(st))
    return _result(st, "ok", "")


async def signal_one(slot: Slot, sig: signal.Signals | int) -> ProcessResult:
    """Send ``sig`` to ``slot``; ``skipped`` when it is not running.

    See :func:`judge_signals` for when a skip is a failure.
    """
    try:
        slot.send_signal(sig)
    except InvalidTransition as exc:
        return _result(slot.status(), "skipped", str(exc))
    except OSError as exc:  # EPERM: the group is no longer ours to signal
        why = f"cannot send {signals.name(sig)}: {exc.strerror}"
        return _result(slot.status(), "failed", why)
    return _result(slot.status(), "ok", "")


def judge_signals(results: Sequence[ProcessResult]) -> tuple[ProcessResult, ...]:
    """The results of one ``signal`` command: skips are failures when nothing got it.

    ``signal all HUP`` tells every running process and skips the others
    ("not running"); a target with no running process at all is a failure,
    whose message says why each was skipped.
    """
    if any(r.outcome == "ok" for r in results):
        return tuple(
            replace(r, message="not running") if r.outcome == "skipped" else r for r in results
        )
    return tuple(replace(r, outcome="failed") if r.outcome == "skipped" else r for r in results)


def _is_up(state: ProcessState) -> bool:
    return state in (ProcessState.STARTING, ProcessState.RUNNING)


def _has_finished(st: ProcessStatus) -> bool:
    """A one-shot run that ended well: EXITED with code 0 and no restart coming.

    The policy sends a run that exits 0 within start_seconds to EXITED only
    when it would not restart it (``never``, ``on-failure``): the job is done.
    """
    return (
        st.state is ProcessState.EXITED and st.last_exit_code == 0 and st.last_exit_signal is None
    )


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
