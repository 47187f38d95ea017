"""Stopping a set of processes: the stop signal, a grace period, then SIGKILL for the rest.

Each target is signalled by its verified identity, and every wait is bounded.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import anyio

from supervisor.reaper.tree import verified

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    import psutil

    from supervisor.reaper.tree import Scanner, Snapshot
    from supervisor.state.ledger import Ledger
    from supervisor.state.records import ProcIdent

logger = logging.getLogger(__name__)

_KILL_WAIT = 5.0  # how long to wait for processes to vanish after SIGKILL
_POLL_MIN, _POLL_MAX = 0.005, 0.1


class ExitFlag(Protocol):
    """Set by a main process's owner once it has exited (an anyio.Event fits)."""

    def is_set(self) -> bool:
        """Whether the main process has exited."""
        ...

    async def wait(self) -> None:
        """Return once it has."""
        ...


@dataclass(frozen=True, slots=True)
class TreeOutcome:
    """What a stop did.

    Attributes:
        signalled: pids sent the stop signal (the main's pid when its group was).
        killed: pids that needed SIGKILL.
        survivors: pids still alive after SIGKILL and a bounded wait.
    """

    signalled: tuple[int, ...]
    killed: tuple[int, ...]
    survivors: tuple[int, ...]


async def escalate(
    scanner: Scanner,
    ledger: Ledger,
    collect: Callable[[Snapshot], set[ProcIdent]],
    *,
    sig: signal.Signals,
    grace: float,
    label: str,
    record_as: str | None = None,
    main: ProcIdent | None = None,
    main_exited: ExitFlag | None = None,
    snap: Snapshot | None = None,
) -> TreeOutcome:
    """Signal what ``collect`` finds, wait, collect again, SIGKILL what is left.

    ``label`` names the operation in logs; ``snap`` is a fresh snapshot to
    start from, if the caller has one. With ``record_as``, the targets are
    recorded as that run's processes and the run is settled once nothing is
    left. A ``main`` is signalled through its group until ``main_exited``.

    Cancellation stops the waiting and propagates; run this shielded.
    """

    def live_main() -> ProcIdent | None:
        running = main_exited is not None and not main_exited.is_set()
        return main if running else None

    snap = snap if snap is not None else await scanner.snapshot()
    targets = collect(snap)
    if record_as is not None and targets:
        await anyio.to_thread.run_sync(ledger.record_descendants, record_as, list(targets))
    signalled: list[int] = []
    killed: list[int] = []
    left: set[ProcIdent] = set()
    if targets or live_main() is not None:
        signalled = await anyio.to_thread.run_sync(
            _signal, targets, sig, live_main(), f"{label}: {sig.name}", snap
        )
        remaining = await _wait_gone(targets, main_exited, grace)
        snap = await scanner.snapshot()
        left = remaining | collect(snap)
    if left or live_main() is not None:
        killed = await anyio.to_thread.run_sync(
            _signal, left, signal.SIGKILL, live_main(), f"{label}: SIGKILL", snap
        )
        left = await _wait_gone(left, main_exited, _KILL_WAIT)
    survivors = sorted(p.pid for p in left)
    if (still := live_main()) is not None:
        survivors.insert(0, still.pid)
    if record_as is not None and not survivors:
        await anyio.to_thread.run_sync(ledger.forget_runs, [record_as])
    return TreeOutcome(tuple(signalled), tuple(killed), tuple(survivors))


def _kill(send: Callable[[int, int], None], pid: int, sig: signal.Signals) -> None:
    """Send ``sig``, then SIGCONT so that a stopped (SIGSTOP) process can act on it.

    Like systemd: a paused worker would otherwise sit out the whole timeout and
    end by SIGKILL without ever seeing the stop signal.
    """
    send(pid, sig)
    if sig not in (signal.SIGKILL, signal.SIGCONT):
        send(pid, signal.SIGCONT)


def _signal(
    targets: Iterable[ProcIdent],
    sig: signal.Signals,
    main: ProcIdent | None,
    why: str,
    snap: Snapshot,
) -> list[int]:
    """Send ``sig`` to the group of a live ``main`` and to each target outside it.

    A process in the group gets the signal once, through the group: a second
    SIGINT could cut short the clean-up the first one started. Every pid is
    verified by its identity right before it is signalled.
    """
    sent: list[int] = []
    group = main.pid if main is not None else None
    if main is not None:
        try:
            _kill(os.killpg, main.pid, sig)
            logger.info("%s sent to process group %d", why, main.pid)
        except ProcessLookupError:
            # Not a group leader after all (spawned without a new session).
            group = None
            targets = [main, *targets]
        else:
            sent.append(main.pid)
    for ident in sorted(targets, key=lambda p: p.pid):
        proc = verified(ident)
        if proc is None:
            continue
        try:
            in_group = group is not None and os.getpgid(ident.pid) == group
            if not in_group:
                _kill(os.kill, ident.pid, sig)
        except ProcessLookupError:
            continue
        sent.append(ident.pid)
        seen = snap.get(ident.pid)
        logger.info(
            "%s sent to pid %d of %s (%s) %s%s",
            why,
            ident.pid,
            seen.process if seen is not None and seen.process else "no dsup process",
            _name(proc),
            _cmdline(proc),
            " via its group" if in_group else "",
        )
    return sent


async def _wait_gone(
    targets: set[ProcIdent], main_exited: ExitFlag | None, limit: float
) -> set[ProcIdent]:
    """Wait up to ``limit`` s for ``targets`` to vanish and ``main_exited``; return the rest."""
    remaining = set(targets)
    delay = _POLL_MIN
    with anyio.move_on_after(limit):
        while True:
            remaining = await anyio.to_thread.run_sync(_still_alive, remaining)
            if not remaining:
                if main_exited is not None:
                    await main_exited.wait()
                break
            await anyio.sleep(delay)
            delay = min(delay * 2, _POLL_MAX)
    return await anyio.to_thread.run_sync(_still_alive, remaining)


def _still_alive(idents: set[ProcIdent]) -> set[ProcIdent]:
    """Those of ``idents`` still running; our zombie children among them are reaped.

    The idents never include the main process of a run (collections exclude it),
    so reaping them cannot steal an exit status a run waits for.
    """
    if not idents:
        return set()
    import psutil  # here: only a tree with processes to signal needs it

    me = os.getpid()
    alive: set[ProcIdent] = set()
    for ident in idents:
        proc = verified(ident)
        if proc is None:
            continue
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                alive.add(ident)
            elif proc.ppid() == me:
                os.waitpid(ident.pid, os.WNOHANG)
        except (psutil.Error, ChildProcessError):
            continue
    return alive


def _name(proc: psutil.Process) -> str:
    import psutil  # loaded already: ``proc`` is one of its processes

    try:
        return proc.name()
    except psutil.Error:
        return "?"


def _cmdline(proc: psutil.Process) -> str:
    import psutil  # loaded already: ``proc`` is one of its processes

    try:
        return " ".join(proc.cmdline())[:200]
    except psutil.Error:
        return "?"
