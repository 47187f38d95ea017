"""The discord.py client of the bridge: intents, the command tree, the connection's events.

It serves one guild: interactions and messages from anywhere else are ignored and audited.
Commands, views and mentions are installed by ``interactions.install`` from ``setup_hook``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import anyio
import discord
from discord import app_commands

from supervisor.bridge import interactions
from supervisor.bridge.backoff import IdentifyPacing
from supervisor.bridge.messenger import Requests

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from supervisor.bridge.context import BridgeContext
    from supervisor.bridge.tasks import TaskDesk

logger = logging.getLogger(__name__)

DEFAULT_GUILD_READY_TIMEOUT = 2.0  # discord.py's default wait for GUILD_CREATEs after READY


def bridge_intents() -> discord.Intents:
    """The gateway intents dsup asks for: none of them privileged.

    Guilds (the guild, its channels and roles), guild messages (mentions of the
    bot carry their text without MESSAGE_CONTENT) and direct messages (only to
    audit and ignore them).
    """
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_messages = True
    intents.dm_messages = True
    return intents


def no_voice() -> None:
    """Keep discord.py from warning that voice libraries are missing: dsup has no voice."""
    discord.VoiceClient.warn_nacl = False
    discord.VoiceClient.warn_dave = False


class BridgeTree(app_commands.CommandTree["BridgeClient"]):
    """The slash-command tree; interactions from outside the served guild are dropped."""

    async def interaction_check(self, interaction: discord.Interaction[BridgeClient], /) -> bool:
        """Serve the configured guild only; audit anything else and leave it unanswered."""
        client = interaction.client
        if interaction.guild_id == client.context.guild_id:
            return True
        name = interaction.command.name if interaction.command else "interaction"
        await client.audit_foreign(interaction.user, name, interaction.guild_id)
        return False


class BridgeClient(discord.Client):
    """One connection to Discord, serving one guild for one node.

    Args:
        context: what the bridge shares.
        pacing: the IDENTIFYs of this bridge's clients (kept across clients).
        sleep: waits before an IDENTIFY (tests control time).
        clock: monotonic seconds for the pacing.
        **options: passed to :class:`discord.Client` (tests shorten
            ``guild_ready_timeout``).
    """

    def __init__(
        self,
        context: BridgeContext,
        *,
        pacing: IdentifyPacing | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        clock: Callable[[], float] = anyio.current_time,
        **options: Any,
    ) -> None:
        no_voice()
        options.setdefault("intents", bridge_intents())
        options.setdefault("guild_ready_timeout", DEFAULT_GUILD_READY_TIMEOUT)
        # Nobody is pinged by anything dsup sends unless a message asks for it.
        options.setdefault("allowed_mentions", discord.AllowedMentions.none())
        # A 429 asking for more than this raises RateLimited instead of sleeping
        # in discord.py: the board and the outbox schedule their own retries.
        options.setdefault("max_ratelimit_timeout", 30.0)
        # No message cache: dsup reads nothing back from it (mentions and tasks come
        # as events, deletions as raw events), and it would keep the last 1,000
        # messages seen, most of them dsup's own relayed output, and copy one at
        # each edit.
        options.setdefault("max_messages", None)
        super().__init__(**options)
        self.context = context
        self._pacing = pacing or IdentifyPacing()
        self._sleep = sleep
        self._clock = clock
        self.tree = BridgeTree(self)
        # The view under the status board (a select menu of programs), if
        # interactions.install sets one; called at each post and edit.
        self.board_view_factory: Callable[[], discord.ui.View | None] | None = None
        # The task channel's desk (tasks by message, their reactions and answers).
        self.task_desk: TaskDesk | None = None
        # Told the id of every message deleted in the guild (the board reposts itself).
        self.deletion_listeners: list[Callable[[int], None]] = []
        # The requests of messenger.py waiting for their answer: close() ends them.
        self.requests = Requests()

    async def close(self) -> None:
        """Close the connection, first ending the requests still waiting for an answer.

        Nobody waits for them any more, and discord.py sleeps between its own retries
        of a 5xx (up to 7 s) before it finds its session closed: a stop in a 5xx
        outage would wait for that sleep.
        """
        self.requests.cancel()
        await super().close()

    def dispatch(self, event: str, /, *args: Any, **kwargs: Any) -> None:
        """Dispatch an event, unless the client is closed or it is the bot's own message.

        discord.py's READY waits up to ``guild_ready_timeout`` in a task of its
        own that ``close()`` does not cancel; dispatching from it once the client
        is closed fails (its loop is gone) and leaves a coroutine never awaited.
        The gateway echoes every message dsup posts (a relayed flood: one a
        second): nothing of the bridge wants them, and each would cost a task.
        """
        if self.is_closed():
            logger.debug("discord: %s arrived after the client closed; dropped", event)
            return
        if event == "message" and self.user is not None and args[0].author.id == self.user.id:
            return
        super().dispatch(event, *args, **kwargs)

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """Wait before identifying again, longer each time (``IdentifyPacing``)."""
        delay = self._pacing.wait_before(self._clock(), initial=initial)
        if delay:
            logger.warning("discord: session lost; identifying again in %.0f s", delay)
            await self._sleep(delay)

    async def setup_hook(self) -> None:
        """Install the commands and views (after login, before the gateway)."""
        await interactions.install(self)

    def served_guild(self) -> discord.Guild | None:
        """The configured guild, once the gateway has sent it."""
        return self.get_guild(self.context.guild_id)

    async def on_connect(self) -> None:
        """A new gateway session began (READY; a resume fires ``on_resumed`` only)."""
        if self.task_desk is not None:
            self.task_desk.session_began()

    async def on_ready(self) -> None:
        """A new gateway session (the first, or after a refused resume) is ready."""
        self._connected()
        if self.task_desk is not None:
            self.task_desk.session_ready()

    async def on_resumed(self) -> None:
        """The gateway session was resumed after a drop."""
        self._connected()

    async def on_disconnect(self) -> None:
        """The gateway connection was lost; discord.py reconnects by itself."""
        self.context.health.reconnecting("gateway connection lost")

    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        """Tell the listeners that a message was deleted."""
        for listener in self.deletion_listeners:
            listener(payload.message_id)

    async def on_message(self, message: discord.Message) -> None:
        """Drop (and audit) messages from outside the served guild; pass the rest on."""
        if self.user is None or message.author.bot:  # its own never come (dispatch)
            return
        if message.guild is None or message.guild.id != self.context.guild_id:
            if message.guild is None or self.user in message.mentions:
                where = None if message.guild is None else message.guild.id
                await self.audit_foreign(message.author, "message", where)
            return
        await interactions.on_guild_message(self, message)

    async def audit_foreign(
        self, user: discord.abc.User, command: str, guild_id: int | None
    ) -> None:
        """Record that ``user`` asked for something from outside the served guild."""
        where = "a direct message" if guild_id is None else f"guild {guild_id}"
        detail = f"ignored: from {where}; dsup serves guild {self.context.guild_id} only"
        logger.warning("discord: %s by %s (%s) %s", command, user, user.id, detail)
        ledger = self.context.ledger
        await anyio.to_thread.run_sync(
            lambda: ledger.record_audit(
                actor=f"{user} ({user.id})",
                source="discord",
                command=command,
                target="",
                outcome="refused",
                detail=detail,
            )
        )

    def _connected(self) -> None:
        guild = self.served_guild()
        self.context.health.connected(
            user=str(self.user),
            guild=guild.name if guild else f"{self.context.guild_id} (not joined)",
            latency=lambda: self.latency,
        )
