"""Workers' progress in Discord: one message per run, edited in place, finished at the end.

One task queues each run's bar in the outbox for the results channel and its edits at most
every :data:`EDIT_SECONDS` (edits still waiting collapse into one); runs kept are bounded.
Markers on the message and its last edit let the next dsup close what a killed one left open.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import discord

from supervisor import humanize, signals
from supervisor.config.schema import Relay
from supervisor.events import ProgressReported, StateChanged
from supervisor.state.progress_posts import ENDED, STARTED, open_progress

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from anyio.abc import TaskStatus

    from supervisor.config.schema import DiscordSpec, ProgramSpec
    from supervisor.events import Event, Progress
    from supervisor.state.ledger import Ledger
    from supervisor.state.outbox import Outbox
    from supervisor.state.progress_posts import OpenProgress

logger = logging.getLogger(__name__)

EDIT_SECONDS = 5.0
"""The least time between two edits of one run's progress message."""
TICK_SECONDS = 1.0
"""Time between two looks at what changed, while a change is not queued yet (none: no look)."""
MAX_RUNS = 100
"""Runs whose progress is tracked at once; beyond, new runs are not shown."""


@dataclass(slots=True)
class _Run:
    process: str
    progress: Progress
    row_id: int | None = None  # the outbox row of its message, once queued
    shown_at: float = float("-inf")
    dirty: bool = True
    ended: str = ""  # why the run is over: "" while it runs


def progress_text(process: str, progress: Progress, ended: str = "") -> str:
    """The message: who, the bar and percentage, the worker's text, and the end."""
    text = discord.utils.escape_mentions(discord.utils.escape_markdown(progress.text))
    line = f"**{process}** `{humanize.progress_bar(progress.fraction, 20)}`"
    if text:
        line += f" {text[:200]}"
    return f"{line}\n{ended}" if ended else line


class ProgressRelay:
    """Shows the progress of a node's workers in Discord. A fleet ``EventSink``.

    A run's message is an outbox row marked ``progress:RUN``, the edit that ends it
    is marked ``progress-ended:RUN``; a message a killed dsup left without its end is
    closed by :meth:`serve` at the next start, once.

    Args:
        spec: the ``[discord]`` table (the results channel, else the log channel).
        outbox: where the messages and their edits go.
        ledger: the messages left open by an earlier dsup, and how their runs ended.
        programs: the node's programs now (each one's ``relay``).
        clock: monotonic seconds.
        wall: wall-clock seconds.
        edit_seconds: see :data:`EDIT_SECONDS`.
        tick_seconds: see :data:`TICK_SECONDS`.
    """

    def __init__(
        self,
        spec: DiscordSpec,
        outbox: Outbox,
        ledger: Ledger,
        programs: Callable[[], Mapping[str, ProgramSpec]],
        *,
        clock: Callable[[], float] = anyio.current_time,
        wall: Callable[[], float] = time.time,
        edit_seconds: float = EDIT_SECONDS,
        tick_seconds: float = TICK_SECONDS,
    ) -> None:
        self.channel_id = spec.results_channel or spec.log_channel
        self._outbox = outbox
        self._ledger = ledger
        self._programs = programs
        self._clock = clock
        self._wall = wall
        self._edit = edit_seconds
        self._tick = tick_seconds
        self._runs: dict[str, _Run] = {}
        self._writing = anyio.Lock()
        self._changed = anyio.Event()  # set when a run has a change to show

    def deliver(self, event: Event) -> None:
        """Keep a run's latest progress, or note that it ended; never blocks."""
        if isinstance(event, ProgressReported):
            run = self._runs.get(event.run_id)
            if run is not None:
                run.progress, run.dirty = event.progress, True
            elif len(self._runs) < MAX_RUNS and self._relays(event.process):
                self._runs[event.run_id] = _Run(event.process, event.progress)
            else:
                return
            self._changed.set()
        elif (
            isinstance(event, StateChanged)
            and event.run_id in self._runs
            and not event.new.is_alive
        ):
            run = self._runs[event.run_id]
            run.ended, run.dirty = ended_text(event), True
            self._changed.set()

    def _relays(self, process: str) -> bool:
        spec = self._programs().get(process.rpartition(":")[0])
        relayed = spec is not None and spec.relay in (Relay.RESULTS, Relay.ALL)
        return bool(self.channel_id) and relayed

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Queue progress messages and their edits in the outbox until cancelled.

        First closes the messages of runs that ended while no dsup could say so
        (dsup was killed): start it before anything else queues progress.
        """
        await anyio.to_thread.run_sync(self._settle_stale)
        task_status.started()
        while True:
            # Every tick while a change waits (an edit's pace), else asleep until one comes.
            self._changed = anyio.Event()
            if not any(run.dirty for run in self._runs.values()):
                await self._changed.wait()
            await anyio.sleep(self._tick)
            await self._write(final=False)

    async def flush(self) -> None:
        """Queue every change not queued yet, whatever the pace (dsup stops)."""
        await self._write(final=True)

    async def _write(self, *, final: bool) -> None:
        # One write at a time: a run's first post must be done before its edits.
        async with self._writing:
            due = self._due(final=final)
            if due:
                await anyio.to_thread.run_sync(self._queue, due)

    def _due(self, *, final: bool = False) -> list[tuple[str, _Run, str]]:
        """The runs to show now, with their text (taken on the event loop)."""
        now = self._clock()
        due = []
        for run_id, run in self._runs.items():
            finished = final or bool(run.ended) or run.progress.fraction >= 1.0
            if run.dirty and (finished or now - run.shown_at >= self._edit):
                run.dirty, run.shown_at = False, now
                due.append((run_id, run, progress_text(run.process, run.progress, run.ended)))
        for run_id, run, _ in due:
            if _is_over(run):
                del self._runs[run_id]  # finished: its last text is queued
        return due

    def _queue(self, due: list[tuple[str, _Run, str]]) -> None:
        """Post or edit each run's message in the outbox (worker thread)."""
        for run_id, run, text in due:
            over = _is_over(run)
            if run.row_id is not None:
                try:
                    run.row_id = self._outbox.edit(
                        run.row_id, text, now=self._wall(), marker=ENDED + run_id if over else None
                    )
                    continue
                except LookupError:  # pruned: a run that reported nothing for very long
                    logger.info("discord: progress of %s posted anew", run.process)
            run.row_id = self._outbox.post(
                self.channel_id,
                "progress",
                text,
                now=self._wall(),
                marker=None if over else STARTED + run_id,  # an end is final: no marker
            )

    def _settle_stale(self) -> None:
        """Close the progress messages an earlier dsup left open (worker thread), once."""
        for left in open_progress(self._ledger):
            try:
                self._outbox.edit(
                    left.row_id,
                    settled_text(left),
                    now=self._wall(),
                    marker=ENDED + left.run_id,
                )
            except LookupError:  # its row went meanwhile (its write was lost)
                continue


def _is_over(run: _Run) -> bool:
    """True once a run's text is its last: it ended, or reached 100 %."""
    return bool(run.ended) or run.progress.fraction >= 1.0


def ended_text(event: StateChanged) -> str:
    """The last line of the message of a run that ended while dsup watched."""
    return f"Ended: {event.new.value} ({event.reason})"


def settled_text(left: OpenProgress) -> str:
    """The last text of a run of an earlier dsup: its bar, and how it ended as the ledger knows."""
    if left.ended_at is None:
        end = "Ended: dsup was stopped while it ran"
    elif left.exit_signal is not None:
        end = f"Ended: killed by {signals.name(left.exit_signal)}"
    else:
        end = f"Ended: exit {left.exit_code}"
    return f"{left.content.partition(chr(10))[0]}\n{end}"
