"""Rate limits with Discord's headers, and the faults a test injects on REST routes.

A route is named by its method and its path template below ``/api/v10``, exactly as
discord.py writes it, e.g. ``("POST", "/channels/{channel_id}/messages")``. A bucket is
that route plus its major parameter (channel, guild, interaction, or webhook id and
token), as in Discord.
Windows are fixed: they open at the first request and close ``per_seconds`` later.

This module decides; it does not speak HTTP (``http_util.py`` turns decisions into
responses).
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    import anyio

MESSAGES_ROUTE = ("POST", "/channels/{channel_id}/messages")
ATTACHMENT_ROUTE = ("GET", "/attachments/{channel_id}/{attachment_id}/{filename}")
"""The CDN's route of a message's file: faults apply to it, rate limits do not."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Limit:
    """At most ``limit`` requests per ``per_seconds`` in one bucket."""

    limit: int
    per_seconds: float


@dataclass(slots=True, kw_only=True)
class BucketStats:
    """What the fake counted for one bucket.

    Attributes:
        requests: Requests that reached the limiter (accepted or not).
        rejected: Requests answered 429 because the bucket was exhausted: each one is a
            request the client sent over the limit.
        max_in_window: The most requests accepted in any one window.
    """

    requests: int = 0
    rejected: int = 0
    max_in_window: int = 0


@dataclass(slots=True)
class _Window:
    opened_at: float
    used: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """The limiter's answer for one request: headers to send, and whether to refuse it."""

    headers: dict[str, str]
    retry_after: float | None = None


@dataclass(slots=True, kw_only=True)
class Fault:
    """A fault on matching routes: a forced status, a delay, or both; or a lost answer.

    ``remaining`` counts down per matching request (``None``: no count limit);
    ``until`` is a deadline on the limiter's clock (``None``: no time limit);
    ``code`` and ``message`` are Discord's JSON error (defaults by status);
    ``is_lost``: the request is handled, then the connection is dropped unanswered;
    ``held``: the request is handled, and its answer waits until :meth:`release`.
    """

    method: str
    template: str
    status: int | None
    code: int = 0
    message: str = ""
    delay_seconds: float = 0.0
    retry_after: float = 1.0
    remaining: int | None = None
    until: float | None = None
    is_lost: bool = False
    held: anyio.Event | None = None
    hits: int = 0

    def release(self) -> None:
        """Send the answers held so far and from now on (a fault without ``held``: nothing)."""
        if self.held is not None:
            self.held.set()

    def matches(self, method: str, template: str, now: float) -> bool:
        """Return whether this fault applies to a request, and is still live."""
        if self.method not in ("*", method) or self.template not in ("*", template):
            return False
        if self.remaining is not None and self.remaining <= 0:
            return False
        return self.until is None or now < self.until


@dataclass(slots=True, kw_only=True)
class RateLimiter:
    """Per-bucket counting with real ``X-RateLimit-*`` headers.

    Attributes:
        default: The limit of routes without their own.
        limits: Limits per ``(method, template)``.
        send_headers: When false, successful responses carry no rate-limit headers, so a
            client cannot wait ahead of time and must meet a 429.
        clock: Seconds, monotonic.
    """

    default: Limit = field(default_factory=lambda: Limit(limit=50, per_seconds=1.0))
    limits: dict[tuple[str, str], Limit] = field(
        default_factory=lambda: {MESSAGES_ROUTE: Limit(limit=5, per_seconds=5.0)}
    )
    send_headers: bool = True
    clock: Callable[[], float] = time.monotonic
    stats: dict[tuple[str, str, str], BucketStats] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    _windows: dict[tuple[str, str, str], _Window] = field(default_factory=dict)

    def set_limit(self, method: str, template: str, *, limit: int, per_seconds: float) -> None:
        """Set the limit of one route, for every major parameter."""
        self.limits[(method, template)] = Limit(limit=limit, per_seconds=per_seconds)

    def check(self, method: str, template: str, major: str) -> Decision:
        """Count one request and decide whether it passes.

        Args:
            method: HTTP method.
            template: Path template below the API base.
            major: The major parameter value ("" if the route has none).

        Returns:
            The headers for the response; ``retry_after`` is set when the request must be
            answered 429.
        """
        limit = self.limits.get((method, template), self.default)
        key = (method, template, major)
        stats = self.stats.setdefault(key, BucketStats())
        stats.requests += 1
        now = self.clock()
        window = self._windows.get(key)
        if window is None or now >= window.opened_at + limit.per_seconds:
            window = self._windows[key] = _Window(opened_at=now)
        # Rounded up to the millisecond the headers carry: a client that waits
        # exactly that long must find the window over, however fast its round trip.
        reset_after = math.ceil(max(window.opened_at + limit.per_seconds - now, 0.0) * 1000) / 1000
        bucket = hashlib.sha1(f"{method} {template}".encode()).hexdigest()[:16]
        if window.used >= limit.limit:
            stats.rejected += 1
            headers = self._headers(limit, 0, reset_after, bucket)
            headers["Retry-After"] = str(max(1, round(reset_after + 0.5)))
            headers["X-RateLimit-Scope"] = "user"
            return Decision(headers=headers, retry_after=round(reset_after, 3))
        window.used += 1
        stats.max_in_window = max(stats.max_in_window, window.used)
        if not self.send_headers:
            return Decision(headers={})
        return Decision(
            headers=self._headers(limit, limit.limit - window.used, reset_after, bucket)
        )

    @staticmethod
    def _headers(limit: Limit, remaining: int, reset_after: float, bucket: str) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(limit.limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": bucket,
        }

    def fault_for(self, method: str, template: str) -> Fault | None:
        """Return the first live fault matching a request, consuming one use of it."""
        now = self.clock()
        for fault in self.faults:
            if fault.matches(method, template, now):
                fault.hits += 1
                if fault.remaining is not None:
                    fault.remaining -= 1
                return fault
        return None
