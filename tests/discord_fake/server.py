"""The fake Discord a test talks to: :class:`FakeDiscord` and :func:`open_fake_discord`.

:class:`FakeDiscord` is the handle: it builds the world (users with roles, channels),
acts as a user (messages, reactions, slash commands, autocomplete, button clicks), reads
what the bot did, injects faults and reads the rate-limit counts. The protocol itself
lives in ``rest_*.py`` and ``gateway.py``.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from aiohttp import web

from tests.discord_fake.controls import ChannelRef, FakeControls
from tests.discord_fake.gateway import Gateway
from tests.discord_fake.http_util import (
    BACKEND_KEY,
    Backend,
    UploadedFile,
    api_middleware,
    attachments_out,
)
from tests.discord_fake.interaction import InteractionBook, InteractionRecord, find_component
from tests.discord_fake.models import (
    EVERYONE_PERMISSIONS,
    BotAction,
    FakeChannel,
    FakeRole,
    FakeUser,
)
from tests.discord_fake.ratelimit import RateLimiter
from tests.discord_fake.rest_channels import gateway_message, reaction_event
from tests.discord_fake.rest_channels import routes as channel_routes
from tests.discord_fake.rest_interactions import routes as interaction_routes
from tests.discord_fake.store import FakeStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence

logger = logging.getLogger(__name__)

_SHUTDOWN_GRACE_SECONDS = 0.5

T = TypeVar("T")


class FakeDiscord(FakeControls):
    """A Discord-compatible server on 127.0.0.1, and the test's handle on it.

    Create it with :func:`open_fake_discord`. Default world: guild ``dsup-test`` with
    channels ``general`` and ``ops``, and the bot user.

    Args:
        token: The bot token the fake accepts (401 / close 4004 otherwise).
        bot_name: The bot's user name.
        channels: Names of the text channels to create.
        heartbeat_interval_ms: Sent in HELLO.
    """

    def __init__(
        self,
        *,
        token: str = "fake-token",
        bot_name: str = "dsup-bot",
        channels: tuple[str, ...] = ("general", "ops"),
        heartbeat_interval_ms: int = 41_250,
    ) -> None:
        self.store = FakeStore(bot_name=bot_name, token=token)
        for name in channels:
            self.store.add_channel(name)
        self.limiter = RateLimiter()
        self.gateway = Gateway(
            self.store, url=lambda: self.gateway_url, heartbeat_interval_ms=heartbeat_interval_ms
        )
        self.interactions = InteractionBook(self.store)
        self._dm_channels: dict[int, int] = {}  # user id -> their DM channel with the bot
        self.base_url = ""
        self._ctx = Backend(
            store=self.store,
            gateway=self.gateway,
            limiter=self.limiter,
            interactions=self.interactions,
            public_url=lambda: self.base_url,
        )

    # --- addresses ----------------------------------------------------------------------

    @property
    def token(self) -> str:
        """The bot token the fake accepts."""
        return self.store.token

    @property
    def api_base(self) -> str:
        """What ``discord.http.Route.BASE`` must be: ``http://127.0.0.1:port/api/v10``."""
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        """The websocket URL (also returned by ``GET /gateway/bot``)."""
        return self.base_url.replace("http://", "ws://", 1) + "/gateway"

    @property
    def guild_id(self) -> int:
        """The id of the one guild."""
        return self.store.guild_id

    @property
    def application_id(self) -> int:
        """The application id, which is also the bot user's id."""
        return self.store.application_id

    def build_app(self) -> web.Application:
        """Return the aiohttp application serving REST, the gateway and attachments."""
        app = web.Application(middlewares=[api_middleware])
        app[BACKEND_KEY] = self._ctx
        app.router.add_routes(channel_routes)
        app.router.add_routes(interaction_routes)
        app.router.add_get("/gateway", self.gateway.handle)
        return app

    # --- world ----------------------------------------------------------------------------

    def add_role(self, name: str, *, permissions: int = EVERYONE_PERMISSIONS) -> FakeRole:
        """Create a role and dispatch GUILD_ROLE_CREATE to a connected bot."""
        role = self.store.add_role(name, permissions)
        self.gateway.dispatch("GUILD_ROLE_CREATE", self._guild_event({"role": role.payload()}))
        return role

    def _role(self, name: str) -> FakeRole:
        try:
            return self.store.role_named(name)
        except LookupError:
            return self.add_role(name)

    def add_user(self, name: str, *, roles: tuple[str, ...] = ()) -> FakeUser:
        """Add a guild member with the named roles (created on first use).

        A connected bot receives GUILD_ROLE_CREATE for each new role, and, with the
        GUILD_MEMBERS intent, GUILD_MEMBER_ADD.
        """
        user = self.store.add_user(name, role_ids=[self._role(r).id for r in roles])
        self.gateway.dispatch("GUILD_MEMBER_ADD", self._guild_event(user.member_payload()))
        return user

    def set_roles(self, user: FakeUser, roles: tuple[str, ...]) -> None:
        """Replace ``user``'s roles (created on first use); dispatch GUILD_MEMBER_UPDATE.

        The update reaches a bot with the GUILD_MEMBERS intent; others see the new roles
        in the next message or interaction of that user, as on Discord.
        """
        user.role_ids = [self._role(r).id for r in roles]
        self.gateway.dispatch("GUILD_MEMBER_UPDATE", self._guild_event(user.member_payload()))

    def add_channel(self, name: str, *, bot_denied: bool = False) -> FakeChannel:
        """Add a text channel and dispatch CHANNEL_CREATE; with ``bot_denied`` the bot
        cannot view it (403 on every route, no events from it)."""
        channel = self.store.add_channel(name, bot_denied=bot_denied)
        self.gateway.dispatch("CHANNEL_CREATE", channel.payload())
        return channel

    def delete_channel(self, channel: ChannelRef) -> FakeChannel:
        """Delete a channel as an admin would, and dispatch CHANNEL_DELETE.

        The bot's requests to it are answered 404 Unknown Channel (10003) from then on;
        the test still reaches it by name for its messages and counts.
        """
        target = self.channel(channel)
        target.deleted = True
        self.store.notify()
        self.gateway.dispatch("CHANNEL_DELETE", target.payload())
        return target

    def _guild_event(self, data: dict[str, Any]) -> dict[str, Any]:
        return data | {"guild_id": str(self.store.guild_id)}

    # --- acting as users ------------------------------------------------------------------

    def post_message(
        self,
        author: FakeUser,
        channel: ChannelRef,
        content: str,
        *,
        mention_bot: bool = False,
        reply_to: int | None = None,
        files: Sequence[tuple[str, bytes]] = (),
    ) -> dict[str, Any]:
        """Post a message as ``author`` and dispatch MESSAGE_CREATE; return its payload.

        Args:
            author: Who posts it.
            channel: Where.
            content: The text.
            mention_bot: Start with the bot's mention (so a bot without the
                MESSAGE_CONTENT intent still gets the content).
            reply_to: The id of a message in that channel to reply to (type 19); a reply
                to the bot mentions it, as Discord's client does by default.
            files: Attachments, ``(filename, bytes)``, served by the fake at their URLs.
        """
        target = self.channel(channel)
        body: dict[str, Any] = {"content": content}
        if reply_to is not None:
            replied = target.messages[reply_to]
            mention_bot = mention_bot or replied["author"]["id"] == str(self.store.bot.id)
            body["message_reference"] = {
                "type": 0,
                "message_id": str(reply_to),
                "channel_id": str(target.id),
                "guild_id": str(self.store.guild_id),
            }
        if mention_bot and reply_to is None:
            body["content"] = f"<@{self.store.bot.id}> {content}"
        uploads = [
            UploadedFile(index=i, filename=name, data=data, content_type="application/octet-stream")
            for i, (name, data) in enumerate(files)
        ]
        attached = attachments_out(self._ctx, target.id, {}, uploads)
        message = self.store.new_message(target, author, body, attachments=attached)
        if mention_bot:
            message["mentions"] = [
                self.store.bot.payload()
                | {"member": self.store.bot.member_payload(with_user=False)}
            ]
        self.store.store_message(target, message)
        self.gateway.dispatch("MESSAGE_CREATE", gateway_message(self._ctx, message))
        return message

    def replay_message(self, channel: ChannelRef, message_id: int) -> None:
        """Dispatch a message's MESSAGE_CREATE again, as it is now.

        Discord's gateway delivers at least once: a resumed session may replay an
        event the bot had already handled. Inside :meth:`gateway_outage` the copy
        comes with the RESUME's replay.

        Raises:
            LookupError: No such message in that channel.
        """
        target = self.channel(channel)
        message = target.messages.get(message_id)
        if message is None:
            raise LookupError(f"no message {message_id} in #{target.name}")
        self.gateway.dispatch("MESSAGE_CREATE", gateway_message(self._ctx, message))

    def post_direct_message(self, author: FakeUser, content: str) -> dict[str, Any]:
        """Send the bot a direct message from ``author``; dispatch MESSAGE_CREATE; return it.

        The event has no ``guild_id`` and reaches sessions with the DIRECT_MESSAGES
        intent, content included (Discord sends a DM's content without MESSAGE_CONTENT).
        The DM channel has one stable id per user; the fake keeps no history of it and
        serves no route in it (dsup never writes to a DM).
        """
        channel_id = self._dm_channels.setdefault(author.id, self.store.snowflakes.next())
        message = self.store.new_message(
            FakeChannel(id=channel_id, name="", position=0, guild_id=0, bot_id=self.store.bot.id),
            author,
            {"content": content},
        )
        self.gateway.dispatch("MESSAGE_CREATE", message)
        return message

    def react(self, user: FakeUser, channel: ChannelRef, message_id: int, emoji: str) -> None:
        """Add ``user``'s reaction to a message and dispatch MESSAGE_REACTION_ADD.

        ``emoji`` is a unicode emoji or a custom one (``name:id``, ``<a:name:id>``, ...).
        """
        message = self.channel(channel).messages[message_id]
        key = self.store.reaction_key(emoji)
        if self.store.add_reaction(message_id, key, user.id):
            event = reaction_event(self._ctx, message, key, add=True, user_id=user.id)
            self.gateway.dispatch("MESSAGE_REACTION_ADD", event)

    def unreact(self, user: FakeUser, channel: ChannelRef, message_id: int, emoji: str) -> None:
        """Remove ``user``'s reaction and dispatch MESSAGE_REACTION_REMOVE."""
        message = self.channel(channel).messages[message_id]
        key = self.store.reaction_key(emoji)
        if self.store.remove_reaction(message_id, key, user.id):
            event = reaction_event(self._ctx, message, key, add=False, user_id=user.id)
            self.gateway.dispatch("MESSAGE_REACTION_REMOVE", event)

    def delete_message(self, channel: ChannelRef, message_id: int) -> None:
        """Delete a message as a moderator would, and dispatch MESSAGE_DELETE.

        Raises:
            LookupError: No such message in that channel.
        """
        target = self.channel(channel)
        if target.messages.pop(message_id, None) is None:
            raise LookupError(f"no message {message_id} in #{target.name}")
        self.store.notify()
        event = {
            "id": str(message_id),
            "channel_id": str(target.id),
            "guild_id": str(self.store.guild_id),
        }
        self.gateway.dispatch("MESSAGE_DELETE", event)

    def invoke(
        self, user: FakeUser, channel: ChannelRef, command: str, /, **options: Any
    ) -> InteractionRecord:
        """Run a slash command as ``user``; await the answers on the returned record.

        Args:
            user: Who runs it (their roles are in ``member.roles``).
            channel: Where.
            command: Its name; subcommands separated by spaces (``"task add"``).
            **options: Option values by name, converted to the registered option types:
                text for strings; ints, floats, bools or their text; a
                :class:`FakeUser`, :class:`FakeChannel` or :class:`FakeRole`, or its id or
                name, for user, member, channel and role options (sent with ``resolved``).

        Raises:
            LookupError: The bot has not registered (synced) that command or option.
            OptionError: A required option is missing, or a value has the wrong type or
                is outside the registered choices or bounds (a ``ValueError``).
        """
        record = self.interactions.command(user, self.channel(channel), command, options)
        self.gateway.dispatch("INTERACTION_CREATE", record.payload)
        return record

    def autocomplete(
        self, user: FakeUser, channel: ChannelRef, command: str, focused: str, /, **options: Any
    ) -> InteractionRecord:
        """Ask for autocomplete choices while ``user`` types option ``focused``."""
        options.setdefault(focused, "")
        record = self.interactions.command(
            user, self.channel(channel), command, options, focused=focused
        )
        self.gateway.dispatch("INTERACTION_CREATE", record.payload)
        return record

    def click(
        self, user: FakeUser, message_id: int, custom_id: str, *, values: list[str] | None = None
    ) -> InteractionRecord:
        """Click a button (or choose ``values`` in a select) on a bot message.

        Ephemeral messages can be clicked by the one user who sees them.

        Raises:
            LookupError: No such message (or it is ephemeral and ``user`` cannot see it),
                or it has no component with ``custom_id``.
        """
        found = self.interactions.find_message(message_id)
        if found is None:
            raise LookupError(f"no message {message_id}")
        recipient = self.interactions.ephemeral_recipient(message_id)
        if recipient is not None and recipient.id != user.id:
            raise LookupError(f"message {message_id} is ephemeral; only {recipient.name} sees it")
        channel, message = found
        component = find_component(message, custom_id)
        if component is None:
            raise LookupError(f"message {message_id} has no component {custom_id!r}")
        record = self.interactions.component(
            user, channel, message, custom_id, component_type=component["type"], values=values
        )
        self.gateway.dispatch("INTERACTION_CREATE", record.payload)
        return record

    def submit_modal(
        self, opened_by: InteractionRecord, values: dict[str, str]
    ) -> InteractionRecord:
        """Fill in and submit the modal the bot opened in answer to ``opened_by``.

        ``values`` maps each text input's ``custom_id`` to what the user typed.

        Raises:
            LookupError: the bot answered ``opened_by`` with no modal, or ``values``
                does not fit its text inputs.
        """
        modal = next((r.data for r in opened_by.replies if r.type == 9), None)
        if modal is None:
            raise LookupError(f"interaction {opened_by.id} was not answered with a modal")
        record = self.interactions.modal_submit(opened_by, modal, values)
        self.gateway.dispatch("INTERACTION_CREATE", record.payload)
        return record

    # --- reading what the bot did -----------------------------------------------------------

    def bot_actions(self, channel: ChannelRef | None = None) -> list[BotAction]:
        """Everything the bot did (in one channel, or everywhere), in order."""
        if channel is None:
            return list(self.store.actions)
        channel_id = self.channel(channel).id
        return [a for a in self.store.actions if a.channel_id == channel_id]

    def messages(self, channel: ChannelRef) -> list[dict[str, Any]]:
        """The channel's current messages, oldest first, as the bot would fetch them."""
        return [self.store.message_view(m) for m in self.channel(channel).messages.values()]

    def bot_messages(self, channel: ChannelRef) -> list[dict[str, Any]]:
        """The bot's current (not deleted) messages in a channel, oldest first."""
        bot_id = str(self.store.bot.id)
        return [m for m in self.messages(channel) if m["author"]["id"] == bot_id]

    async def wait_for_action(
        self,
        channel: ChannelRef | None = None,
        *,
        kind: str | None = None,
        since: int = 0,
        predicate: Callable[[BotAction], bool] | None = None,
        timeout_seconds: float = 5.0,
    ) -> BotAction:
        """Wait for the first bot action at index ``>= since`` that matches, and return it.

        Args:
            channel: Only actions in this channel.
            kind: Only this kind (``create``, ``edit``, ...).
            since: Index in :meth:`bot_actions` (all channels) to start at; pass
                ``len(fake.bot_actions())`` taken before acting to see only new ones.
            predicate: Further filter.
            timeout_seconds: Seconds before ``TimeoutError``.
        """
        channel_id = None if channel is None else self.channel(channel).id

        def first() -> BotAction | None:
            for action in self.store.actions[since:]:
                if channel_id is not None and action.channel_id != channel_id:
                    continue
                if kind is not None and action.kind != kind:
                    continue
                if predicate is None or predicate(action):
                    return action
            return None

        return await self.store.wait_until(first, timeout_seconds=timeout_seconds)

    async def wait_until(
        self, predicate: Callable[[], T | None], *, timeout_seconds: float = 5.0
    ) -> T:
        """Wait until ``predicate()`` is truthy, re-checked on every change; return it."""
        return await self.store.wait_until(predicate, timeout_seconds=timeout_seconds)


@contextlib.asynccontextmanager
async def open_fake_discord(
    *, host: str = "127.0.0.1", port: int = 0, **options: Any
) -> AsyncIterator[FakeDiscord]:
    """Serve a :class:`FakeDiscord` on ``host:port`` (0: a free port) for the block.

    Args:
        host: Interface to bind; keep the default outside manual experiments.
        port: TCP port, 0 for any free one.
        **options: Passed to :class:`FakeDiscord`.

    On exit the gateway connections are closed (code 1001) and the server stops, within
    a bounded, shielded scope.
    """
    fake = FakeDiscord(**options)
    # A client reconnecting during the shutdown can open a connection aiohttp then waits
    # on for its whole shutdown timeout (60 s by default); no request needs that long.
    runner = web.AppRunner(
        fake.build_app(), handle_signals=False, shutdown_timeout=_SHUTDOWN_GRACE_SECONDS
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        fake.base_url = f"http://{bound_host}:{bound_port}"
        yield fake
    finally:
        with anyio.move_on_after(5, shield=True):
            logger.info("fake Discord at %s: closing the gateway", fake.base_url)
            await fake.gateway.shut_down()
            for fault in fake.limiter.faults:  # held answers go, so handlers can end
                fault.release()
            logger.info("fake Discord at %s: stopping the server", fake.base_url)
            await runner.cleanup()
            logger.info("fake Discord at %s: stopped", fake.base_url)
