"""The fleet: every process of a node, run in one task group, with events fanned out.

This module owns the set of ``ChildProcess`` slots (one per ``program:index``),
their task lifetimes, name resolution for commands (program, process, glob,
``all``), applying a reloaded config, and delivering events to sinks. It does not
own what a command means for access and audit (``commands``) nor how one process
is run (``child``).
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
import signal
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import anyio

from supervisor.child import ChildContext, ChildProcess
from supervisor.errors import InvalidArgument, UnknownWorker
from supervisor.events import ProcessState

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence

    from anyio.abc import TaskGroup, TaskStatus

    from supervisor.config import Config, ProgramSpec
    from supervisor.events import Event, EventSink, OutputLines
    from supervisor.ledger import Ledger
    from supervisor.pump import LineConsumer
    from supervisor.reaper import Reaper
    from supervisor.statedir import StateDir

logger = logging.getLogger(__name__)

# States in which a process is down on purpose: a reload keeps it down.
_STAY_DOWN = frozenset({ProcessState.STOPPED, ProcessState.STOPPING, ProcessState.EXITED})

# A program name (64) plus ":index" and room for glob characters; anything else
# is refused before fnmatch, whose translation of long patterns is quadratic.
_TARGET_MAX = 80
_TARGET_RE = re.compile(rf"[A-Za-z0-9_.:*?\[\]!-]{{1,{_TARGET_MAX}}}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ReloadResult:
    """What a reload changed, by program name."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()


@dataclass(slots=True)
class _Slot:
    """A child and the cancel scope of its ``run`` task."""

    child: ChildProcess
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    done: anyio.Event = field(default_factory=anyio.Event)


class _Fanout:
    """Delivers events to every sink; lines only to sinks that take lines."""

    def __init__(self, sinks: Sequence[EventSink], line_sinks: Sequence[LineConsumer]) -> None:
        self._sinks = tuple(sinks)
        self._line_sinks = tuple(line_sinks)

    def emit(self, event: Event) -> None:
        for sink in self._sinks:
            sink.deliver(event)

    def capacity(self) -> int:
        # -1 (no sink wants lines) lets the pump skip framing and counting.
        return max((s.capacity() for s in self._line_sinks), default=-1)

    def deliver(self, event: OutputLines) -> None:
        for sink in self._line_sinks:
            sink.deliver(event)


class Fleet:
    """All processes of one node.

    Use ``await task_group.start(fleet.run)``; cancelling that task stops every
    process in parallel (each bounded by its ``stop_timeout_seconds``).
    """

    def __init__(
        self,
        config: Config,
        *,
        state: StateDir,
        ledger: Ledger,
        reaper: Reaper,
        sinks: Sequence[EventSink] = (),
        line_sinks: Sequence[LineConsumer] = (),
    ) -> None:
        self.config = config
        self.state = state
        self.ledger = ledger
        self.reaper = reaper
        self._fanout = _Fanout(sinks, line_sinks)
        self._slots: dict[str, _Slot] = {}
        self._tg: TaskGroup | None = None
        self._shutdown = anyio.Event()

    # -- queries -------------------------------------------------------------

    def processes(self) -> list[ChildProcess]:
        """Every process, in config order."""
        return [slot.child for slot in self._slots.values()]

    def resolve(self, target: str) -> list[ChildProcess]:
        """The processes a command target names.

        Args:
            target: ``all``, a program name (all its processes), a process name
                (``name:2``) or a glob over program and process names (``scrape*``).

        Raises:
            InvalidArgument: the target is no name or glob (checked before any
                matching, so an absurd pattern from chat costs nothing).
            UnknownWorker: nothing matches.
        """
        if not _TARGET_RE.fullmatch(target):
            raise InvalidArgument(
                "target",
                "name",
                target[:80],
                f"give a program, a process (name:N), a glob or 'all': at most "
                f"{_TARGET_MAX} letters, digits and _ . : - * ? [ ] !",
            )
        children = self.processes()
        if target == "all":
            return children
        pattern = re.compile(fnmatch.translate(target))
        found = [
            c
            for c in children
            if c.name == target
            or c.spec.name == target
            or pattern.match(c.spec.name)
            or pattern.match(c.name)
        ]
        if not found:
            raise UnknownWorker(target, list(self.config.programs))
        return found

    def emit(self, event: Event) -> None:
        """Deliver an event to every sink (never blocks)."""
        self._fanout.emit(event)

    # -- lifetime ------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run every process and the reaper's sweeps until shutdown is requested.

        When cancelled (or on shutdown), every process is stopped in parallel
        before this returns.
        """
        async with anyio.create_task_group() as tg:
            self._tg = tg
            await tg.start(self._serve_reaper)
            for spec in self.config.programs.values():
                await self._add_processes(spec)
            task_status.started()
            await self._shutdown.wait()
            for child in self.processes():
                child.close("dsup shutting down")
            tg.cancel_scope.cancel("fleet shutdown")
        self._tg = None

    def request_shutdown(self) -> None:
        """Ask ``run`` to stop every process and return."""
        self._shutdown.set()

    async def wait_shutdown_requested(self) -> None:
        """Return once shutdown has been requested (by a signal or a command)."""
        await self._shutdown.wait()

    def kill_all(self) -> None:
        """Hard stop: SIGKILL every live process group at once (second Ctrl-C).

        The pids are our unreaped direct children, so they cannot have been reused.
        The normal stop path then finds the trees dead and cleans up quickly.
        """
        for child in self.processes():
            pid = child.status().pid
            if pid is not None:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    logger.debug("process %s (pid %d) already gone", child.name, pid)
        self.request_shutdown()

    async def reload(self, config: Config) -> ReloadResult:
        """Apply a new config: add new programs, stop removed ones, restart changed ones.

        Programs whose spec is unchanged keep running untouched. A program whose
        only change is ``numprocs`` is scaled: processes are added or removed at
        the end, the others keep running (it is reported as changed). A process
        an operator stopped (STOPPED, STOPPING) or that finished (EXITED) stays
        down when its program changes: it gets the new settings, not a start.
        Programs are replaced in parallel, so one slow stop delays no other.
        """
        old = self.config.programs
        new = config.programs
        added = [n for n in new if n not in old]
        removed = [n for n in old if n not in new]
        changed = [n for n in new if n in old and new[n] != old[n]]
        self.config = config
        async with anyio.create_task_group() as tg:
            for name in removed:
                tg.start_soon(self._remove_processes, name, 0, "removed by reload")
            for name in changed:
                tg.start_soon(self._replace_program, old[name], new[name])
            for name in added:
                tg.start_soon(self._add_processes, new[name])
        order = {name: i for i, name in enumerate(new)}
        self._slots = dict(
            sorted(
                self._slots.items(),
                key=lambda item: (order[item[1].child.spec.name], item[1].child.index),
            )
        )
        return ReloadResult(
            added=tuple(added),
            removed=tuple(removed),
            changed=tuple(changed),
            unchanged=tuple(n for n in new if n not in changed and n not in added),
        )

    # -- internals -----------------------------------------------------------

    def _context(self) -> ChildContext:
        return ChildContext(
            node=self.config.supervisor.name,
            instance_id=self.state.instance_id,
            log_dir=self.state.log_dir,
            ledger=self.ledger,
            reaper=self.reaper,
            emit=self._fanout.emit,
            lines=self._fanout,
        )

    async def _replace_program(self, old: ProgramSpec, new: ProgramSpec) -> None:
        """Swap a changed program's slots for new ones (only the extra ones if scaled)."""
        scaled = replace(old, numprocs=new.numprocs) == new
        keep = min(old.numprocs, new.numprocs) if scaled else 0
        # Turning autostart on is a request to start; otherwise a down process stays down.
        wants_start = new.autostart and not old.autostart
        down = {
            c.index
            for c in self.processes()
            if c.spec.name == old.name
            and c.index >= keep
            and c.status().state in _STAY_DOWN
            and not wants_start
        }
        await self._remove_processes(old.name, keep, "config changed by reload")
        await self._add_processes(new, keep, down=down)

    async def _add_processes(
        self, spec: ProgramSpec, first: int = 0, *, down: Collection[int] = ()
    ) -> None:
        """Start the slots ``first`` ... ``numprocs - 1``; those in ``down`` are not started."""
        assert self._tg is not None, "the fleet is not running"
        ctx = self._context()
        for index in range(first, spec.numprocs):
            slot_spec = replace(spec, autostart=False) if index in down else spec
            slot = _Slot(ChildProcess(slot_spec, index, ctx))
            self._slots[slot.child.name] = slot
            await self._tg.start(self._run_slot, slot)

    async def _run_slot(
        self, slot: _Slot, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            with slot.scope:
                await slot.child.run(task_status=task_status)
        finally:
            slot.done.set()

    async def _remove_processes(self, name: str, keep: int, reason: str) -> None:
        """Stop and drop a program's slots from index ``keep`` on, saying why."""
        slots = [
            s for s in self._slots.values() if s.child.spec.name == name and s.child.index >= keep
        ]
        for slot in slots:
            slot.child.close(reason)
            slot.scope.cancel(reason)
        for slot in slots:
            await slot.done.wait()
            del self._slots[slot.child.name]

    def _live_run_ids(self) -> set[str]:
        return {run_id for c in self.processes() for run_id in c.live_run_ids()}

    def _known_children(self) -> set[int]:
        return {p for c in self.processes() if (p := c.status().pid) is not None}

    async def _serve_reaper(self, *, task_status: TaskStatus[None]) -> None:
        await self.reaper.serve(
            live_run_ids=self._live_run_ids,
            known_children=self._known_children,
            interval=self.config.supervisor.sweep_interval_seconds,
            emit=self._fanout.emit,
            task_status=task_status,
        )
