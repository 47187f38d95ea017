"""Run an unmodified discord.py client against the fake, bounded in time.

Tests own the client's lifetime through :func:`run_client`: the client runs as one task
of a task group, the block starts once ``on_ready`` has fired, and leaving the block
closes the client (shielded, bounded) before the task group ends.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import discord

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

ClientT = TypeVar("ClientT", bound=discord.Client)

GUILD_READY_TIMEOUT = 0.2
"""Seconds discord.py waits after the last GUILD_CREATE before ``on_ready``.

discord.py's default (2 s) is a per-login tax in tests; the fake sends GUILD_CREATE
right after READY, so a short wait is enough. Pass it as ``guild_ready_timeout=``.
"""


def intents_for_tests() -> discord.Intents:
    """Default intents plus MESSAGE_CONTENT (privileged; the fake grants it)."""
    intents = discord.Intents.default()
    intents.message_content = True
    return intents


@contextlib.asynccontextmanager
async def run_client(
    client: ClientT, token: str, *, ready_timeout: float = 10.0, close_timeout: float = 5.0
) -> AsyncIterator[ClientT]:
    """Start ``client`` with ``token``, wait for ``on_ready``, close it on exit.

    Args:
        client: A :class:`discord.Client` (or ``commands.Bot``) not yet started.
        token: The bot token.
        ready_timeout: Seconds to reach ``on_ready``.
        close_timeout: Seconds allowed for ``client.close()`` on exit.

    Raises:
        TimeoutError: The client was not ready in time.
        discord.LoginFailure: The token was refused (from the client task).

    A single error, from the block or the client task, is raised as itself rather than
    in an exception group: anyio's pytest runner stops on a group holding a pytest
    outcome (a failed ``pytest.raises``), which then shows as a confusing teardown
    error next to the real failure.
    """
    try:
        async with client, anyio.create_task_group() as tg:
            tg.start_soon(client.start, token)
            try:
                with anyio.fail_after(ready_timeout):
                    await client.wait_until_ready()
                yield client
            finally:
                with anyio.move_on_after(close_timeout, shield=True):
                    await client.close()
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


class RecordingClient(discord.Client):
    """A :class:`discord.Client` that records the events it handled, for tests to await.

    Records ``("message", Message)``, ``("edit", Message)``, ``("delete", message_id)``,
    ``("reaction", (emoji, user_id, count, me))``, ``("unreaction", (emoji, user_id))``,
    ``("member_join", Member)``, ``("member_update", Member)`` (after),
    ``("role_create", Role)``, ``("channel_create", GuildChannel)``,
    ``("connect", None)`` (a READY: a new session), ``("ready", None)`` and
    ``("resumed", None)``.
    """

    def __init__(self, **options: Any) -> None:
        options.setdefault("intents", intents_for_tests())
        options.setdefault("guild_ready_timeout", GUILD_READY_TIMEOUT)
        super().__init__(**options)
        self.seen: list[tuple[str, object]] = []
        self._changed = anyio.Event()

    def _note(self, name: str, value: object) -> None:
        self.seen.append((name, value))
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_seen(
        self, name: str, *, count: int = 1, timeout_seconds: float = 5.0
    ) -> list[object]:
        """Wait until ``count`` events called ``name`` were handled; return their values.

        Raises:
            TimeoutError: Fewer arrived within ``timeout_seconds``.
        """
        with anyio.fail_after(timeout_seconds):
            while True:
                values = [v for n, v in self.seen if n == name]
                if len(values) >= count:
                    return values
                await self._changed.wait()

    async def on_message(self, message: discord.Message) -> None:
        """Record a message."""
        self._note("message", message)

    async def on_message_edit(self, before: discord.Message, after: discord.Message) -> None:
        """Record an edit (only for cached messages, as discord.py does)."""
        self._note("edit", after)

    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        """Record a deletion."""
        self._note("delete", payload.message_id)

    async def on_reaction_add(self, reaction: discord.Reaction, user: discord.abc.User) -> None:
        """Record a reaction on a cached message."""
        self._note("reaction", (str(reaction.emoji), user.id, reaction.count, reaction.me))

    async def on_raw_reaction_remove(self, payload: discord.RawReactionActionEvent) -> None:
        """Record a removed reaction (cached message or not)."""
        self._note("unreaction", (str(payload.emoji), payload.user_id))

    async def on_member_join(self, member: discord.Member) -> None:
        """Record a member who joined (GUILD_MEMBERS intent)."""
        self._note("member_join", member)

    async def on_member_update(self, before: discord.Member, after: discord.Member) -> None:
        """Record a member update (GUILD_MEMBERS intent)."""
        self._note("member_update", after)

    async def on_guild_role_create(self, role: discord.Role) -> None:
        """Record a new role."""
        self._note("role_create", role)

    async def on_guild_channel_create(self, channel: discord.abc.GuildChannel) -> None:
        """Record a new channel."""
        self._note("channel_create", channel)

    async def on_guild_channel_delete(self, channel: discord.abc.GuildChannel) -> None:
        """Record a deleted channel."""
        self._note("channel_delete", channel)

    async def on_connect(self) -> None:
        """Record a new session's READY (not a resume), before its guilds are in."""
        self._note("connect", None)

    async def on_ready(self) -> None:
        """Record readiness (again after a new session)."""
        self._note("ready", None)

    async def on_resumed(self) -> None:
        """Record a resumed session."""
        self._note("resumed", None)
