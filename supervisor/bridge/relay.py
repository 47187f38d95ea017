"""The relay: the fleet's events and output, turned into outbox rows bound for Discord.

A sink that never blocks a pipe: delivering only updates bounded memory, and one task writes
what is due to the outbox, paced to the channel. The sender drains the outbox.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import anyio

from supervisor.bridge import audit_feed
from supervisor.bridge.incident import (
    LINE_CHARS,
    MIN_RECOVER_SECONDS,
    TAIL_LINES,
    Incidents,
    also_crashed,
    is_crash,
    recover_seconds,
    render,
)
from supervisor.bridge.results import result_attach, result_message
from supervisor.bridge.stream import OutputStream, state_note
from supervisor.commands.tail import last_words, log_marks
from supervisor.config.schema import Relay as RelayMode
from supervisor.events import (
    OrphansCleaned,
    OutputChunk,
    ProcessState,
    ResultReported,
    StateChanged,
)
from supervisor.output.pump import DropTally
from supervisor.state.incident_posts import OPENED, STATE, open_incidents, state_value

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from anyio.abc import TaskStatus

    from supervisor.bridge.incident import Incident, LogSpan
    from supervisor.commands.tail import LogMarks
    from supervisor.config.schema import DiscordSpec, ProgramSpec
    from supervisor.events import Event
    from supervisor.state.ledger import Ledger
    from supervisor.state.outbox import Claim, Kind, Outbox

logger = logging.getLogger(__name__)

STREAM_BYTES = 64 * 1024
"""Bytes of whole lines taken per read while the output stream has room; the stream keeps
what fits its bound and omits the rest."""
TICK_SECONDS = 0.25
"""The longest time between two looks at what is due to the outbox while something changes
with time alone (rows pending, incidents open); and how long after output comes to an idle
relay it looks (what comes meanwhile goes in the same message)."""
INTERVAL_SECONDS = 1.0
"""At most one output message per channel per this, and one audit batch."""
TAIL_PIECE_BYTES = 4 * LINE_CHARS
"""Lines of an incident are read from the logs in pieces of at most this (bounded reads)."""
AUDIT_BATCH_ROWS = 100
MAX_WAITING_MESSAGES = 1000
"""Results and audit lines waiting for the next tick; beyond, they are counted and logged."""
AUDIT_CURSOR = "audit_cursor"
PREAMBLE_CHARS = 1000
"""State changes that may ride ahead of an incident in its first message; when more wait,
the output stream's message takes the channel's turn first."""
INCIDENT_WAIT_SECONDS = 10.0
"""An incident waiting its turn longer than this goes ahead of the stream's message."""
STUCK_SECONDS = 5.0
"""Rows waited this long in the log channel without a pause (Discord slow or away, or a
backlog): incidents are then written at once, kept on disk, instead of waiting their turn
in memory, and output as :func:`should_emit` decides behind pending rows."""
_FLUSH_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayChannels:
    """Where relayed messages go (0: nowhere)."""

    log: int = 0
    results: int = 0
    audit: int = 0

    @classmethod
    def of(cls, spec: DiscordSpec) -> RelayChannels:
        """The channels of a ``[discord]`` table; results go to the log channel by default."""
        return cls(
            log=spec.log_channel,
            results=spec.results_channel or spec.log_channel,
            audit=spec.audit_channel,
        )


def should_emit(
    *,
    pending_rows: int,
    since_last: float,
    waiting_chars: int,
    has_notes: bool,
    interval: float,
    holds_a_message: bool,
    channel_wait: float = 0.0,
) -> bool:
    """Whether the output stream writes its next message now.

    A message is written only once the channel has sent the one before and
    may send the next (``channel_wait``, from the sender's pacing: Discord
    allows about one message a second per channel), at most once per
    ``interval``: it goes at once, and what comes meanwhile (state changes
    first) rides in the next one instead of queueing behind a row written
    ahead of its turn. While rows wait (Discord is slow or away), a message
    goes at most once per two intervals, and output alone only in full
    messages, so the backlog drains faster than output grows it and an outage
    fills few, dense rows (``holds_a_message``: the stream's next message is as
    full as it gets).
    """
    if channel_wait > 0:
        return False
    if pending_rows == 0:
        return since_last >= interval and (has_notes or waiting_chars > 0)
    if since_last < 2 * interval:
        return False
    return has_notes or holds_a_message


class ClaimHandOver(Protocol):
    """The sender's side of a claim made in the relay's own trip to the ledger."""

    def begin_claim(self) -> Callable[[], Claim] | None:
        """The claim to run in the worker thread after the writes; None: write only."""

    def end_claim(self, claim: Claim | None) -> None:
        """Back on the event loop: what the claim took (None: it was not made)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Write:
    """One outbox write planned on the event loop, done in a worker thread."""

    channel: int
    kind: Kind
    content: str
    edit_of: int | None = None
    counts: Mapping[str, int] | None = None
    reply_to: int | None = None
    meta: tuple[str, str] | None = None
    marker: str | None = None
    incident: Incident | None = None
    version: int = 0
    attach: str = ""


class Relay:
    """Relays a node's activity to Discord through the outbox.

    An ``EventSink`` and an ``OutputConsumer`` for the fleet; ``run`` is its task.

    Args:
        programs: the node's programs now (each one's ``relay`` and
            ``start_seconds``; a reload changes them).
        outbox: where messages are written.
        ledger: the audit rows to relay.
        log_dir: the processes' log files (an incident's last lines).
        channels: where messages go.
        clock: monotonic seconds (pacing, recovery).
        wall: wall-clock seconds (display).
        interval: at most one output message per channel per this.
        min_recover_seconds: the floor of the RUNNING time that closes an incident.
        tick_seconds: the longest time between two looks at what is due.
        channel_wait: seconds until a channel may post its next message (the
            sender's pacing); None: no wait known.
        edit_wait: the same for editing a message of a channel.
        stuck_seconds: see :data:`STUCK_SECONDS`.
        hand_over: the sender, to claim the rows due in the same trip to the
            ledger as the writes (one trip a message instead of two).
    """

    def __init__(
        self,
        programs: Callable[[], Mapping[str, ProgramSpec]],
        outbox: Outbox,
        ledger: Ledger,
        *,
        log_dir: Path,
        channels: RelayChannels,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        interval: float = INTERVAL_SECONDS,
        min_recover_seconds: float = MIN_RECOVER_SECONDS,
        tick_seconds: float = TICK_SECONDS,
        channel_wait: Callable[[int], float] | None = None,
        edit_wait: Callable[[int], float] | None = None,
        stuck_seconds: float = STUCK_SECONDS,
        hand_over: ClaimHandOver | None = None,
    ) -> None:
        self._outbox = outbox
        self._hand_over = hand_over
        self._ledger = ledger
        self._log_dir = log_dir
        self.channels = channels
        self._clock = clock
        self._wall = wall
        self._interval = interval
        self._min_recover = min_recover_seconds
        self._tick = tick_seconds
        self._channel_wait = channel_wait
        self._edit_wait_of = edit_wait
        self._stuck = stuck_seconds
        self._wakeup = anyio.Event()
        # When the sleeping writer looks next unless woken (clock); -inf while it works
        # (it then works out its next look with all that came meanwhile).
        self._look_at = -math.inf
        # The sleeping writer's timer (None while it works), and the same while no output
        # waits: the first that comes brings its look to a tick from then.
        self._timer: anyio.CancelScope | None = None
        self._resting: anyio.CancelScope | None = None
        self._recount = False  # the log channel's pending rows may have changed
        self._programs = programs
        self._known: Mapping[str, ProgramSpec] = {}
        self._modes: dict[str, RelayMode] = {}
        self._incidents = Incidents(recover_after=self._recover_after)
        self._stream = OutputStream()
        self._tallies: dict[str, DropTally] = {}  # omitted, sized only, per process
        self._starts: dict[str, LogMarks | None] = {}  # where its logs ended at its start
        self._waiting: deque[_Write] = deque()
        self._audit_lines: deque[str] = deque()
        self._missed = 0
        self._last_output = -float("inf")
        self._last_audit = -float("inf")
        self._audit_cursor: int | None = None
        self._audit_read = -1  # the ledger's audit writes when its rows were last all read
        self._log_pending = 0  # rows pending in the log channel when last counted
        self._log_busy_since = 0.0  # when rows last began to wait there (clock)

    # -- producers (event loop; never block) ---------------------------------

    def room(self, process: str) -> tuple[int, DropTally | None]:
        """Bytes of whole lines of ``process`` the relay takes now (the rest of a read is
        omitted), and the tally of its omitted lines: the pump's one question per read.

        ``STREAM_BYTES`` while the output stream has room, none (omitted) once
        it is full; none at all (-1, no tally) when ``process`` does not relay
        its output: incidents read their lines from the log files, so "errors"
        and "results" cost nothing per byte.

        The tally's lines are counted while few were omitted since the last
        message (its ``count_bytes``), then sized only. Past that, a flood's
        omitted lines are estimated from their size, which the pump adds to the
        tally with no chunk per read; the relay takes it when it writes a
        message or gets that process's next lines. That answer is held (the
        pump does not ask at every read of a flood) until only what changes it
        does: a message written, or the writer's next look after a reload.
        """
        if self._mode(process) is not RelayMode.ALL or not self.channels.log:
            return -1, None
        stream = self._stream
        tally = self._tallies.get(process)
        if tally is None:
            tally = self._tallies[process] = DropTally()
        tally.count_bytes = budget = stream.count_budget
        if stream.is_full:
            tally.is_held = not budget
            return 0, tally
        return STREAM_BYTES, tally

    def deliver(self, event: Event) -> None:
        """Take one event: update incidents, the stream or audit lines."""
        if isinstance(event, OutputChunk):
            self._take_output(event)
        elif isinstance(event, StateChanged):
            self._take_state(event)
        elif isinstance(event, ResultReported):
            result = event.result
            self.post_result(result.process, result_message(result), attach=result_attach(result))
        elif isinstance(event, OrphansCleaned) and self.channels.audit:
            self._note_audit(audit_feed.orphans_line(event, self._wall()))

    def post_result(
        self, process: str, text: str, *, reply_to: int | None = None, attach: str = ""
    ) -> bool:
        """Queue a worker's result for the results channel (``relay`` of results or all).

        Written to the outbox at the next tick; never blocks.

        Returns:
            False when the program does not relay results (or no channel is set).
        """
        if not self.channels.results or self._mode(process) not in (
            RelayMode.RESULTS,
            RelayMode.ALL,
        ):
            return False
        self._queue(
            _Write(
                channel=self.channels.results,
                kind="result",
                content=text,
                reply_to=reply_to,
                attach=attach,
            )
        )
        return True

    def _take_output(self, chunk: OutputChunk) -> None:
        """Stream what fits (decoding only that); the rest is omitted."""
        if self._mode(chunk.process) is RelayMode.ALL and self.channels.log:
            tally = self._tallies.get(chunk.process)
            if tally is not None:  # omitted before these lines
                self._take_tally(chunk.process, tally)
            self._stream.add(
                chunk.process, chunk.data, chunk.dropped_bytes, chunk.dropped, chunk.uncounted_bytes
            )
            timer, self._resting = self._resting, None
            if timer is not None and self._clock() + self._tick < self._look_at:
                # The first output while the writer rests: it looks a tick from now, as
                # a tick found output, so a burst's first message holds more than a read.
                self._look_at = self._clock() + self._tick
                timer.deadline = anyio.current_time() + self._tick

    def _take_tallies(self) -> None:
        """Put in the stream what the pumps omitted by size since the relay last looked."""
        for process, tally in self._tallies.items():
            self._take_tally(process, tally)

    def _release_tallies(self) -> None:
        """Let the pumps ask :meth:`room` again (a message was taken, or a reload)."""
        for tally in self._tallies.values():
            tally.is_held = False

    def _take_tally(self, process: str, tally: DropTally) -> None:
        if tally.size:
            self._stream.omit(process, tally.take())

    def _take_state(self, event: StateChanged) -> None:
        mode = self._mode(event.process)
        if event.new is ProcessState.FATAL and self.channels.audit:
            self._note_audit(audit_feed.fatal_line(event))
        if mode is RelayMode.NONE or not self.channels.log:
            return
        if mode is RelayMode.ALL:
            self._stream.add_note(state_note(event))
            # A storm of state changes wakes the writer only when its note may go
            # before the writer looks anyway.
            if self._clock() + self._next_look() < self._look_at:
                self._wakeup.set()
        span: LogSpan | None = None
        if event.new is ProcessState.STARTING:
            self._starts[event.process] = log_marks(self._log_dir, event.process)
        elif is_crash(event):
            # Where the logs end now: the run's last words are in them (the pumps
            # caught up before its exit was reported), later runs' lines are not.
            span = (self._starts.pop(event.process, None), log_marks(self._log_dir, event.process))
            self._wakeup.set()
        self._incidents.on_state(event, now=self._clock(), span=span)

    def finished(self, channel: int, pending: int | None = None) -> None:
        """A send to ``channel`` ended: when it is the log channel, its next message may go.

        Args:
            channel: where the send went.
            pending: the rows still pending there, when the sender counted them
                (else the relay counts them again before writing output).
        """
        if channel == self.channels.log:
            if pending is None:
                self._recount = True
                self._wakeup.set()
                return
            self._count_log(pending)
            self._recount = False
            self._look_again()

    def _look_again(self) -> None:
        """Bring the sleeping writer's next look to when it is due now that the log channel
        was counted: sooner (it is woken: a message or incident may go), or later (its
        timer moves: a tick set while a row was pending finds nothing to do once it is
        sent)."""
        timer = self._timer
        if timer is None:  # working: it works out its next look once done
            return
        wait = self._next_look()
        if self._clock() + wait < self._look_at:
            self._wakeup.set()
        elif self._clock() + wait > self._look_at:
            self._look_at = self._clock() + wait
            timer.deadline = anyio.current_time() + wait

    def _count_log(self, pending: int) -> None:
        """The log channel has ``pending`` rows waiting to be sent."""
        if pending and not self._log_pending:
            self._log_busy_since = self._clock()
        elif not pending:
            self._incidents.sent()
        self._log_pending = pending

    def _note_audit(self, line: str) -> None:
        if len(self._audit_lines) >= MAX_WAITING_MESSAGES:
            self._missed += 1
            return
        self._audit_lines.append(line)

    def _queue(self, write: _Write) -> None:
        if len(self._waiting) >= MAX_WAITING_MESSAGES:
            self._missed += 1
            logger.error("relay: %d messages not queued: too many waiting", self._missed)
            return
        self._waiting.append(write)
        self._wakeup.set()

    def _mode(self, process: str) -> RelayMode:
        """How ``process`` relays, worked out once per process and again after a reload.

        Asked by ``room`` on every read of every pipe: a flood must not pay
        for a look-up of its program each time.
        """
        programs = self._programs()
        if programs is not self._known:
            self._known, self._modes = programs, {}
        mode = self._modes.get(process)
        if mode is None:
            spec = self._known.get(process.rpartition(":")[0] or process)
            mode = self._modes[process] = spec.relay if spec else RelayMode.NONE
        return mode

    def _recover_after(self, process: str) -> float:
        spec = self._programs().get(process.rpartition(":")[0])
        return recover_seconds(spec.start_seconds if spec else 1.0, self._min_recover)

    # -- the writer task -----------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Write what is due to the outbox until cancelled.

        Looks when a crash comes, when a state change may go sooner than it
        would look, when the log channel sent a row, when the next message is
        due, a tick after output comes to an idle relay, every tick while rows
        are pending or incidents open, and every interval with an audit channel
        (its rows are read from the ledger); at rest, never. When
        cancelled, writes everything still waiting (shielded, bounded) first.
        """
        await self.prepare()
        task_status.started()
        try:
            while True:
                wait = self._next_look()
                self._look_at = self._clock() + wait
                with anyio.move_on_after(wait) as timer:
                    self._timer = timer
                    self._resting = None if self._stream.waiting_chars else timer
                    await self._wakeup.wait()
                self._timer = self._resting = None
                self._wakeup = anyio.Event()
                self._look_at = -math.inf
                self._recount |= timer.cancelled_caught
                try:
                    await self.flush()
                except Exception:
                    # Never through the relay itself: the log only, then the next tick.
                    logger.exception("relay: writing to the outbox failed")
                    await anyio.sleep(self._tick)
        finally:
            with anyio.move_on_after(_FLUSH_TIMEOUT, shield=True):
                await self.flush(final=True)

    async def flush(self, *, final: bool = False) -> None:
        """Write to the outbox what is due now (everything with ``final``)."""
        if self._programs() is not self._known:  # a reload: how each process relays
            self._release_tallies()
        now, wall = self._clock(), self._wall()
        self._incidents.tick(now=now, wall=wall)
        await self._read_tails()
        changed = self._incidents.changed()
        waiting = bool(changed) or self._stream.waiting_chars > 0
        if self._log_pending and (self._recount or final) and waiting:
            # Has the channel sent what was pending? Incidents and output wait for it.
            # Counted after a send or a tick, not at every state change of a storm.
            self._recount = False
            self._count_log(await anyio.to_thread.run_sync(self._outbox.pending, self.channels.log))
        writes = self._log_writes(changed, now, final=final)
        writes.extend(self._waiting)
        self._waiting.clear()
        writes.extend(await self._audit_writes(now, final=final))
        if not writes:
            return
        # One trip to a worker thread for all of them, and the sender's claim of what
        # is due (its rows among them): under a flood of output, each trip waits
        # for the event loop's next turn.
        hand_over = self._hand_over
        claim = hand_over.begin_claim() if hand_over is not None else None
        claimed: Claim | None = None
        try:
            ids, pending, claimed = await anyio.to_thread.run_sync(self._apply, writes, wall, claim)
        finally:
            if hand_over is not None and claim is not None:
                hand_over.end_claim(claimed)
        self._count_log(pending)
        for write, row_id in zip(writes, ids, strict=True):
            if write.incident is not None:
                self._incidents.posted(write.incident, version=write.version, row_id=row_id)

    def _log_writes(self, changed: list[Incident], now: float, *, final: bool) -> list[_Write]:
        """The incidents' and the output stream's rows due in the log channel now.

        Discord takes about one new message a second in a channel, so its turns are
        dealt here, one at a time, and no row waits behind others in the outbox:
        the oldest incident without a message takes the next turn, carrying the
        state changes waiting ahead of it (up to :data:`PREAMBLE_CHARS`; when more
        wait, the stream's message goes first); output waits until every incident
        has its message. An edit goes when the channel is idle and may edit, or
        at once when the incident's last row may still wait (it changes that row).
        When rows have waited there for a while (Discord slow or away, a
        backlog), or at the end, every incident is written at once instead: kept
        on disk, never lost.
        """
        if final or (self._log_pending and now - self._log_busy_since >= self._stuck):
            writes = [self._incident_write(i) for i in changed]
            return writes + self._output_writes(now, final=final)
        creates = [i for i in changed if i.row_id is None]
        edits = [i for i in changed if i.row_id is not None]
        writes = [self._incident_write(i) for i in edits if i.is_unsent]
        if self._log_pending:
            return writes
        notes = self._stream.notes_chars
        first = creates[0] if creates and self._log_wait() <= 0 else None
        if first and (notes <= PREAMBLE_CHARS or now - first.due_at >= INCIDENT_WAIT_SECONDS):
            notes_taken = self._stream.take_notes(PREAMBLE_CHARS)
            first.preamble = "\n".join(filter(None, [notes_taken, self._also(creates[1:])]))
            writes.append(self._incident_write(first))
        elif not creates or notes > PREAMBLE_CHARS:
            writes.extend(self._output_writes(now, final=False))
        fresh = [i for i in edits if not i.is_unsent]
        if fresh and self._edit_wait() <= 0:
            writes.append(self._incident_write(fresh[0]))
        return writes

    def _also(self, waiting: list[Incident]) -> str:
        """A line naming the crashes whose incidents wait for their turn (once each), or "".

        A program relaying "all" says its crashes among the state changes already.
        """
        told = [i for i in waiting if not i.is_told and self._mode(i.process) is not RelayMode.ALL]
        for incident in told:
            incident.is_told = True
        return also_crashed([i.process for i in told])

    def _incident_write(self, incident: Incident) -> _Write:
        # What a next dsup needs to continue or close it, written with its message.
        state = state_value(
            opened_at=incident.opened_at, crashes=incident.crashes, is_closed=bool(incident.closed)
        )
        return _Write(
            channel=self.channels.log,
            kind="incident",
            content=render(incident),
            edit_of=incident.row_id,
            meta=(STATE + incident.process, state),
            marker=OPENED + incident.process,
            incident=incident,
            version=incident.version,
        )

    def _next_look(self) -> float:
        """Seconds until the writer looks again, unless woken: when output or an incident
        waiting its turn is due, or what changes with time alone (:meth:`_unprompted`).

        As :func:`should_emit` and :meth:`_log_writes` decide: behind pending rows,
        only state changes or a full message are ever due, and only once the rows
        are stuck (a send that ends wakes the writer before).
        """
        look = self._unprompted()
        if not self._log_pending:  # the incidents' turns (see _log_writes)
            changed = self._incidents.changed()
            if self._stream.notes_chars <= PREAMBLE_CHARS and any(
                i.row_id is None for i in changed
            ):
                look = min(look, self._log_wait())
            if any(i.row_id is not None for i in changed):
                look = min(look, self._edit_wait())
        stream = self._stream
        if not stream.waiting_chars:
            return look
        if self._log_pending and not (stream.has_notes or stream.holds_a_message):
            return look
        wait = self._interval * (2 if self._log_pending else 1)
        due = self._last_output + wait
        if self._log_pending:  # behind pending rows, output goes once they are stuck
            due = max(due, self._log_busy_since + self._stuck)
        return min(look, max(due - self._clock(), self._log_wait(), 0.0))

    def _unprompted(self) -> float:
        """Seconds until the writer must look though nothing woke it (inf: never).

        A tick while the log channel's rows are pending (counted again after a
        tick; stuck after a while), incidents are open (they recover with time)
        or the stream is full with no line to show; an interval with an audit
        channel (its rows are read from the ledger). Output, state changes,
        crashes, results and sends wake the writer.
        """
        stream = self._stream
        if (
            self._log_pending
            or not self._incidents.is_empty()
            or (stream.is_full and not stream.waiting_chars)
        ):
            return self._tick
        return self._interval if self.channels.audit else math.inf

    def _log_wait(self) -> float:
        """Seconds until the log channel may post its next message."""
        return self._channel_wait(self.channels.log) if self._channel_wait else 0.0

    def _edit_wait(self) -> float:
        """Seconds until the log channel may edit a message."""
        return self._edit_wait_of(self.channels.log) if self._edit_wait_of else 0.0

    async def _read_tails(self) -> None:
        """Read the last lines of the runs that crashed since the last flush (a thread)."""
        due = [(i, span) for i in self._incidents.tails_due() if (span := i.span) is not None]
        if not due:
            return
        pieces = [self._piece_bytes(incident.process) for incident, _ in due]

        def read(process: str, span: LogSpan, piece: int) -> tuple[str, list[str]]:
            try:
                return last_words(
                    self._log_dir,
                    process,
                    TAIL_LINES,
                    max_line_bytes=piece,
                    since=span[0],
                    until=span[1],
                )
            except OSError as exc:  # the incident goes out without its lines
                logger.warning("relay: cannot read the last lines of %s: %s", process, exc)
                return "stderr", []

        read_tails = await anyio.to_thread.run_sync(
            lambda: [read(i.process, span, p) for (i, span), p in zip(due, pieces, strict=True)]
        )
        for (incident, span), (stream, lines) in zip(due, read_tails, strict=True):
            self._incidents.tail_read(incident, span, stream, lines)

    def _piece_bytes(self, process: str) -> int:
        spec = self._programs().get(process.rpartition(":")[0])
        return min(spec.max_line_bytes, TAIL_PIECE_BYTES) if spec else TAIL_PIECE_BYTES

    def _output_writes(self, now: float, *, final: bool) -> list[_Write]:
        stream = self._stream
        if not stream.waiting_chars:
            return []
        emit = final or should_emit(
            pending_rows=self._log_pending,
            since_last=now - self._last_output,
            waiting_chars=stream.waiting_chars,
            has_notes=stream.has_notes,
            interval=self._interval,
            holds_a_message=stream.holds_a_message,
            channel_wait=self._log_wait(),
        )
        writes: list[_Write] = []
        if emit:
            self._take_tallies()
            self._release_tallies()
        while emit and (excerpt := stream.take()) is not None:
            self._last_output = now
            writes.append(
                _Write(
                    channel=self.channels.log,
                    kind="state" if excerpt.has_notes else "output",
                    content=excerpt.content,
                    counts=excerpt.counts,
                )
            )
            emit = final
        return writes

    async def _audit_writes(self, now: float, *, final: bool) -> list[_Write]:
        if not self.channels.audit or self._audit_cursor is None:
            return []
        if not final and now - self._last_audit < self._interval:
            return []
        written = self._ledger.audit_writes
        rows = []
        if written != self._audit_read:  # no trip to the ledger's thread for nothing new
            rows = await anyio.to_thread.run_sync(
                self._ledger.audit_since, self._audit_cursor, AUDIT_BATCH_ROWS
            )
            if len(rows) < AUDIT_BATCH_ROWS:  # else more wait: read again at the next look
                self._audit_read = written
        lines = [*self._audit_lines, *audit_feed.command_lines(rows)]
        self._audit_lines.clear()
        if rows:
            self._audit_cursor = rows[-1].id
        if not lines:
            return []
        self._last_audit = now
        messages = audit_feed.pack(lines)
        cursor = (AUDIT_CURSOR, str(self._audit_cursor))
        return [
            _Write(
                channel=self.channels.audit,
                kind="audit",
                content=text,
                # The cursor moves with the last message: a crash in between repeats none.
                meta=cursor if index == len(messages) - 1 else None,
            )
            for index, text in enumerate(messages)
        ]

    async def prepare(self) -> None:
        """Take over the incidents an earlier dsup left open, and find where the audit
        channel left off (``run`` does it first).

        A new audit channel starts from the newest row: it shows what happens
        from now on, not the history.
        """
        left = await anyio.to_thread.run_sync(open_incidents, self._ledger)
        programs = self._programs()
        for incident in left:
            known = incident.process.rpartition(":")[0] in programs
            self._incidents.inherit(incident, now=self._clock(), wall=self._wall(), is_known=known)
        if not self.channels.audit:
            return

        def load() -> int:
            stored = self._outbox.meta(AUDIT_CURSOR)
            if stored is not None:
                return int(stored)
            newest = self._ledger.audit_newest_id()
            self._outbox.set_meta(AUDIT_CURSOR, str(newest))
            return newest

        self._audit_cursor = await anyio.to_thread.run_sync(load)

    def _apply(
        self, writes: list[_Write], wall: float, claim: Callable[[], Claim] | None
    ) -> tuple[list[int], int, Claim | None]:
        """Do the writes in order, then ``claim`` (worker thread); the row id of each, the
        rows pending in the log channel (counted by the claim when one is made), and what
        the claim took."""
        ids = []
        for write in writes:
            if write.edit_of is not None:
                try:
                    ids.append(
                        self._outbox.edit(write.edit_of, write.content, now=wall, meta=write.meta)
                    )
                    continue
                except LookupError:
                    logger.info("relay: message %d pruned; posting anew", write.edit_of)
            ids.append(
                self._outbox.post(
                    write.channel,
                    write.kind,
                    write.content,
                    now=wall,
                    reply_to=write.reply_to,
                    counts=write.counts,
                    meta=write.meta,
                    marker=write.marker,
                    attach=write.attach,
                )
            )
        claimed = claim() if claim is not None else None
        if claimed is None or claimed.pending is None:
            return ids, self._outbox.pending(self.channels.log), claimed
        return ids, claimed.pending.get(self.channels.log, 0), claimed
