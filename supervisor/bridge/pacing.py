"""Pacing sends from Discord's rate-limit headers, and pausing channels that refuse us.

:class:`Pacer` learns each route's bucket so a flood meets no 429; :class:`Breaker` pauses a
channel that keeps answering 403 or 404. Pure: ``now`` is a parameter.
A channel's create (POST) and edit (PATCH) are different routes, paced apart; Discord
may still put routes in one bucket (``X-RateLimit-Bucket``, discord-api-docs topics/
rate-limits), which discord.py follows (``HTTPClient._bucket_hashes``) as the safety net.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from collections.abc import Mapping

Action = Literal["create", "edit"]
RouteKey = tuple[Action, int]
"""A message route of one channel: what the outbox sends."""

FALLBACK_LIMIT = 5
FALLBACK_SECONDS = 5.0
GLOBAL_PER_SECOND = 40
"""Our own cap, under Discord's global 50 requests a second."""
LAST_REQUEST_LEAD = 0.2
"""The last request a bucket allows goes this long before its reset, not earlier."""
_ROUTE = re.compile(r"/channels/(?P<channel>\d+)/messages(?P<one>/\d+)?/?$")


def route_of(method: str, path: str) -> RouteKey | None:
    """The message route a request belongs to, or None for any other request.

    Args:
        method: the HTTP method.
        path: the URL path (``/api/v10/channels/123/messages/456``).
    """
    match = _ROUTE.search(path)
    if match is None:
        return None
    channel = int(match["channel"])
    if method == "POST" and match["one"] is None:
        return ("create", channel)
    if method == "PATCH" and match["one"] is not None:
        return ("edit", channel)
    return None


@dataclass(slots=True)
class _Bucket:
    """What the latest response said about a route's bucket, and our sends since."""

    remaining: int = FALLBACK_LIMIT
    reset_at: float = 0.0
    from_headers: bool = False
    sends: deque[float] = field(default_factory=deque)


class Pacer:
    """When the next request of a route may go.

    Args:
        fallback_limit: requests per ``fallback_seconds`` assumed for a route
            whose headers are not known yet.
        fallback_seconds: that window.
        global_per_second: requests a second across every route.
    """

    def __init__(
        self,
        *,
        fallback_limit: int = FALLBACK_LIMIT,
        fallback_seconds: float = FALLBACK_SECONDS,
        global_per_second: int = GLOBAL_PER_SECOND,
    ) -> None:
        self._fallback = (fallback_limit, fallback_seconds)
        self._global_per_second = global_per_second
        self._buckets: dict[RouteKey, _Bucket] = {}
        self._recent: deque[float] = deque()

    def ready_at(self, key: RouteKey, now: float) -> float:
        """The earliest time a request of ``key`` may go (``now`` when it may go now).

        Once the headers told a bucket's window, a request may go when it resets (its
        answer tells the next one); before any header, the fallback limit counts sends.
        """
        bucket = self._buckets.get(key)
        at = now
        if bucket is not None:
            if bucket.from_headers:
                if now < bucket.reset_at:
                    at = _in_window(bucket, now)
            else:
                limit, per = self._fallback
                _forget(bucket.sends, now - per)
                if len(bucket.sends) >= limit:
                    at = bucket.sends[0] + per
        _forget(self._recent, now - 1.0)
        if len(self._recent) >= self._global_per_second:
            at = max(at, self._recent[0] + 1.0)
        return at

    def known(self) -> list[RouteKey]:
        """The routes seen so far."""
        return list(self._buckets)

    def sent(self, key: RouteKey, now: float) -> None:
        """A request of ``key`` is going out now."""
        bucket = self._buckets.setdefault(key, _Bucket())
        bucket.remaining -= 1
        bucket.sends.append(now)
        _forget(bucket.sends, now - self._fallback[1])
        self._recent.append(now)
        _forget(self._recent, now - 1.0)

    def observe(self, key: RouteKey, status: int, headers: Mapping[str, str], now: float) -> None:
        """Learn from a response of ``key``: its bucket's remaining requests and reset.

        A 429 closes the route for its ``Retry-After`` (or reset) whatever else it says.
        """
        bucket = self._buckets.setdefault(key, _Bucket())
        remaining = _number(headers.get("X-RateLimit-Remaining"))
        reset_after = _number(headers.get("X-RateLimit-Reset-After"))
        if status == 429:
            retry = _number(headers.get("Retry-After")) or reset_after or 1.0
            bucket.remaining, bucket.reset_at, bucket.from_headers = 0, now + retry, True
            return
        if remaining is None or reset_after is None:
            return
        bucket.from_headers = True
        bucket.remaining = int(remaining)
        bucket.reset_at = now + reset_after


@dataclass(frozen=True, slots=True, kw_only=True)
class Pause:
    """A channel the sender stopped trying for a while.

    Attributes:
        channel: the channel id.
        reason: what Discord answered ("403 Missing Access").
        since: when it was paused (the clock the breaker is given).
        retry_at: when one request tries it again.
    """

    channel: int
    reason: str
    since: float
    retry_at: float


class Breaker:
    """Pauses channels that keep refusing us (403, 404); tries them again, slowly.

    Args:
        threshold: refusals in a row that pause a channel.
        first_pause: the first pause; each refusal after a pause doubles it.
        max_pause: the longest pause.
    """

    def __init__(
        self, *, threshold: int = 3, first_pause: float = 30.0, max_pause: float = 900.0
    ) -> None:
        self.threshold = threshold
        self.first_pause = first_pause
        self.max_pause = max_pause
        self._refusals: dict[int, int] = {}
        self._pauses: dict[int, Pause] = {}
        self._lengths: dict[int, float] = {}

    def refused(self, channel: int, reason: str, now: float) -> Pause | None:
        """Count a refusal; the new pause when it pauses the channel (None otherwise)."""
        count = self._refusals[channel] = self._refusals.get(channel, 0) + 1
        if count < self.threshold and channel not in self._lengths:
            return None
        length = self._lengths.get(channel)
        length = self.first_pause if length is None else min(length * 2, self.max_pause)
        self._lengths[channel] = length
        pause = self._pauses[channel] = Pause(
            channel=channel, reason=reason, since=now, retry_at=now + length
        )
        return pause

    def succeeded(self, channel: int) -> bool:
        """The channel answered: forget its refusals. True when it was paused."""
        self._refusals.pop(channel, None)
        self._lengths.pop(channel, None)
        return self._pauses.pop(channel, None) is not None

    def paused(self) -> list[Pause]:
        """The channels paused now (also while one request tries them again)."""
        return list(self._pauses.values())


def _in_window(bucket: _Bucket, now: float) -> float:
    """When the next request may go in the bucket's current window.

    What is left of the window is spread evenly, so a burst never empties the
    bucket and then waits out the whole reset; the last request goes just before
    the reset, since discord.py answers the request that empties a bucket only
    after sleeping until its reset, and the channel's next row waits for that
    answer.
    """
    if bucket.remaining <= 0:
        return bucket.reset_at
    end = bucket.reset_at - LAST_REQUEST_LEAD
    if not bucket.sends:
        return now if bucket.remaining > 1 else max(now, end)
    last = bucket.sends[-1]
    return max(now, last + (end - last) / bucket.remaining)


def _forget(times: deque[float], before: float) -> None:
    while times and times[0] <= before:
        times.popleft()


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return None
