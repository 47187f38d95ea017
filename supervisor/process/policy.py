"""Restart decisions for one slot: pure functions of its history and ``now``.

No clock and no process here, so every rule is tested with explicit times. The rules are
supervisord's, as docs/config.md ("Restarts") describes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from supervisor import signals
from supervisor.config.schema import RestartPolicy
from supervisor.events import ProcessState
from supervisor.humanize import plural

if TYPE_CHECKING:
    import random

    from supervisor.config.schema import ProgramSpec

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
        restart: start again after ``delay``; never from FATAL.
        delay: seconds to wait before starting again (0.0 without ``restart``).
        failures: consecutive failed starts, this run included (0 after a run
            that was not a failed start).
        short_runs: consecutive restarted runs that ended within the spacing,
            this run included (see :func:`after_exit`); 0 after a failed start
            or a run that is not restarted.
        reason: a short human explanation for the state change, read once:
            never the exit itself (the console line, ``ctl status`` and JSON
            show it beside the reason) and no parentheses (the console wraps
            the reason in them).
    """

    state: ProcessState
    restart: bool
    delay: float
    failures: int
    short_runs: int
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


def wants_restart(spec: ProgramSpec, exit_code: int | None, exit_signal: int | None) -> bool:
    """Return True when the restart policy starts a run that ended this way again."""
    failed = exit_signal is not None or exit_code != 0
    return spec.restart is RestartPolicy.ALWAYS or (
        spec.restart is RestartPolicy.ON_FAILURE and failed
    )


def describe_exit(exit_code: int | None, exit_signal: int | None) -> str:
    """Return "exit code 3", "signal SIGKILL" or "unknown exit" for display."""
    if exit_signal is not None:
        name = signals.name(exit_signal)
        return name if name.startswith("signal ") else f"signal {name}"
    if exit_code is not None:
        return f"exit code {exit_code}"
    return "unknown exit"


def after_exit(
    spec: ProgramSpec,
    *,
    failures: int,
    short_runs: int,
    started_at: float,
    now: float,
    exit_code: int | None,
    exit_signal: int | None,
    rng: random.Random,
) -> Decision:
    """Decide what follows a run that ended on its own (not stopped by dsup).

    Args:
        spec: the program.
        failures: consecutive failed starts before this run.
        short_runs: consecutive short runs before this run (a previous
            decision's ``short_runs``; 0 after an operator's start).
        started_at: monotonic time the run was spawned.
        now: monotonic time the run's exit was seen.
        exit_code: the status passed to ``exit()``, or None.
        exit_signal: the signal that killed it, or None.
        rng: the source of jitter (seed it in tests).

    Returns:
        BACKOFF or FATAL for a failed start, else EXITED, restarted by the
        restart policy after the crash-loop guard's delay.
    """
    restart = wants_restart(spec, exit_code, exit_signal)
    failed = exit_signal is not None or exit_code != 0
    quick = is_failed_start(spec, started_at=started_at, now=now)
    if quick and (restart or failed):
        return after_failed_start(spec, failures=failures, reason="exited too quickly", rng=rng)
    if not restart:
        early = f"finished within start_seconds = {spec.start_seconds:g} s; " if quick else ""
        return Decision(
            state=ProcessState.EXITED,
            restart=False,
            delay=0.0,
            failures=0,
            short_runs=0,
            reason=f"{early}not restarted: restart = {spec.restart.value}",
        )
    ran = now - started_at
    short_runs = short_runs + 1 if ran < _nominal(short_runs + 1, spec) else 0
    delay = max(0.0, backoff_delay(short_runs, spec, rng) - ran)
    verdict = "restarting"
    if delay > 0.0:
        runs = plural(short_runs, "short run")
        verdict = f"restarting in {delay:.2f} s after {runs} in a row"
    return Decision(
        state=ProcessState.EXITED,
        restart=True,
        delay=delay,
        failures=0,
        short_runs=short_runs,
        reason=verdict,
    )


def after_failed_start(
    spec: ProgramSpec, *, failures: int, reason: str, rng: random.Random
) -> Decision:
    """Decide what follows a failed start: a too-short run or a spawn error.

    Args:
        spec: the program (its ``start_retries`` and backoff settings).
        failures: consecutive failed starts before this one.
        reason: what went wrong, e.g. "exited too quickly" (not the exit: views show it).
        rng: the source of jitter (seed it in tests).

    Returns:
        BACKOFF with ``restart`` after :func:`backoff_delay` while retries
        remain, else FATAL.
    """
    failures += 1
    in_a_row = plural(failures, "failed start")
    if failures >= spec.start_retries:
        return Decision(
            state=ProcessState.FATAL,
            restart=False,
            delay=0.0,
            failures=failures,
            short_runs=0,
            reason=f"{reason}; gave up after {in_a_row} in a row",
        )
    delay = backoff_delay(failures, spec, rng)
    return Decision(
        state=ProcessState.BACKOFF,
        restart=True,
        delay=delay,
        failures=failures,
        short_runs=0,
        reason=f"{reason}; failed start {failures} of {spec.start_retries}, "
        f"next try in {delay:.2f} s",
    )


def backoff_delay(failures: int, spec: ProgramSpec, rng: random.Random) -> float:
    """Return the seconds to wait after ``failures`` failed starts (or short runs) in a row.

    The delay doubles from ``backoff_seconds`` (after the first failure) up to
    ``backoff_max_seconds``, then is shortened by a random fraction of up to
    :data:`JITTER` (20 %), so it lies in ``(0.8 * d, d]`` where ``d`` is the
    capped doubling. No failures means no delay.

    Args:
        failures: consecutive failed starts so far.
        spec: the program (``backoff_seconds``, ``backoff_max_seconds``).
        rng: the source of jitter (seed it in tests).
    """
    return _nominal(failures, spec) * (1.0 - JITTER * rng.random())


def _nominal(failures: int, spec: ProgramSpec) -> float:
    """The capped doubling before jitter: 0 for no failures, then base, 2 base, ..."""
    if failures <= 0:
        return 0.0
    exponent = min(failures - 1, _MAX_EXPONENT)
    return min(spec.backoff_max_seconds, spec.backoff_seconds * 2.0**exponent)
