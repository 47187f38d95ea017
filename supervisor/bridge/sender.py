"""The sender: drains the outbox into Discord, once per row, paced, whatever fails.

A create carries the row's nonce (``enforce_nonce``) and, past its window, the channel is
searched for the row's marker first, so a retry never posts twice. Requests go through the
bridge's one :class:`Messenger`.
"""

from __future__ import annotations

import asyncio
import io
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import aiohttp
import anyio
import discord

from supervisor.bridge.messenger import UNKNOWN_MESSAGE, Delivery, Messenger
from supervisor.bridge.pacing import Breaker, Pacer, route_of
from supervisor.bridge.results import attachments
from supervisor.state.outbox import retry_delay

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import SimpleNamespace

    from anyio.abc import TaskGroup, TaskStatus

    from supervisor.bridge.health import HealthRecord
    from supervisor.bridge.pacing import Pause, RouteKey
    from supervisor.state.outbox import Claim, Outbox, OutboxRow, OutboxStats

logger = logging.getLogger(__name__)

NONCE_WINDOW_SECONDS = 60.0
"""Trust ``enforce_nonce`` this long after a row's first attempt (Discord: "a few
minutes", undocumented); later, look for the row's marker in the channel first."""
POLL_SECONDS = 2.0
"""The longest time between two looks at the outbox while connected: a safety net. It
also looks when a row is written, after each send, and when a held, paced or failed
row may go. A look claims when a row may be found, or when this long passed since the
last claim (anyone's): the claim marks the messages Discord confirmed meanwhile."""
WAIT_READY_SECONDS = 0.1
"""How often to look whether the client is ready (no trip to the ledger meanwhile)."""
DRAIN_POLL_SECONDS = 0.05
MARK_STOP_SECONDS = 2.0
"""As the sender stops, how long marking the confirmed messages may take."""
HISTORY_LIMIT = 100


@dataclass(frozen=True, slots=True)
class _Confirmed:
    """A row Discord confirmed as ``message_id`` at ``at`` (wall clock), not marked yet."""

    row_id: int
    message_id: int
    at: float


class OutboxSender:
    """Sends the outbox's rows through the bridge's current client.

    Args:
        outbox: the rows to send.
        pacer: when each route may send (learns from ``trace_config``'s responses).
        breaker: pauses channels that refuse us.
        clock: monotonic seconds (pacing, pauses).
        wall: wall-clock seconds (the outbox's retry times, the nonce window).
        nonce_window: see :data:`NONCE_WINDOW_SECONDS`.
        poll_seconds: see :data:`POLL_SECONDS`.
        health: where a paused channel is said (``dsup ctl status``, the console
            and the board show the bridge's problems).
        on_finished: called after each send (sent or not) with its channel and the
            rows still pending there (None when not counted).
    """

    def __init__(
        self,
        outbox: Outbox,
        *,
        pacer: Pacer | None = None,
        breaker: Breaker | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        nonce_window: float = NONCE_WINDOW_SECONDS,
        poll_seconds: float = POLL_SECONDS,
        health: HealthRecord | None = None,
        on_finished: Callable[[int, int | None], None] | None = None,
    ) -> None:
        self._outbox = outbox
        self.pacer = pacer or Pacer()
        self.breaker = breaker or Breaker()
        self._clock = clock
        self._wall = wall
        self._nonce_window = nonce_window
        self._poll = poll_seconds
        self._health = health
        self._on_finished = on_finished
        self._wakeup = anyio.Event()
        # When the sleeping loop looks next unless woken (clock); -inf while it works
        # (it then works out its next look with all that came meanwhile).
        self._look_at = -float("inf")
        self._group: TaskGroup | None = None  # the sends' group, while running
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._current: Callable[[], discord.Client | None] = lambda: None
        self._busy: set[int] = set()
        self._held: dict[int, OutboxRow] = {}
        self._paced: dict[int, float] = {}  # channels that must wait, until when (clock)
        # Channels with pending rows not taken, and when their oldest is due (wall
        # clock), as of the last claim; and the outbox's writes that claim saw.
        self._waiting: dict[int, float] = {}
        self._claimed_writes = -1
        self._claimed_at = -float("inf")
        # Who makes the claim under way (no other may begin): the sender's own look,
        # or a writer's trip (begin_claim), whose end looks for the writes meanwhile.
        self._claiming: Literal["look", "writer"] | None = None
        # Rows Discord confirmed, marked sent by the next claim (a trip of their own
        # spared), and those the claim under way marks (given back if its result is lost).
        self._confirmed: list[_Confirmed] = []
        self._marking: list[_Confirmed] = []
        # Per row taken, the outbox's writes and its channel's pending rows at its claim.
        self._counted: dict[int, tuple[int, int | None]] = {}
        self._announced: set[int] = set()
        self._unread: set[int] = set()  # channels whose history was refused (said once)
        self.sent = 0
        outbox.watch(self.wake)

    def trace_config(self) -> aiohttp.TraceConfig:
        """An aiohttp trace for the client (``http_trace``): the pacer sees every response.

        discord.py's public ``http_trace`` option; nothing of discord.py is patched.
        """
        trace = aiohttp.TraceConfig()

        async def on_end(
            session: aiohttp.ClientSession,
            context: SimpleNamespace,
            params: aiohttp.TraceRequestEndParams,
        ) -> None:
            key = route_of(params.method, params.url.path)
            if key is not None:
                response = params.response
                self.pacer.observe(key, response.status, response.headers, self._clock())

        trace.on_request_end.append(on_end)
        return trace

    def paused(self) -> list[Pause]:
        """Channels paused now (shown by status and the board)."""
        return self.breaker.paused()

    def wake(self) -> None:
        """Look at the outbox now: rows were written. Safe from any thread.

        The outbox calls it after every write, often in a worker thread: then
        the look is handed to the event loop (it never blocks the writer). While
        a writer's claim is under way (:meth:`begin_claim`) nothing is done:
        its end looks, and claims again if the outbox was written after it began.
        """
        if self._claiming == "writer":
            return
        loop = self._loop
        if loop is None or threading.get_ident() == self._loop_thread:
            self._wake_now()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(self._wake_now)

    def _wake_now(self) -> None:
        self._wakeup.set()  # the event of the look under way, whenever this runs

    def begin_claim(self) -> Callable[[], Claim] | None:
        """Let a writer claim the due rows in its own trip to the ledger, after its writes.

        Saves the sender a trip of its own per message: the relay writes a row
        and claims it in one worker-thread call, and the sender starts it at
        :meth:`end_claim`. The claim is the sender's (same skips, same clock),
        so a row is claimed, recorded as being sent, before it goes, as ever.
        On the event loop; call :meth:`end_claim` afterwards, whatever happens.

        Returns:
            The claim to call in the worker thread; None when a claim is already
            under way or nothing could be sent now (no client ready): the writer
            only writes, and rows are claimed only when they may go.
        """
        if self._claiming is not None or self._ready() is None:
            return None
        self._claiming = "writer"
        return self._claim(frozenset(self._blocked()))

    def end_claim(self, claim: Claim | None) -> None:
        """Take what a writer's claim (:meth:`begin_claim`) took; None: it was not made.

        A row whose route may send goes at once; the others are held here until
        the sender's loop starts them. The loop looks again only when it must
        sooner than it would: a row held, written meanwhile, or due earlier.
        Rows claimed by a claim whose result was lost (the writer was cancelled)
        stay pending and are claimed again.
        """
        self._claiming = None
        if claim is None:
            self._claimed_writes = -1  # look at the outbox again
            self._unmarked()
            self._wakeup.set()
            return
        self._took(claim)
        client, group, now = self._ready(), self._group, self._clock()
        for row in claim.rows:
            if (
                client is not None
                and group is not None
                and self.pacer.ready_at(_route(row), now) <= now
            ):
                self._start(group, client, row, now)
            else:
                self._held[row.channel] = row
        if self._outbox.writes != claim.writes or now + self._next_look() < self._look_at:
            self._wakeup.set()

    def _claim(self, skip: frozenset[int]) -> Callable[[], Claim]:
        """The claim of the rows due, but in ``skip``'s channels (to run in a worker thread),
        after marking the messages Discord confirmed since the last claim."""
        marks = self._marking = self._confirmed
        self._confirmed = []

        def claim() -> Claim:
            self._mark(marks)
            return self._outbox.claim(now=self._wall(), skip=skip)

        return claim

    def _mark(self, marks: list[_Confirmed]) -> None:
        """Mark ``marks`` sent (worker thread)."""
        for mark in marks:
            self._outbox.mark_sent(mark.row_id, mark.message_id, now=mark.at)

    def _marked_stats(self, marks: list[_Confirmed]) -> OutboxStats:
        """Mark ``marks`` sent, then count the pending rows (worker thread)."""
        self._mark(marks)
        return self._outbox.stats()

    def _unmarked(self) -> None:
        """The claim under way was not made, or its result was lost: its marks are made again
        by the next (marking twice changes nothing)."""
        self._confirmed[:0] = self._marking
        self._marking = []

    def _took(self, claim: Claim) -> None:
        self._marking = []
        self._waiting = dict(claim.waiting)
        self._claimed_writes = claim.writes
        self._claimed_at = self._clock()
        for row in claim.rows:
            pending = claim.pending.get(row.channel) if claim.pending is not None else None
            self._counted[row.id] = (claim.writes, pending)

    def create_wait(self, channel: int) -> float:
        """Seconds until ``channel`` may post a new message (0: now)."""
        return self._route_wait(("create", channel))

    def edit_wait(self, channel: int) -> float:
        """Seconds until a message of ``channel`` may be edited (0: now)."""
        return self._route_wait(("edit", channel))

    def _route_wait(self, key: RouteKey) -> float:
        now = self._clock()
        return max(0.0, self.pacer.ready_at(key, now) - now)

    async def run(
        self,
        current: Callable[[], discord.Client | None],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Send due rows through ``current()`` (the bridge's client) until cancelled.

        Waits while there is no client or it has not yet been ready once; rows
        keep waiting in the outbox meanwhile. Cancelling abandons sends in
        flight: their rows stay pending and are sent again, once, later.
        """
        # discord.py runs on asyncio: writers in worker threads wake the sender through it.
        self._loop, self._loop_thread = asyncio.get_running_loop(), threading.get_ident()
        self._current = current
        task_status.started()
        try:
            async with anyio.create_task_group() as tg:
                self._group = tg
                while True:
                    client = self._ready()
                    if client is not None:
                        await self._start_due(tg, client)
                    elif self._confirmed:
                        await self._mark_alone()  # no claim comes while not ready
                    wait = WAIT_READY_SECONDS if client is None else self._next_look()
                    self._look_at = self._clock() + wait
                    with anyio.move_on_after(wait):
                        await self._wakeup.wait()
                    self._wakeup = anyio.Event()
                    self._look_at = -float("inf")
        finally:
            self._loop = self._loop_thread = None
            self._group = None
            self._current = lambda: None
            # What Discord confirmed is marked now: else it would be sent again after a
            # restart (once, found by its nonce or marker, but a request for nothing).
            if self._confirmed:
                with anyio.move_on_after(MARK_STOP_SECONDS, shield=True):
                    await self._mark_alone()

    async def _mark_alone(self) -> None:
        """Mark the confirmed messages in a trip of their own (no claim)."""
        marks, self._confirmed = self._confirmed, []
        try:
            await anyio.to_thread.run_sync(self._mark, marks)
        except BaseException:
            self._confirmed[:0] = marks  # marking twice changes nothing
            raise

    def _ready(self) -> discord.Client | None:
        """The bridge's client, when it is ready (has been once, and is not closed)."""
        client = self._current()
        if client is None or not client.is_ready() or client.is_closed():
            return None
        return client

    def _next_look(self) -> float:
        """Seconds until the next look, unless woken (a write, a send's end): when a
        held or paced channel may go, a waiting row is due, or the safety poll."""
        now, wall = self._clock(), self._wall()
        ready = [self.pacer.ready_at(_route(row), now) for row in self._held.values()]
        ready.extend(self._paced.values())
        blocked = self._blocked()
        ready.extend(now + at - wall for ch, at in self._waiting.items() if ch not in blocked)
        return min([self._poll, *(max(at - now, 0.0) for at in ready)])

    def _blocked(self) -> set[int]:
        """Channels whose next send waits for an event of its own (a send's end, pacing)."""
        return self._busy | self._held.keys() | self._paced.keys()

    def _must_claim(self, skip: frozenset[int]) -> bool:
        """Whether a claim may find a row: one was written, or a waiting row is due,
        since the last claim (or the safety poll is due: writes the disk held)."""
        if self._outbox.writes != self._claimed_writes:
            return True
        if self._clock() - self._claimed_at >= self._poll:
            return True
        wall = self._wall()
        return any(at <= wall for ch, at in self._waiting.items() if ch not in skip)

    def _due_again(self, channel: int, at: float) -> None:
        """``channel``'s oldest row is due again at ``at`` (wall clock)."""
        self._waiting[channel] = min(at, self._waiting.get(channel, at))

    async def _start_due(self, tg: TaskGroup, client: discord.Client) -> None:
        """Start a send for each channel whose head row may go now.

        Rows are claimed in one trip to the ledger (recorded as being sent); a
        row whose route must still wait is held here, not claimed again.
        """
        now = self._clock()
        for channel, row in list(self._held.items()):
            if self.pacer.ready_at(_route(row), now) <= now:
                del self._held[channel]
                self._start(tg, client, row, now)
        self._paced = self._pacing(now)
        skip = frozenset(self._blocked())
        if self._claiming is not None or not self._must_claim(skip):
            return
        self._claiming = "look"
        try:
            claim = await anyio.to_thread.run_sync(self._claim(skip))
        except BaseException:
            self._unmarked()
            raise
        finally:
            self._claiming = None
        self._took(claim)
        now = self._clock()
        for row in claim.rows:
            if self.pacer.ready_at(_route(row), now) > now:
                self._held[row.channel] = row
            else:
                self._start(tg, client, row, now)

    def _pacing(self, now: float) -> dict[int, float]:
        """Channels whose create and edit routes must both still wait, and until when."""
        paced = {}
        for _, channel in self.pacer.known():
            ready = min(
                self.pacer.ready_at(("create", channel), now),
                self.pacer.ready_at(("edit", channel), now),
            )
            if ready > now:
                paced[channel] = ready
        return paced

    def _start(self, tg: TaskGroup, client: discord.Client, row: OutboxRow, now: float) -> None:
        self._busy.add(row.channel)
        self.pacer.sent(_route(row), now)
        tg.start_soon(self._send_then_look, client, row)

    async def _send_then_look(self, client: discord.Client, row: OutboxRow) -> None:
        """Send one row, then look again at once when its channel's next row may go
        (any row left there, or not counted)."""
        left: int | None = None
        try:
            left = await self._send(client, row)
        finally:
            # A row written after the count wakes the loop itself (the outbox's watch).
            if left != 0 or row.channel in self._waiting:
                self._wakeup.set()
            if self._on_finished is not None:
                self._on_finished(row.channel, left)

    async def _send(self, client: discord.Client, row: OutboxRow) -> int | None:
        """Send one row; the rows still pending in its channel once it was sent."""
        try:
            delivery = await self._deliver(Messenger(client), client, row)
            if delivery.is_ok and delivery.message_id is not None:
                return await self._sent(row, delivery.message_id)
            await self._refused(row, delivery)
            return None
        finally:
            self._busy.discard(row.channel)
            self._counted.pop(row.id, None)

    async def _sent(self, row: OutboxRow, message_id: int) -> int | None:
        """Mark the row sent; the rows still pending in its channel.

        A new message's mark, when nothing was written since its claim (the rows left
        in its channel are known: the claim counted them), goes with the sender's next
        claim instead of a trip of its own: a writer's (the relay's next message), or
        the safety poll's, made anyway, within two :data:`POLL_SECONDS` (the loop's
        looks keep their pace: a writer's claim stands in for one poll, and the mark
        brings none forward). The count given to ``on_finished`` leaves it out; every
        claim and drain marks first (their counts leave it out too), so does a sender
        that stops or loses its client, and a dsup killed meanwhile sends it again
        once, found by its nonce or its marker. An edit is marked at once.
        """
        writes, pending = self._counted.get(row.id, (-1, None))
        if not row.is_edit and pending is not None and writes == self._outbox.writes:
            self._confirmed.append(_Confirmed(row.id, message_id, self._wall()))
            left: int | None = pending - 1
        else:
            left = await anyio.to_thread.run_sync(
                lambda: self._outbox.mark_sent(row.id, message_id, now=self._wall())
            )
        self.sent += 1
        if self.breaker.succeeded(row.channel) or row.channel in self._announced:
            self._announced.discard(row.channel)
            self._say(row.channel, "")
            logger.warning("discord: channel %d answers again; relaying resumed", row.channel)
        return left

    async def _deliver(
        self, messenger: Messenger, client: discord.Client, row: OutboxRow
    ) -> Delivery:
        """Create or edit the row's message (each request bounded by the messenger)."""
        text = row.content + row.marker
        first = row.first_try_at
        extra = await anyio.to_thread.run_sync(attachments, row.attach) if row.attach else {}
        if row.is_edit and row.target_message_id is not None:
            return await messenger.edit(
                row.channel,
                row.target_message_id,
                content=text,
                embeds=extra.get("embeds"),
                **({"view": extra["view"]} if "view" in extra else {}),
            )
        late = first is not None and self._wall() - first > self._nonce_window
        if row.attempts and first is not None and late:
            found = await self._find_marker(messenger, client, row, first)
            if found is not None:
                return found
        files = list(extra.get("files", ()))
        if row.files:
            kept = await anyio.to_thread.run_sync(self._outbox.files.read, row.files)
            files += [discord.File(io.BytesIO(data), filename=name) for name, data in kept]
        return await messenger.post(
            row.channel,
            content=text,
            embeds=extra.get("embeds", ()),
            view=extra.get("view"),
            files=files,
            nonce=row.nonce,
            reply_to=row.reply_to,
        )

    async def _find_marker(
        self, messenger: Messenger, client: discord.Client, row: OutboxRow, first: float
    ) -> Delivery | None:
        """Our message ending with the row's marker, posted since ``first``; a refusal of
        the history that may pass (5xx, 429, no answer); or None when it is not there or
        the bot may not read it."""
        me = client.user.id if client.user is not None else None
        recent = await messenger.recent(row.channel, limit=HISTORY_LIMIT, since=first - 5)
        if isinstance(recent, Delivery) and recent.status in (403, 404) and not recent.is_gone:
            # The channel is there and may still take posts: the post itself tells a
            # channel that refuses dsup, and a refused look alone must not pause it.
            # (A missing Read Message History alone gives no 403: the look finds
            # nothing and the row is posted again, as documented.)
            _warn_once(
                self._unread,
                row.channel,
                "discord: cannot read the history of channel %d (%s): a message "
                "retried after a long outage may show twice there; give the bot "
                "Read Message History in it",
                recent.error[:200],
            )
            return None
        if isinstance(recent, Delivery):
            return recent
        for message in recent:
            if message.author_id == me and message.content.endswith(row.marker):
                logger.info(
                    "outbox: message %d was sent before (found %d)", row.id, message.message_id
                )
                return Delivery(message_id=message.message_id)
        return None

    async def _refused(self, row: OutboxRow, delivery: Delivery) -> None:
        """Discord refused, or did not answer: retry, abandon the row, or pause its channel."""
        reason = delivery.error[:200] or "no message id in the answer"
        status = delivery.status
        if status in (403, 404) and delivery.code != UNKNOWN_MESSAGE:
            pause = self.breaker.refused(row.channel, reason, self._clock())
            if pause is None:
                await self._retry(row, reason)
                return
            # Said before the await: whoever sees the pause sees the problem with it.
            self._say(
                row.channel,
                f"channel {row.channel} refuses dsup's messages ({reason}): relaying to it "
                "is paused and tried again slowly",
            )
            _warn_once(
                self._announced,
                row.channel,
                "discord: channel %d refuses dsup's messages (%s); relaying to it is paused "
                "and tried again slowly. Check that the channel exists and that the bot "
                "may view it and send messages in it",
                reason,
            )
            retry_at = self._wall() + (pause.retry_at - pause.since)
            self._due_again(row.channel, retry_at)
            await anyio.to_thread.run_sync(
                lambda: self._outbox.defer_channel(row.channel, retry_at=retry_at)
            )
        elif status is None or status in (0, 429) or status >= 500:
            await self._retry(row, reason)
        else:
            await anyio.to_thread.run_sync(lambda: self._outbox.mark_abandoned(row.id, reason))

    def _say(self, channel: int, problem: str) -> None:
        """Note (or clear, with "") a channel's problem in the bridge's health."""
        if self._health is not None:
            self._health.problem(f"channel {channel}", problem)

    async def _retry(self, row: OutboxRow, error: str) -> None:
        logger.info("outbox: message %d not sent (%s); trying again", row.id, error)
        retry_at = self._wall() + retry_delay(row.attempts + 1)
        self._due_again(row.channel, retry_at)
        await anyio.to_thread.run_sync(
            lambda: self._outbox.mark_failed(row.id, error, retry_at=retry_at)
        )

    async def drain(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for the outbox to empty (paused channels aside).

        Returns:
            True when nothing was left to send.
        """
        with anyio.move_on_after(seconds):
            while True:
                marks, self._confirmed = self._confirmed, []
                try:
                    stats = await anyio.to_thread.run_sync(self._marked_stats, marks)
                except BaseException:
                    self._confirmed[:0] = marks  # marking twice changes nothing
                    raise
                paused = {p.channel for p in self.breaker.paused()}
                if not [c for c in stats.pending if c not in paused]:
                    return True
                await anyio.sleep(DRAIN_POLL_SECONDS)
        return False


def _route(row: OutboxRow) -> RouteKey:
    return ("edit" if row.is_edit and row.target_message_id is not None else "create", row.channel)


def _warn_once(said: set[int], channel: int, text: str, reason: str) -> None:
    """Log ``text`` (about ``channel`` and ``reason``) the first time only: ``said`` keeps
    the channels told."""
    if channel not in said:
        said.add(channel)
        logger.warning(text, channel, reason)
