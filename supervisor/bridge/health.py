"""The bridge's live health record: connected as whom, or reconnecting since when, and why.

The bridge's tasks write it; ``status`` (through ``commands.health``), the board and
the console read it. Readers never block; a change wakes whoever waits for one.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING

import anyio

from supervisor.commands.health import BridgeHealth

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import SimpleNamespace

    import aiohttp


class HealthRecord:
    """The bridge's connection state, updated as it changes.

    Args:
        clock: wall-clock seconds, for ``since`` and ``retry_at`` (display only).
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._health = BridgeHealth(state="connecting", since=clock())
        self._latency: Callable[[], float] | None = None
        self._changed = anyio.Event()
        self._problems: dict[str, str] = {}
        self._is_failing = False  # Discord's last answer was a 5xx, or none came

    def is_reachable(self) -> bool:
        """Whether Discord answers: the gateway is connected and the last request to its
        API got an answer other than a 5xx (as dsup stops, waiting is worth it)."""
        return self._health.state == "connected" and not self._is_failing

    def watch_requests(self, trace: aiohttp.TraceConfig) -> None:
        """Follow the answers of the requests the client makes through ``trace``."""

        async def on_end(
            session: aiohttp.ClientSession,
            context: SimpleNamespace,
            params: aiohttp.TraceRequestEndParams,
        ) -> None:
            self._answered(failing=params.response.status >= 500)

        async def on_exception(
            session: aiohttp.ClientSession,
            context: SimpleNamespace,
            params: aiohttp.TraceRequestExceptionParams,
        ) -> None:
            self._answered(failing=True)

        trace.on_request_end.append(on_end)
        trace.on_request_exception.append(on_exception)

    def _answered(self, *, failing: bool) -> None:
        if failing != self._is_failing:
            self._is_failing = failing
            self._wake()

    def snapshot(self) -> BridgeHealth:
        """The health now, with the live gateway latency while connected."""
        if self._latency is None or self._health.state != "connected":
            return self._health
        latency = self._latency()
        finite = latency == latency and latency != float("inf")  # discord.py: inf before a beat
        return replace(self._health, latency_seconds=latency if finite else None)

    def connected(self, *, user: str, guild: str, latency: Callable[[], float]) -> None:
        """The gateway session is up (READY or RESUMED)."""
        self._latency = latency
        old = self._health
        self._set(replace(old, state="connected", user=user, guild=guild, retry_at=None))

    def reconnecting(self, error: str = "", *, retry_at: float | None = None) -> None:
        """The connection was lost or failed; another attempt follows."""
        old = self._health
        if old.state == "reconnecting" and retry_at is None and not error:
            return  # still the same outage: keep its "since"
        since = old.since if old.state == "reconnecting" else self._clock()
        self._set(
            replace(
                old,
                state="reconnecting",
                since=since,
                last_error=error or old.last_error,
                retry_at=retry_at,
            ),
            keep_since=True,
        )

    def stopped(self, error: str) -> None:
        """The bridge gave up (a rejected token...) and will not retry."""
        self._set(replace(self._health, state="stopped", last_error=error, retry_at=None))

    def problem(self, key: str, text: str) -> None:
        """Note (or, with ``text`` "", clear) a problem named ``key``."""
        self._problems = (
            {**self._problems, key: text}
            if text
            else {k: v for k, v in self._problems.items() if k != key}
        )
        self._set(replace(self._health, problems=tuple(self._problems.values())), keep_since=True)

    async def wait_changed(self) -> None:
        """Return at the next change of state (not of latency), or of ``is_reachable()``."""
        await self._changed.wait()

    def _set(self, health: BridgeHealth, *, keep_since: bool = False) -> None:
        if not keep_since and health.state != self._health.state:
            health = replace(health, since=self._clock())
        if health == self._health:
            return
        self._health = health
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()
