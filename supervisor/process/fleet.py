"""The fleet: every slot of a node in one task group, targets resolved, reloads applied.

It fans the slots' events out to the node's sinks, so a slot knows none of them.
"""

from __future__ import annotations

import fnmatch
import functools
import logging
import os
import re
import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import anyio

from supervisor.errors import InvalidArgument, InvalidTransition, UnknownProcess
from supervisor.events import ProcessState
from supervisor.output.allocator import give_back_free_memory
from supervisor.process.questions import QuestionDesk
from supervisor.process.slot import Slot, SlotContext
from supervisor.state.worker_store import WorkerStore

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from anyio.abc import TaskGroup, TaskStatus

    from supervisor.config.schema import Config, ProgramSpec
    from supervisor.events import Event, EventSink, OutputChunk
    from supervisor.output.pump import DropTally, OutputConsumer
    from supervisor.process.status import ProcessStatus
    from supervisor.process.worker_link import TaskBroker
    from supervisor.reaper.reaper import Reaper
    from supervisor.state.ledger import Ledger
    from supervisor.state.statedir import StateDir

logger = logging.getLogger(__name__)

# States in which a process is down on purpose: a reload keeps it down.
_STAY_DOWN = frozenset({ProcessState.STOPPED, ProcessState.STOPPING, ProcessState.EXITED})
# States from which turning autostart on in a reload starts a process.
_STARTABLE = frozenset({ProcessState.STOPPED, ProcessState.EXITED, ProcessState.FATAL})

PROCESS_KEYS = ("command", "cwd", "env", "unbuffered")
"""What the process itself sees: a reload changing one restarts its live processes.

Every other setting is dsup's own and a reload applies it in place."""

# A program name (64) plus ":index" and room for glob characters; anything else
# is refused before fnmatch, whose translation of long patterns is quadratic.
_TARGET_MAX = 80
_TARGET_RE = re.compile(rf"[A-Za-z0-9_.:*?\[\]!-]{{1,{_TARGET_MAX}}}")

LAUNCHING_MAX = 16
"""Slots launched and not yet begun their start (spawned, recorded, STARTING): the next waits.

What a start uses for a moment (its task, thread calls, the ledger's rows) is then reused by
the next ones; 500 launched at once freed it together, as holes between the processes'
long-lived objects (about 0.8 MiB of RSS at rest)."""


class RunSource(Protocol):
    """Runs the fleet does not own but its reaper must spare (the task queue's)."""

    def live_run_ids(self) -> set[str]:
        """Runs whose processes may legitimately be alive."""
        ...

    def live_pids(self) -> set[int]:
        """Main processes spawned and not yet reaped (direct children of dsup)."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ReloadResult:
    """What a reload changed, by program name.

    Attributes:
        added: new programs (started if ``autostart``).
        removed: programs gone from the file (stopped).
        changed: programs whose live processes were restarted: a change of
            :data:`PROCESS_KEYS` (a ``numprocs`` change may come with it).
        updated: programs whose other settings changed, ``numprocs`` included,
            applied in place without restarting any process (a ``numprocs``
            change only adds or removes processes at the end).
        unchanged: the rest.
    """

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()


class _Fanout:
    """Delivers events to every sink; output only to sinks that take output.

    The pump frames for the sink with the most room; each sink takes what fits
    it from the same bytes (no copy per sink) and reports the rest its own way.
    With one sink of output, the pumps are given that sink itself (``lines``).
    """

    def __init__(self, sinks: Sequence[EventSink], line_sinks: Sequence[OutputConsumer]) -> None:
        self._sinks = tuple(sinks)
        self._line_sinks = tuple(line_sinks)
        self.lines: OutputConsumer = line_sinks[0] if len(line_sinks) == 1 else self

    def emit(self, event: Event) -> None:
        for sink in self._sinks:
            sink.deliver(event)

    def room(self, process: str) -> tuple[int, DropTally | None]:
        # -1 (no sink wants output) lets the pump skip framing and counting. A tally
        # serves one sink only: with several taking lines, drops are counted. While
        # the one sink taking lines holds its answer, the others are not asked: their
        # -1 must not change meanwhile. Ours never does: only the relay holds, and a
        # console answers -1 only with --quiet, where it is no line sink at all (a live
        # view that could start showing output would have to let go of the hold). Each
        # sink is asked once: this runs at every read.
        most, tally, taking = -1, None, 0
        for sink in self._line_sinks:
            room, its_tally = sink.room(process)
            if room >= 0:
                taking += 1
                tally = its_tally
                most = max(most, room)
        return most, tally if taking == 1 else None

    def deliver(self, chunk: OutputChunk) -> None:
        for sink in self._line_sinks:
            sink.deliver(chunk)


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
        line_sinks: Sequence[OutputConsumer] = (),
    ) -> None:
        self.config = config
        self.state = state
        self.ledger = ledger
        self.reaper = reaper
        self._fanout = _Fanout(sinks, line_sinks)
        self.store = WorkerStore(ledger)
        self.desk = QuestionDesk(self.store, self._fanout.emit)
        self._slots: dict[str, Slot] = {}
        self._tg: TaskGroup | None = None
        self._shutdown = anyio.Event()
        self._others: list[RunSource] = []
        self._launching = _Launching()
        self._reloading = anyio.Lock()
        # Where workers give tasks, and those of stream programs take them (the
        # node's LazyTaskQueue sets itself there).
        self.tasks: TaskBroker | None = None

    # -- queries -------------------------------------------------------------

    def processes(self) -> list[Slot]:
        """Every process, in config order."""
        return list(self._slots.values())

    def resolve(self, target: str) -> list[Slot]:
        """The processes a command target names.

        Args:
            target: ``all``, a program name (all its processes), a process name
                (``name:2``) or a glob over program and process names (``scrape*``).

        Raises:
            InvalidArgument: the target is no name or glob (checked before any
                matching, so an absurd pattern from chat costs nothing).
            UnknownProcess: nothing matches.
        """
        if not _TARGET_RE.fullmatch(target):
            raise InvalidArgument(
                "target",
                "name",
                target[:80],
                f"give a program, a process (name:N), a glob or 'all': at most "
                f"{_TARGET_MAX} letters, digits and _ . : - * ? [ ] !",
            )
        matched = self.processes()
        if target == "all":
            return matched
        pattern = re.compile(fnmatch.translate(target))
        found = [
            c
            for c in matched
            if c.name == target
            or c.spec.name == target
            or pattern.match(c.spec.name)
            or pattern.match(c.name)
        ]
        if not found:
            raise UnknownProcess(target, list(self.config.programs))
        return found

    def track(self, source: RunSource) -> None:
        """Spare the runs of ``source`` in the reaper's sweeps and zombie reaping."""
        self._others.append(source)

    def emit(self, event: Event) -> None:
        """Deliver an event to every sink (never blocks)."""
        self._fanout.emit(event)

    # -- lifetime ------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run every process and the reaper's sweeps until shutdown is requested.

        When cancelled (or on shutdown), every process is stopped in parallel
        before this returns.
        """
        gone = await anyio.to_thread.run_sync(self.store.close_open)
        if gone:
            logger.info(
                "%d questions left open by the last dsup closed: their askers are gone", gone
            )
        async with anyio.create_task_group() as tg:
            self._tg = tg
            await tg.start(self._serve_reaper)
            try:
                for spec in self.config.programs.values():
                    await self._add_processes(spec)
                task_status.started()
                await self._shutdown.wait()
            finally:  # cancelled too, start-up included: a resting slot has no task to cancel
                reason = "dsup shutting down" if self._shutdown.is_set() else None
                for slot in self.processes():
                    slot.close(reason)
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

        The pids are our unreaped direct matched, so they cannot have been reused.
        The normal stop path then finds the trees dead and cleans up quickly.
        """
        for slot in self.processes():
            pid = slot.status().pid
            if pid is not None:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    logger.debug("process %s (pid %d) already gone", slot.name, pid)
        self.request_shutdown()

    async def reload(self, config: Config) -> ReloadResult:
        """Apply a new config: add new programs, stop removed ones, update changed ones.

        Programs whose spec is unchanged keep running untouched. A changed
        program keeps its slots (their state, LAST EXIT and INFO): each takes
        the new settings at once, and only a change of what the process itself
        sees (:data:`PROCESS_KEYS`) restarts a live (or BACKOFF, FATAL) one. A
        process an operator stopped or that finished stays down with the new
        settings; turning ``autostart`` on starts it. A ``numprocs`` change adds
        or removes processes at the end. Programs are updated in parallel, so
        one slow stop delays no other. Reloads run one at a time: one asked
        during another waits for it (else a reload removing a program could
        close a slot that one adding it was about to launch).
        """
        async with self._reloading:
            return await self._reload(config)

    async def _reload(self, config: Config) -> ReloadResult:
        old = self.config.programs
        new = config.programs
        added = [n for n in new if n not in old]
        removed = [n for n in old if n not in new]
        differ = [n for n in new if n in old and new[n] != old[n]]
        changed = [n for n in differ if _process_changes(old[n], new[n])]
        self.config = config
        async with anyio.create_task_group() as tg:
            for name in removed:
                tg.start_soon(self._remove_processes, name, 0, "removed by reload")
            for name in differ:
                tg.start_soon(self._update_program, old[name], new[name])
            for name in added:
                await self._add_processes(new[name], 0, "started by reload")
        order = {name: i for i, name in enumerate(new)}
        self._slots = dict(
            sorted(
                self._slots.items(),
                key=lambda item: (order[item[1].spec.name], item[1].index),
            )
        )
        return ReloadResult(
            added=tuple(added),
            removed=tuple(removed),
            changed=tuple(changed),
            updated=tuple(n for n in differ if n not in changed),
            unchanged=tuple(n for n in new if n not in differ and n not in added),
        )

    # -- internals -----------------------------------------------------------

    def _context(self) -> SlotContext:
        return SlotContext(
            node=self.config.supervisor.name,
            instance_id=self.state.instance_id,
            log_dir=self.state.log_dir,
            ledger=self.ledger,
            reaper=self.reaper,
            emit=self._fanout.emit,
            lines=self._fanout.lines,
            desk=self.desk,
            store=self.store,
            tasks=self.tasks,
            secrets=_secrets(self.config),
        )

    async def _update_program(self, old: ProgramSpec, new: ProgramSpec) -> None:
        """Give a changed program's slots the new spec; restart or start those that need it."""
        keep = min(old.slot_count, new.slot_count)
        kept = [c for c in self.processes() if c.spec.name == old.name and c.index < keep]
        changes = _process_changes(old, new)
        restart = f"restarted by reload: {', '.join(changes)} changed"
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                self._remove_processes,
                old.name,
                keep,
                f"removed by reload: numprocs {old.numprocs} -> {new.numprocs}",
            )
            for slot in kept:
                slot.update_spec(new)
                state = slot.status().state
                if changes and state not in _STAY_DOWN:
                    tg.start_soon(_settle, functools.partial(slot.restart, reason=restart))
                elif new.autostart and not old.autostart and state in _STARTABLE:
                    why = "started by reload: autostart turned on"
                    tg.start_soon(_settle, functools.partial(slot.start, reason=why))
        await self._add_processes(new, keep, reason="started by reload")

    async def _add_processes(
        self, spec: ProgramSpec, first: int = 0, reason: str = "autostart"
    ) -> None:
        """Launch slots ``first`` ... ``numprocs - 1``, started (if autostart) for ``reason``.

        At most :data:`LAUNCHING_MAX` at a time; once shutdown is requested, no more.
        """
        assert self._tg is not None, "the fleet is not running"
        ctx = self._context()
        launching = self._launching
        for index in range(first, spec.slot_count):  # none for oneshot
            if self._shutdown.is_set():
                return
            slot = Slot(spec, index, ctx)
            self._slots[slot.name] = slot
            await launching.claim(LAUNCHING_MAX)
            if self._shutdown.is_set():  # meanwhile: the slot was closed, never launched
                launching.begun()
                return
            slot.launch(self._tg, start_reason=reason, on_begun=launching.begun)

    async def _remove_processes(self, name: str, keep: int, reason: str) -> None:
        """Stop and drop a program's slots from index ``keep`` on, saying why."""
        slots = [s for s in self._slots.values() if s.spec.name == name and s.index >= keep]
        for slot in slots:
            slot.close(reason)
        for slot in slots:
            await slot.wait_ended()
            del self._slots[slot.name]

    def _live_run_ids(self) -> set[str]:
        ours = {run_id for c in self.processes() for run_id in c.live_run_ids()}
        return ours.union(*(o.live_run_ids() for o in self._others))

    def _known_children(self) -> set[int]:
        ours = {p for c in self.processes() if (p := c.status().pid) is not None}
        return ours.union(*(o.live_pids() for o in self._others))

    async def _serve_reaper(self, *, task_status: TaskStatus[None]) -> None:
        await self.reaper.serve(
            live_run_ids=self._live_run_ids,
            known_children=self._known_children,
            interval=self.config.supervisor.sweep_interval_seconds,
            emit=self._fanout.emit,
            after_sweep=self._give_back_memory,
            task_status=task_status,
        )

    def _give_back_memory(self) -> None:
        """After each sweep, in a thread: the ledger's page cache, then what the heap has free
        (what start-up, the sweep or a status freed)."""
        self.ledger.release_memory()
        give_back_free_memory()


class _Launching:
    """Counts the slots launched and not yet begun: :meth:`claim` one, :meth:`begun` ends it."""

    __slots__ = ("_left", "_room")

    def __init__(self) -> None:
        self._left = 0
        self._room: anyio.Event | None = None  # while someone waits

    def begun(self) -> None:
        self._left -= 1
        if self._room is not None:
            self._room.set()
            self._room = None

    async def claim(self, most: int) -> None:
        """Wait until fewer than ``most`` are launched and not yet begun, then count one more."""
        while self._left >= most:
            if self._room is None:
                self._room = anyio.Event()
            await self._room.wait()
        self._left += 1


def _process_changes(old: ProgramSpec, new: ProgramSpec) -> list[str]:
    """The keys of :data:`PROCESS_KEYS` whose values differ."""
    return [key for key in PROCESS_KEYS if getattr(old, key) != getattr(new, key)]


async def _settle(command: Callable[[], Awaitable[ProcessStatus]]) -> None:
    """Run a reload's start or restart of one slot; a slot closed meanwhile is no error."""
    try:
        await command()
    except InvalidTransition as exc:
        logger.info("reload: %s", exc)


def _secrets(config: Config) -> frozenset[str]:
    """The variables of dsup's environment that no worker gets: the bot token's."""
    discord = config.discord
    return frozenset({discord.token_env}) if discord and discord.token_env else frozenset()
