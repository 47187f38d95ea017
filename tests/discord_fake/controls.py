"""The fault, rate-limit and gateway controls of :class:`~tests.discord_fake.FakeDiscord`.

A base class, so the test keeps one handle while ``server.py`` stays about the world
and the users: dropping and holding the gateway, RECONNECT and INVALID_SESSION in the
middle of a session, failing or delaying REST routes, and reading the rate-limit counts.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import anyio

from tests.discord_fake.models import FakeChannel
from tests.discord_fake.ratelimit import MESSAGES_ROUTE, BucketStats, Fault

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tests.discord_fake.gateway import Gateway
    from tests.discord_fake.ratelimit import RateLimiter
    from tests.discord_fake.store import FakeStore

ChannelRef = int | str | FakeChannel


class FakeControls:
    """Faults and counters of the fake; :class:`FakeDiscord` is the only subclass.

    Attributes:
        store: The world.
        gateway: The websocket endpoint.
        limiter: Rate limits and injected faults of the REST routes.
    """

    store: FakeStore
    gateway: Gateway
    limiter: RateLimiter

    def channel(self, ref: ChannelRef) -> FakeChannel:
        """Return a channel by object, id or name."""
        return ref if isinstance(ref, FakeChannel) else self.store.channel(ref)

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

    def request_reconnect(self) -> int:
        """Send RECONNECT (op 7) on every live session, as Discord does before a restart.

        discord.py closes and RESUMEs. Returns how many connections got it.
        """
        return self.gateway.send_op(7)

    def invalidate_session(self, *, resumable: bool = False) -> int:
        """Send INVALID_SESSION (op 9) on every live session.

        With ``resumable`` false the sessions are forgotten, so the bot must IDENTIFY
        again (discord.py waits 5 s first unless ``before_identify_hook`` is overridden);
        with true it RESUMEs. Returns how many connections got it.
        """
        return self.gateway.send_op(9, resumable)

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
        code: int = 0,
        message: str = "",
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
            code: Discord's JSON error code, e.g. 30046 with status 429 for too many
                edits of messages older than an hour (0: none).
            message: Discord's error message (default: a generic one).
        """
        return self._add_fault(
            for_seconds,
            method=method,
            template=template,
            status=status,
            remaining=times,
            retry_after=retry_after,
            code=code,
            message=message,
        )

    def lose_answers(
        self, method: str, template: str, *, times: int | None = 1, for_seconds: float | None = None
    ) -> Fault:
        """Handle requests on a route, then drop their connection unanswered.

        What the bot asked takes effect (a message is posted), but the bot hears
        only that the server disconnected, as when an answer is lost on the way.
        Same matching as :meth:`fail_route`; a lost answer also counts against the
        rate limit, as it did in Discord.
        """
        return self._add_fault(
            for_seconds,
            method=method,
            template=template,
            status=None,
            remaining=times,
            is_lost=True,
        )

    def hold_answers(self, method: str, template: str, *, times: int | None = 1) -> Fault:
        """Handle requests on a route at once, and hold their answers until released.

        What the bot asked takes effect (a message is posted, everyone sees it),
        but the bot hears nothing until ``fault.release()``, as when Discord's
        answer is slow to come back. A bot that gives up waiting (it closes the
        connection) never gets it. Same matching as :meth:`fail_route`.
        """
        return self._add_fault(
            None,
            method=method,
            template=template,
            status=None,
            remaining=times,
            held=anyio.Event(),
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

    def rate_limit_violations(
        self, channel: ChannelRef | None = None
    ) -> dict[tuple[str, str, str], BucketStats]:
        """Every bucket, on any route, where the bot sent requests over the limit.

        Args:
            channel: Only buckets of this channel (``None``: all buckets).

        Returns:
            ``(method, template, major parameter)`` to its counts, for buckets with
            requests answered 429 by the limiter (injected 429 faults do not count).
        """
        major = None if channel is None else str(self.channel(channel).id)
        return {
            key: stats
            for key, stats in self.limiter.stats.items()
            if stats.rejected and (major is None or key[2] == major)
        }

    def assert_within_rate_limits(self, channel: ChannelRef | None = None) -> None:
        """Fail unless the bot stayed within every rate limit (in ``channel``, if given).

        Raises:
            AssertionError: Naming each route and bucket, and how many requests were over.
        """
        violations = self.rate_limit_violations(channel)
        if violations:
            lines = [
                f"{method} {template} [{major or 'no major'}]: {stats.rejected} over the limit"
                for (method, template, major), stats in violations.items()
            ]
            raise AssertionError("the bot exceeded rate limits:\n" + "\n".join(lines))

    # --- application commands -------------------------------------------------------------

    @property
    def command_overwrites(self) -> int:
        """Bulk overwrites of commands (``CommandTree.sync``) so far."""
        return self.store.command_overwrites

    @property
    def command_creations(self) -> list[str]:
        """Names of the commands those overwrites created, in order (Discord counts
        these against its 200 a day; commands that already existed are not)."""
        return list(self.store.command_creations)

    # --- gateway counters -----------------------------------------------------------------

    @property
    def identify_count(self) -> int:
        """IDENTIFYs accepted so far."""
        return self.gateway.identify_count

    @property
    def resume_count(self) -> int:
        """RESUMEs accepted so far."""
        return self.gateway.resume_count
