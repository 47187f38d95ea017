"""The fake Discord a test talks to: :class:`FakeDiscord` and :func:`open_fake_discord`.

:class:`FakeDiscord` is the handle: it builds the world (users with roles, channels),
acts as a user (messages, reactions, slash commands, autocomplete, button clicks), reads
what the bot did, injects faults and reads the rate-limit counts. The protocol itself
lives in ``rest_*.py`` and ``gateway.py``.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from aiohttp import web

from tests.discord_fake.gateway import Gateway
from tests.discord_fake.http_util import BACKEND_KEY, Backend, api_middleware
from tests.discord_fake.interaction import InteractionBook, InteractionRecord, find_component
from tests.discord_fake.ratelimit import MESSAGES_ROUTE, BucketStats, Fault, RateLimiter
from tests.discord_fake.rest_channels import gateway_message, reaction_event
from tests.discord_fake.rest_channels import routes as channel_routes
from tests.discord_fake.rest_interactions import routes as interaction_routes
from tests.discord_fake.store import BotAction, FakeChannel, FakeStore, FakeUser

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

T = TypeVar("T")
ChannelRef = int | str | FakeChannel


class FakeDiscord:
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

    def add_user(self, name: str, *, roles: tuple[str, ...] = ()) -> FakeUser:
        """Add a guild member with the named roles (created on first use).

        Users added after the bot connected are known to it through messages and
        interactions only (the fake sends no GUILD_MEMBER_ADD).
        """
        return self.store.add_user(name, roles=roles)

    def add_channel(self, name: str, *, bot_denied: bool = False) -> FakeChannel:
        """Add a text channel; with ``bot_denied`` the bot gets 403 there.

        Add channels before the bot connects: the fake sends no CHANNEL_CREATE.
        """
        return self.store.add_channel(name, bot_denied=bot_denied)

    def channel(self, ref: ChannelRef) -> FakeChannel:
        """Return a channel by object, id or name."""
        return ref if isinstance(ref, FakeChannel) else self.store.channel(ref)

    # --- acting as users ------------------------------------------------------------------

    def post_message(
        self, author: FakeUser, channel: ChannelRef, content: str, *, mention_bot: bool = False
    ) -> dict[str, Any]:
        """Post a message as ``author`` and dispatch MESSAGE_CREATE; return its payload."""
        target = self.channel(channel)
        if mention_bot:
            content = f"<@{self.store.bot.id}> {content}"
        message = self.store.new_message(target, author, {"content": content})
        if mention_bot:
            message["mentions"] = [
                self.store.bot.payload()
                | {"member": self.store.bot.member_payload(with_user=False)}
            ]
        self.store.store_message(target, message)
        self.gateway.dispatch("MESSAGE_CREATE", gateway_message(self._ctx, message))
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

    def invoke(
        self, user: FakeUser, channel: ChannelRef, command: str, **options: Any
    ) -> InteractionRecord:
        """Run a slash command as ``user``; await the answers on the returned record.

        Args:
            user: Who runs it (their roles are in ``member.roles``).
            channel: Where.
            command: Its name; subcommands separated by spaces (``"task add"``).
            **options: Option values by name.

        Raises:
            LookupError: The bot has not registered (synced) that command or option.
        """
        record = self.interactions.command(user, self.channel(channel), command, options)
        self.gateway.dispatch("INTERACTION_CREATE", record.payload)
        return record

    def autocomplete(
        self, user: FakeUser, channel: ChannelRef, command: str, focused: str, **options: Any
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

        Raises:
            LookupError: No such message, or it has no component with ``custom_id``.
        """
        found = self.store.find_any_message(message_id)
        if found is None:
            raise LookupError(f"no message {message_id}")
        channel, message = found
        component = find_component(message, custom_id)
        if component is None:
            raise LookupError(f"message {message_id} has no component {custom_id!r}")
        record = self.interactions.component(
            user, channel, message, custom_id, component_type=component["type"], values=values
        )
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

    # --- faults -------------------------------------------------------------------------

    async def drop_gateway(self, *, code: int = 1001) -> int:
        """Close every gateway connection with ``code``; sessions stay resumable."""
        return await self.gateway.drop(code=code)

    @contextlib.asynccontextmanager
    async def gateway_outage(self, *, code: int = 1001) -> AsyncIterator[None]:
        """Drop the gateway and hold reconnections until the block ends.

        Events dispatched inside the block are queued in the session and replayed on
        RESUME.
        """
        self.gateway.hold()
        try:
            await self.gateway.drop(code=code)
            yield
        finally:
            self.gateway.release()

    @property
    def refuse_resume(self) -> bool:
        """When true, every RESUME is answered with INVALID_SESSION (not resumable)."""
        return self.gateway.refuse_resume

    @refuse_resume.setter
    def refuse_resume(self, value: bool) -> None:
        self.gateway.refuse_resume = value

    def fail_route(
        self,
        method: str,
        template: str,
        *,
        status: int = 500,
        times: int | None = 1,
        for_seconds: float | None = None,
        retry_after: float = 1.0,
    ) -> Fault:
        """Answer ``status`` on a route, ``times`` times and/or for ``for_seconds``.

        Args:
            method: HTTP method, or ``"*"``.
            template: Path template below ``/api/v10`` as discord.py writes it, e.g.
                ``"/channels/{channel_id}/messages"``, or ``"*"``.
            status: 429 gets Discord's body with ``retry_after`` and a ``Via`` header.
            times: How many requests fail (``None``: no count limit).
            for_seconds: How long the fault lasts (``None``: no time limit).
            retry_after: The ``retry_after`` of an injected 429.
        """
        return self._add_fault(
            for_seconds,
            method=method,
            template=template,
            status=status,
            remaining=times,
            retry_after=retry_after,
        )

    def delay_route(
        self,
        method: str,
        template: str,
        seconds: float,
        *,
        times: int | None = None,
        for_seconds: float | None = None,
    ) -> Fault:
        """Delay responses on a route by ``seconds`` (same matching as :meth:`fail_route`)."""
        return self._add_fault(
            for_seconds,
            method=method,
            template=template,
            status=None,
            delay_seconds=seconds,
            remaining=times,
        )

    def _add_fault(self, for_seconds: float | None, **fields: Any) -> Fault:
        """Install a fault that lasts ``for_seconds`` from now (``None``: no time limit)."""
        until = None if for_seconds is None else self.limiter.clock() + for_seconds
        fault = Fault(until=until, **fields)
        self.limiter.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        self.limiter.faults.clear()

    # --- rate limits ----------------------------------------------------------------------

    def set_rate_limit(self, method: str, template: str, *, limit: int, per_seconds: float) -> None:
        """Set a route's limit (per major parameter, e.g. per channel)."""
        self.limiter.set_limit(method, template, limit=limit, per_seconds=per_seconds)

    @property
    def send_ratelimit_headers(self) -> bool:
        """Whether successful answers carry ``X-RateLimit-*`` headers (default true)."""
        return self.limiter.send_headers

    @send_ratelimit_headers.setter
    def send_ratelimit_headers(self, value: bool) -> None:
        self.limiter.send_headers = value

    def rate_limit_stats(
        self, channel: ChannelRef, route: tuple[str, str] = MESSAGES_ROUTE
    ) -> BucketStats:
        """What the fake counted for a route in one channel (default: sending messages)."""
        method, template = route
        key = (method, template, str(self.channel(channel).id))
        return self.limiter.stats.get(key, BucketStats())

    # --- gateway counters -----------------------------------------------------------------

    @property
    def identify_count(self) -> int:
        """IDENTIFYs accepted so far."""
        return self.gateway.identify_count

    @property
    def resume_count(self) -> int:
        """RESUMEs accepted so far."""
        return self.gateway.resume_count


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
    runner = web.AppRunner(fake.build_app(), handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        fake.base_url = f"http://{bound_host}:{bound_port}"
        yield fake
    finally:
        with anyio.move_on_after(5, shield=True):
            await fake.gateway.drop(code=1001)
            await runner.cleanup()
