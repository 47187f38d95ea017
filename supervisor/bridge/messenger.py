"""Posting and editing messages in a channel by id, with Discord's refusals as data.

The one way the bridge posts outside interaction answers (the board, the outbox's sender):
each call makes one request, pings nobody, and returns a :class:`Delivery` instead of
raising, so the caller decides when to try again from the status, code and ``retry_after``.
A client's writes still waiting for their answer are kept in its :class:`Requests`.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import aiohttp
import anyio
import discord
import orjson
from discord.http import Route, handle_message_parameters
from discord.utils import MISSING

from supervisor.process.lazy_event import LazyEvent

if TYPE_CHECKING:
    from collections.abc import Coroutine, Sequence

logger = logging.getLogger(__name__)

# Discord's JSON error codes (discord-api-docs, topics/opcodes-and-status-codes): a
# deleted channel answers 404 with 10003; one the bot cannot view answers 403 with 50001.
UNKNOWN_CHANNEL = 10003
UNKNOWN_MESSAGE = 10008
MISSING_ACCESS = 50001
MISSING_PERMISSIONS = 50013
OLD_MESSAGE_EDITS = 30046  # too many edits of messages older than an hour
REQUEST_SECONDS = 10.0
ANSWER_SECONDS = 1.5
"""As dsup stops, how long :meth:`Messenger.answered` waits by default for the writes in
flight."""
KEEP: Literal["keep"] = "keep"
"""An edit's ``view`` that leaves the message's components as they are."""
_NO_MENTIONS = discord.AllowedMentions.none()
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """What became of one request.

    Attributes:
        message_id: the message posted or edited (None when it failed).
        status: the HTTP status of a refusal (None when it succeeded; 0 when
            no answer came: a network error).
        code: Discord's JSON error code of a refusal (0 when it had none).
        retry_after: seconds Discord asked to wait (a 429), else None.
        error: a one-line description of the refusal ("" when it succeeded).
    """

    message_id: int | None = None
    status: int | None = None
    code: int = 0
    retry_after: float | None = None
    error: str = ""

    @property
    def is_ok(self) -> bool:
        """True when the request succeeded."""
        return self.status is None

    @property
    def is_gone(self) -> bool:
        """The message (or its channel) no longer exists or cannot be seen."""
        return self.code in (UNKNOWN_MESSAGE, UNKNOWN_CHANNEL, MISSING_ACCESS)


@dataclass(frozen=True, slots=True, kw_only=True)
class Found:
    """A message read back from a channel: its id, author, content and first embed's text."""

    message_id: int
    author_id: int
    footer: str
    description: str
    content: str = ""


class Requests:
    """The posts, edits and deletes of one client still waiting for their answer.

    The client ends them as it closes (:meth:`cancel`): nobody waits for them any
    more. Before then, a caller that stops waits for them (:meth:`Messenger.answered`).
    """

    def __init__(self) -> None:
        self._scopes: set[anyio.CancelScope] = set()
        self._answered = LazyEvent()  # a flag until a caller that stops waits on it
        self._answered.set()

    def add(self, scope: anyio.CancelScope) -> None:
        """A request, in ``scope``, waits for its answer."""
        if not self._scopes:
            self._answered = LazyEvent()
        self._scopes.add(scope)

    def discard(self, scope: anyio.CancelScope) -> None:
        """The request in ``scope`` ended (answered or not)."""
        self._scopes.discard(scope)
        if not self._scopes:
            self._answered.set()

    @property
    def is_answered(self) -> bool:
        """True when no request waits for its answer."""
        return not self._scopes

    def cancel(self) -> None:
        """End every request still waiting for its answer."""
        for scope in self._scopes:
            scope.cancel()

    async def wait(self) -> None:
        """Return once no request waits for its answer."""
        await self._answered.wait()


class Messenger:
    """Sends through one connected client; never raises for Discord's refusals.

    Args:
        client: a logged-in client (its HTTP session is used; no cache needed).
    """

    def __init__(self, client: discord.Client) -> None:
        self._client = client

    def _channel(self, channel_id: int) -> discord.PartialMessageable:
        return self._client.get_partial_messageable(channel_id)

    async def post(
        self,
        channel_id: int,
        *,
        content: str | None = None,
        embeds: Sequence[discord.Embed] = (),
        view: discord.ui.View | None = None,
        nonce: str | None = None,
        reply_to: int | None = None,
        files: Sequence[discord.File] = (),
    ) -> Delivery:
        """Post a message; ``nonce`` (stable, at most 25 characters) makes a retry safe.

        Sent with ``enforce_nonce`` when given (discord.py sends it with every
        nonce): a second create with it returns the first message.
        ``reply_to`` goes with ``fail_if_not_exists`` false: when that message was
        deleted, Discord posts a plain message instead of refusing (discord-api-docs,
        Message Reference object). ``AllowedMentions.none()`` also sets
        ``replied_user`` false, so a reply pings its author neither (discord.py,
        mentions.py).

        Without a view the answer is not made into a ``discord.Message``: only its
        id is needed (:meth:`_create`); a view goes through ``send``, which keeps
        it for its clicks.
        """
        reference = (
            discord.MessageReference(
                message_id=reply_to, channel_id=channel_id, fail_if_not_exists=False
            )
            if reply_to is not None
            else None
        )
        if view is None:
            return await self._attempt(
                self._create(channel_id, content, list(embeds), list(files), nonce, reference)
            )
        options: dict[str, Any] = {
            "content": content,
            "embeds": list(embeds),
            "allowed_mentions": _NO_MENTIONS,
            "view": view,
        }
        if nonce is not None:
            options["nonce"] = nonce
        if reference is not None:
            options["reference"] = reference
        if files:
            options["files"] = list(files)
        return await self._attempt(self._channel(channel_id).send(**options))

    async def _create(
        self,
        channel_id: int,
        content: str | None,
        embeds: list[discord.Embed],
        files: list[discord.File],
        nonce: str | None,
        reference: discord.MessageReference | None,
    ) -> Delivery:
        """Create a message as ``Messageable.send`` does (the same parameters), its id only.

        The request is discord.py's own (``HTTPClient.request``: its rate limits
        and retries), as ``HTTPClient.send_message`` makes it, except that a body
        without files goes as the JSON's bytes: discord.py would make the JSON a
        str and aiohttp encode it again, and the marker's zero-width characters
        make both steps slow for the whole text (about 1.5 % of a relayed
        message's CPU).
        """
        client = self._client
        with handle_message_parameters(
            content=content,
            embeds=embeds,
            files=files or MISSING,
            # Like ``send``: a random nonce when none is given (sent with enforce_nonce).
            nonce=nonce if nonce is not None else secrets.randbits(64),
            allowed_mentions=_NO_MENTIONS,
            message_reference=(
                reference.to_message_reference_dict() if reference is not None else MISSING
            ),
            previous_allowed_mentions=client.allowed_mentions,
        ) as params:
            if params.files:
                data = await client.http.send_message(channel_id, params=params)
            else:
                route = Route("POST", "/channels/{channel_id}/messages", channel_id=channel_id)
                body = aiohttp.BytesPayload(
                    orjson.dumps(params.payload), content_type="application/json"
                )
                data = await client.http.request(route, data=body)
        return Delivery(message_id=int(data["id"]))

    async def edit(
        self,
        channel_id: int,
        message_id: int,
        *,
        content: str | None = None,
        embeds: Sequence[discord.Embed] | None = None,
        view: discord.ui.View | Literal["keep"] | None = KEEP,
    ) -> Delivery:
        """Replace a message's content, its embeds (when given) and its components.

        ``view`` None removes the components; :data:`KEEP` leaves them.
        """
        message = self._channel(channel_id).get_partial_message(message_id)
        options: dict[str, Any] = {"content": content, "allowed_mentions": _NO_MENTIONS}
        if embeds is not None:
            options["embeds"] = list(embeds)
        if view != KEEP:
            options["view"] = view
        return await self._attempt(message.edit(**options))

    async def delete(self, channel_id: int, message_id: int) -> Delivery:
        """Delete a message."""
        message = self._channel(channel_id).get_partial_message(message_id)
        result = await self._attempt(message.delete())
        return Delivery(message_id=message_id) if result.is_ok else result

    async def fetch(self, channel_id: int, message_id: int) -> Found | Delivery:
        """Read one message back, or the refusal."""
        message = await _finished(self._channel(channel_id).fetch_message(message_id), is_read=True)
        return message if isinstance(message, Delivery) else _found(message)

    async def recent(
        self, channel_id: int, *, limit: int = 50, since: float | None = None
    ) -> list[Found] | Delivery:
        """The channel's newest ``limit`` messages, or the refusal.

        Without Read Message History in the channel Discord answers no messages, not a
        refusal; without View Channel, 403 (50001) (discord-api-docs, Get Channel
        Messages).

        Args:
            channel_id: the channel.
            limit: how many at most.
            since: wall-clock seconds: only messages posted since then, oldest
                first (else the newest first).
        """
        after = None
        if since is not None:
            moment = datetime.datetime.fromtimestamp(since, tz=datetime.UTC)
            after = discord.Object(id=discord.utils.time_snowflake(moment))
        history = self._channel(channel_id).history(limit=limit, after=after)

        async def read() -> list[discord.Message]:
            return [m async for m in history]

        messages = await _finished(read(), is_read=True)
        return messages if isinstance(messages, Delivery) else [_found(m) for m in messages]

    async def answered(self, seconds: float | None = ANSWER_SECONDS) -> bool:
        """Wait until none of the client's posts, edits and deletes waits for its answer.

        For a caller about to stop: an answer names what Discord did (the
        message a post made), and a request sent meanwhile may land before one
        still in flight. Only a client that keeps its :class:`Requests` (a
        ``BridgeClient``) is followed; for any other this returns at once.

        Args:
            seconds: the longest wait (None: until the caller is cancelled).

        Returns:
            True when none waits any more, False after ``seconds``.
        """
        requests = self._requests()
        if requests is None:
            return True
        with anyio.move_on_after(seconds):
            await requests.wait()
        return requests.is_answered

    def _requests(self) -> Requests | None:
        # A BridgeClient keeps its requests in ``requests`` and ends them as it closes.
        requests = getattr(self._client, "requests", None)
        return requests if isinstance(requests, Requests) else None

    async def _attempt(self, request: Coroutine[Any, Any, Any]) -> Delivery:
        result = await _finished(request, in_flight=self._requests())
        if isinstance(result, Delivery):
            return result
        return Delivery(message_id=getattr(result, "id", None))


async def _finished(
    request: Coroutine[Any, Any, _T],
    *,
    is_read: bool = False,
    in_flight: Requests | None = None,
) -> _T | Delivery:
    """Await one request to its end, bounded by ``REQUEST_SECONDS``; a refusal as a Delivery.

    A request cancelled after discord.py counted it leaves its rate-limit bucket
    believing it is exhausted: for up to 30 s every later request on the route
    waits (the farewell's among them). So a request, once sent, runs to its end:
    a post, edit or delete in the caller's task, shielded (its answer names what
    Discord did, even for a caller being cancelled); a read (``is_read``) in a
    task of its own, so that a cancelled caller stops waiting at once (the task
    ends with its request, at the latest when the client closes its HTTP session
    and the request fails). A request in
    ``in_flight`` (its client's) ends when its client closes: nobody waits for its
    answer any more, and discord.py sleeps up to 7 s between its own retries of a 5xx.
    """
    with anyio.move_on_after(REQUEST_SECONDS, shield=not is_read) as scope:
        if in_flight is not None:
            in_flight.add(scope)
        try:
            if not is_read:
                return await request
            task = asyncio.ensure_future(request)
            task.add_done_callback(_consumed)
            return await asyncio.shield(task)
        except (discord.DiscordException, aiohttp.ClientError, OSError) as exc:
            return _refused(exc)
        except RuntimeError as exc:  # aiohttp: the client closed its session meanwhile
            return Delivery(status=0, error=f"the connection is closed ({exc})")
        finally:
            if in_flight is not None:
                in_flight.discard(scope)
    if anyio.current_time() < scope.deadline:
        return Delivery(status=0, error="the connection is closed")
    return Delivery(status=0, error=f"no answer within {REQUEST_SECONDS:.0f} s")


def _consumed(task: asyncio.Future[Any]) -> None:
    """Take a detached read's failure, so that one nobody waited for is not logged."""
    if not task.cancelled():
        task.exception()


def _found(message: discord.Message) -> Found:
    embed = message.embeds[0] if message.embeds else None
    return Found(
        message_id=message.id,
        author_id=message.author.id,
        footer=(embed.footer.text or "") if embed else "",
        description=(embed.description or "") if embed else "",
        content=message.content,
    )


def _refused(exc: BaseException) -> Delivery:
    """A refusal as data: discord.py's exceptions carry status, code and retry_after."""
    if isinstance(exc, discord.RateLimited):
        return Delivery(status=429, retry_after=exc.retry_after, error=f"rate limited: {exc}")
    if isinstance(exc, discord.HTTPException):
        retry = getattr(exc.response, "headers", {}).get("Retry-After")
        return Delivery(
            status=exc.status,
            code=exc.code,
            retry_after=float(retry) if retry else None,
            error=f"{exc.status} (code {exc.code}) {exc.text or exc.response.reason or ''}".strip(),
        )
    return Delivery(status=0, error=f"{type(exc).__name__}: {exc}")
