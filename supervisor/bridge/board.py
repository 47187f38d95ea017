"""The status board: one message in ``status_channel``, edited in place when it changes.

Its id is kept in the ledger (or found in the channel's history), so there are never two;
edits happen only when the text changed, paced, and a refused edit waits longer each time.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING

import anyio
import discord

from supervisor.bridge.board_text import MARKER, UPDATED, description, render_board
from supervisor.bridge.messenger import (
    KEEP,
    MISSING_ACCESS,
    MISSING_PERMISSIONS,
    UNKNOWN_CHANNEL,
    UNKNOWN_MESSAGE,
    Delivery,
    Found,
    Messenger,
)
from supervisor.state.board import BoardStore

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

    from supervisor.bridge.board_text import BoardText
    from supervisor.bridge.client import BridgeClient
    from supervisor.bridge.context import BridgeContext

logger = logging.getLogger(__name__)

HISTORY_LIMIT = 50  # recent messages searched for a board whose id was lost
_PROBLEM = "board"
RETRY_FIRST_SECONDS = 5.0
RETRY_MOST_SECONDS = 600.0
CHANNEL_RETRY_SECONDS = 60.0  # a channel the bot cannot use: first wait before asking again
_CHANNEL_CODES = (UNKNOWN_CHANNEL, MISSING_ACCESS, MISSING_PERMISSIONS)


class Board:
    """Keeps one node's board current while a client is connected.

    Args:
        context: the bridge's context (config, command surface, ledger, health).
        clock: monotonic seconds, for the pace of edits.
        wall: wall-clock seconds, for the "updated" timestamp.
        retry_seconds: the first wait after a refused request (it doubles with
            each refusal in a row, up to 10 minutes).
        channel_retry_seconds: the same, when the channel itself is refused.

    Attributes:
        posts: boards posted. edits: boards edited. refusals: requests Discord
            refused. (Counters for tests and the bench.)
    """

    def __init__(
        self,
        context: BridgeContext,
        *,
        clock: Callable[[], float] = anyio.current_time,
        wall: Callable[[], float] = time.time,
        retry_seconds: float = RETRY_FIRST_SECONDS,
        channel_retry_seconds: float = CHANNEL_RETRY_SECONDS,
    ) -> None:
        self._context = context
        self._channel = context.spec.status_channel
        self._interval = context.spec.status_interval_seconds
        self._store = BoardStore(context.ledger)
        self._clock = clock
        self._wall = wall
        self._retry_seconds = retry_seconds
        self._channel_retry_seconds = channel_retry_seconds
        self.message_id: int | None = None
        self._is_adopted = False
        self._shown: str | None = None
        self._not_before = 0.0
        self._failures = 0
        self._poked = anyio.Event()
        self._is_post_unsure = False  # a post sent, not (yet) answered with its message
        self._is_deleted = False
        # Ids deleted while a board is on its way (posted, or looked for): its id is
        # known only once the answer comes, and its deletion may come first. One set
        # per request waiting (the farewell may look while a post waits).
        self._deleted_in_flight: list[set[int]] = []
        self.posts = 0
        self.edits = 0
        self.refusals = 0
        self.looks = 0  # times the board looked at the fleet (at least once per interval)

    def message_deleted(self, message_id: int) -> None:
        """A message was deleted; when it is the board, post a new one."""
        for deleted in self._deleted_in_flight:
            deleted.add(message_id)
        if message_id == self.message_id:
            self._is_deleted = True
            self._poked.set()

    def fleet_changed(self) -> None:
        """A process changed state: look at the fleet now rather than at the next interval."""
        self._poked.set()

    def render(self, *, stopped_at: float | None = None) -> BoardText:
        """The board's text now (``stopped_at``: the last one, as dsup stops)."""
        context = self._context
        return render_board(
            context.service.snapshot(),
            node=context.node,
            health=context.health.snapshot(),
            stopped_at=stopped_at,
            tasks=context.service.task_counts(),
        )

    async def farewell(self, client: BridgeClient) -> None:
        """Show the fleet's last states and that dsup stopped: one edit, whatever the pace.

        Called as dsup stops, bounded by the caller; nothing when there is no board.
        The client's posts and edits still in flight are waited for first (a
        post's answer names the message, and an edit must not land after the
        farewell's), for up to ``messenger.ANSWER_SECONDS``; then, when a post's
        answer was lost, or dsup stops before the board was looked for, it is
        looked for as at start.
        """
        if not self._channel:
            return
        messenger = Messenger(client)
        await messenger.answered()  # for up to ANSWER_SECONDS
        is_posting = self._is_post_unsure  # a post sent: its answer may still come
        is_unsure = is_posting or not self._is_adopted  # or never looked for
        if self.message_id is None and is_unsure and client.is_ready():
            await self._adopt(messenger, client)
        if self.message_id is None and is_posting:
            await messenger.answered(None)  # nothing found yet: the post's answer, if any
        if self.message_id is None or not client.is_ready():
            return
        text = self.render(stopped_at=self._wall())
        view = client.board_view_factory() if client.board_view_factory else KEEP
        delivery = await messenger.edit(
            self._channel, self.message_id, embeds=[self._embed(text)], view=view
        )
        if delivery.is_ok:
            self.edits += 1
            self._shown = text.body

    async def serve(self, client: BridgeClient) -> None:
        """Keep the board current through ``client`` until cancelled.

        Waits for the client to be ready; looks at the fleet at each change
        (``fleet_changed``, the bridge's health, a deleted board) and at least once
        per interval, and edits at most once per interval. Cancelling it stops it
        between requests or during one; the next ``serve`` carries on.
        """
        if not self._channel:
            return
        await client.wait_until_ready()
        client.deletion_listeners.append(self.message_deleted)
        messenger = Messenger(client)
        while True:
            try:
                await self._step(messenger, client)
            except (discord.DiscordException, OSError) as exc:  # a bug of ours or discord.py's
                logger.warning("discord: status board: %s: %s", type(exc).__name__, exc)
                self._wait_longer(None, first=self._retry_seconds)
            left = self._not_before - self._clock()
            await self._pause(left if left > 0 else self._interval)

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds``, or less when the fleet or the health changed or the board was
        deleted."""
        with anyio.move_on_after(seconds):
            async with anyio.create_task_group() as waiters:

                async def first(wait: Callable[[], Awaitable[object]]) -> None:
                    await wait()
                    waiters.cancel_scope.cancel("something to show")

                waiters.start_soon(first, self._poked.wait)
                waiters.start_soon(first, self._context.health.wait_changed)
        if self._poked.is_set():
            self._poked = anyio.Event()

    async def _step(self, messenger: Messenger, client: BridgeClient) -> None:
        self.looks += 1
        if self._is_deleted:
            logger.warning("discord: the status board was deleted; posting a new one")
            await self._lost()
        if self._clock() < self._not_before:
            return
        if not self._is_adopted and not await self._adopt(messenger, client):
            return
        text = self.render()
        if text.body == self._shown:
            return
        await self._show(messenger, client, text)

    async def _show(self, messenger: Messenger, client: BridgeClient, text: BoardText) -> None:
        """Post or edit the board with ``text``, and take the answer."""
        embed = self._embed(text)
        view = client.board_view_factory() if client.board_view_factory else None
        if self.message_id is None:
            await self._post(messenger, text.body, embed, view)
            return
        delivery = await messenger.edit(
            self._channel,
            self.message_id,
            embeds=[embed],
            view=view if view is not None else KEEP,
        )
        if delivery.is_ok and delivery.message_id is not None:
            await self._shown_as(delivery.message_id, text.body, posted=False)
        elif delivery.code == UNKNOWN_MESSAGE:
            logger.warning("discord: the status board was deleted; posting a new one")
            await self._lost()
        else:
            self._refused(delivery)

    async def _post(
        self, messenger: Messenger, body: str, embed: discord.Embed, view: discord.ui.View | None
    ) -> None:
        """Post a new board; its deletion counts also when it came in before the answer."""
        with self._deletions_meanwhile() as deleted:
            self._is_post_unsure = True
            delivery = await messenger.post(self._channel, embeds=[embed], view=view)
            if delivery.is_ok and delivery.message_id is not None:
                self._is_post_unsure = False
                await self._shown_as(delivery.message_id, body, posted=True)
                if delivery.message_id in deleted:
                    self._is_deleted = True
                    self._poked.set()
                return
        if delivery.status == 0 or (delivery.status or 0) >= 500:
            # No answer, or a failure after Discord may have posted it: look in the
            # channel before posting again, or the board would be there twice.
            self._is_adopted = False
        else:
            self._is_post_unsure = False
        self._refused(delivery)

    @contextlib.contextmanager
    def _deletions_meanwhile(self) -> Iterator[set[int]]:
        """The ids of the messages deleted while the block runs."""
        deleted: set[int] = set()
        self._deleted_in_flight.append(deleted)
        try:
            yield deleted
        finally:
            self._deleted_in_flight.remove(deleted)

    async def _lost(self) -> None:
        await anyio.to_thread.run_sync(self._store.forget, self._channel)
        self.message_id, self._shown, self._is_deleted = None, None, False

    async def _shown_as(self, message_id: int, body: str, *, posted: bool) -> None:
        # Known before the trip to the ledger: a stop meanwhile still says farewell on it.
        self.message_id, self._shown, self._failures = message_id, body, 0
        self._not_before = self._clock() + self._interval
        self._context.health.problem(_PROBLEM, "")
        if posted:
            self.posts += 1
            await anyio.to_thread.run_sync(self._store.remember, self._channel, message_id)
        else:
            self.edits += 1

    async def _adopt(self, messenger: Messenger, client: BridgeClient) -> bool:
        """Take up the board already posted (by id from the ledger, else in history).

        A board deleted while the bot looked for it is not taken up: a new one is posted.
        """
        with self._deletions_meanwhile() as deleted:
            found = await self._find(messenger, client)
        if isinstance(found, Delivery):
            self._refused(found)
            return False
        self._is_adopted, self._is_post_unsure = True, False
        if found is None:
            return True
        board, is_recorded = found
        if board.message_id in deleted:
            logger.warning("discord: the status board was deleted; posting a new one")
            await anyio.to_thread.run_sync(self._store.forget, self._channel)
            return True
        self._adopted(board)  # before the thread hop, as in _shown_as
        if not is_recorded:
            await anyio.to_thread.run_sync(self._store.remember, self._channel, board.message_id)
        return True

    async def _find(
        self, messenger: Messenger, client: BridgeClient
    ) -> tuple[Found, bool] | Delivery | None:
        """The board posted before, and whether the ledger has its id; or the refusal,
        or None when there is none."""
        bot_id = client.user.id if client.user else 0
        known = await anyio.to_thread.run_sync(self._store.message_id, self._channel)
        if known is not None:
            found = await messenger.fetch(self._channel, known)
            if isinstance(found, Found) and found.author_id == bot_id:
                return found, True
            if isinstance(found, Delivery) and found.code != UNKNOWN_MESSAGE:
                return found
            await anyio.to_thread.run_sync(self._store.forget, self._channel)
        recent = await messenger.recent(self._channel, limit=HISTORY_LIMIT)
        if isinstance(recent, Delivery):
            return recent
        footer = self._embed_footer()
        mine = [f for f in recent if f.author_id == bot_id and f.footer == footer]
        for extra in mine[1:]:  # never two boards: keep the newest
            await messenger.delete(self._channel, extra.message_id)
        return (mine[0], False) if mine else None

    def _adopted(self, found: Found) -> None:
        self.message_id = found.message_id
        self._shown = found.description.partition(UPDATED)[0]

    def _refused(self, delivery: Delivery) -> None:
        """Wait longer before the next request; say what is wrong when it is the channel."""
        self.refusals += 1
        if delivery.code in _CHANNEL_CODES or delivery.status == 403:
            what = (
                f"cannot use the status channel {self._channel} ({delivery.error}): "
                "invite the bot to it and give it View Channel, Send Messages, "
                "Embed Links and Read Message History there"
            )
            self._context.health.problem(_PROBLEM, what)
            logger.warning("discord: %s", what)
            self._wait_longer(delivery, first=self._channel_retry_seconds)
        else:
            logger.warning("discord: status board not updated: %s", delivery.error)
            self._wait_longer(delivery, first=self._retry_seconds)

    def _wait_longer(self, delivery: Delivery | None, *, first: float) -> None:
        delay = min(first * 2.0**self._failures, RETRY_MOST_SECONDS)
        if delivery is not None and delivery.retry_after:
            delay = max(delay, delivery.retry_after)
        self._failures += 1
        self._not_before = self._clock() + delay

    def _embed_footer(self) -> str:
        return f"{MARKER} · node {self._context.node}"

    def _embed(self, text: BoardText) -> discord.Embed:
        colour = {
            "bad": discord.Colour.red(),
            "warn": discord.Colour.orange(),
        }.get(text.level, discord.Colour.green())
        embed = discord.Embed(
            title=text.title, description=description(text, at=self._wall()), colour=colour
        )
        embed.set_footer(text=text.footer)
        return embed
