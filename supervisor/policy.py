"""Restart decisions for one process slot: pure functions of (history, now).

This module owns what happens after a run ends or fails to spawn: whether the
run was a failed start, whether the slot goes to BACKOFF, EXITED or FATAL, and
how long to wait before the next try. It reads no clock and touches no process;
the caller (``child``) passes the monotonic times and the count of consecutive
failed starts, which is the only history a decision needs.

Semantics follow supervisord's ``Subprocess.transition``:

- A run shorter than ``start_seconds`` is a failed start, whatever its exit
  status and whatever the restart policy (set ``start_seconds = 0`` for a
  one-shot job). A spawn error (missing executable, bad cwd) is one too.
- A failed start goes to BACKOFF and is retried after :func:`backoff_delay`;
  ``start_retries`` is the number of *retries*, as supervisord's
  ``startretries``: after ``start_retries + 1`` failed starts in a row the slot
  is FATAL and stays down until an operator starts it.
- A run that reached RUNNING resets the failure count, goes to EXITED, and is
  started again at once when the policy says so: ``always`` restarts every
  time, ``on-failure`` on a nonzero exit or a death by signal, ``never`` not.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING

from supervisor.config import RestartPolicy
from supervisor.events import ProcessState

if TYPE_CHECKING:
    import random

    from supervisor.config import ProgramSpec

# The largest doubling exponent used; 2.0 ** 1000 is still a finite float.
_MAX_EXPONENT = 1000
# Jitter: each delay is shortened by up to this fraction, so processes that
# failed together do not retry together, and the delay never exceeds the cap.
JITTER = 0.2


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """What the slot does after a run ended or failed to spawn.

    Attributes:
        state: the state the slot enters now: BACKOFF, FATAL or EXITED.
        restart: start again: after :func:`backoff_delay` from BACKOFF, at
            once from EXITED; never from FATAL.
        failures: consecutive failed starts, this run included (0 after a run
            that reached RUNNING).
        reason: a short human explanation for the state change.
    """

    state: ProcessState
    restart: bool
    failures: int
    reason: str


def is_failed_start(spec: ProgramSpec, *, started_at: float, now: float) -> bool:
    """Return True when a run that began at ``started_at`` and ended at ``now`` was too short.

    Args:
        spec: the program (its ``start_seconds``).
        started_at: monotonic time the run was spawned.
        now: monotonic time the run ended.
    """
    return now - started_at < spec.start_seconds


def running_at(spec: ProgramSpec, *, started_at: float) -> float:
    """Return the monotonic time a run spawned at ``started_at`` counts as RUNNING."""
    return started_at + spec.start_seconds


def describe_exit(exit_code: int | None, exit_signal: int | None) -> str:
    """Return "exit code 3", "signal SIGKILL" or "unknown exit" for display."""
    if exit_signal is not None:
        try:
            return f"signal {signal.Signals(exit_signal).name}"
        except ValueError:
            return f"signal {exit_signal}"
    if exit_code is not None:
        return f"exit code {exit_code}"
    return "unknown exit"


def after_exit(
    spec: ProgramSpec,
    *,
    failures: int,
    started_at: float,
    now: float,
    exit_code: int | None,
    exit_signal: int | None,
) -> Decision:
    """Decide what follows a run that ended on its own (not stopped by dsup).

    Args:
        spec: the program.
        failures: consecutive failed starts before this run.
        started_at: monotonic time the run was spawned.
        now: monotonic time the run's exit was seen.
        exit_code: the status passed to ``exit()``, or None.
        exit_signal: the signal that killed it, or None.

    Returns:
        BACKOFF or FATAL for a failed start, else EXITED with ``restart`` set by
        the restart policy.
    """
    how = describe_exit(exit_code, exit_signal)
    if is_failed_start(spec, started_at=started_at, now=now):
        return after_failed_start(spec, failures=failures, reason=f"exited too quickly ({how})")
    failed = exit_signal is not None or exit_code != 0
    restart = spec.restart is RestartPolicy.ALWAYS or (
        spec.restart is RestartPolicy.ON_FAILURE and failed
    )
    verdict = "restarting" if restart else f"not restarted (restart = {spec.restart.value})"
    return Decision(
        state=ProcessState.EXITED, restart=restart, failures=0, reason=f"{how}; {verdict}"
    )


def after_failed_start(spec: ProgramSpec, *, failures: int, reason: str) -> Decision:
    """Decide what follows a failed start: a too-short run or a spawn error.

    Args:
        spec: the program (its ``start_retries``).
        failures: consecutive failed starts before this one.
        reason: what went wrong, e.g. "exited too quickly (exit code 1)".

    Returns:
        BACKOFF with ``restart`` while retries remain, else FATAL.
    """
    failures += 1
    if failures > spec.start_retries:
        return Decision(
            state=ProcessState.FATAL,
            restart=False,
            failures=failures,
            reason=f"{reason}; gave up after {failures} failed starts",
        )
    return Decision(
        state=ProcessState.BACKOFF,
        restart=True,
        failures=failures,
        reason=f"{reason}; retry {failures} of {spec.start_retries}",
    )


def backoff_delay(failures: int, spec: ProgramSpec, rng: random.Random) -> float:
    """Return the seconds to wait in BACKOFF after ``failures`` failed starts in a row.

    The delay doubles from ``backoff_seconds`` (after the first failure) up to
    ``backoff_max_seconds``, then is shortened by a random fraction of up to
    :data:`JITTER` (20 %), so it lies in ``(0.8 * d, d]`` where ``d`` is the
    capped doubling. No failures means no delay.

    Args:
        failures: consecutive failed starts so far.
        spec: the program (``backoff_seconds``, ``backoff_max_seconds``).
        rng: the source of jitter (seed it in tests).
    """
    if failures <= 0:
        return 0.0
    exponent = min(failures - 1, _MAX_EXPONENT)
    capped = min(spec.backoff_max_seconds, spec.backoff_seconds * 2.0**exponent)
    return capped * (1.0 - JITTER * rng.random())
