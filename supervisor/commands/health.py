"""The Discord bridge's health, as the command surface reports it in ``status``.

The bridge keeps the live record; the command surface must not import the bridge,
so it reads a :class:`BridgeHealth` snapshot through a :data:`HealthSource` callable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

BridgeState = Literal["connecting", "connected", "reconnecting", "stopped"]


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeHealth:
    """A snapshot of the Discord bridge's connection.

    Attributes:
        state: ``connecting`` (first login), ``connected``, ``reconnecting``
            (lost, trying again) or ``stopped`` (gave up: see ``last_error``).
        since: wall-clock time the bridge entered ``state`` (display only).
        user: the bot's name once logged in ("" before).
        guild: the guild served, by name once known ("" before).
        latency_seconds: the gateway's heartbeat latency while connected.
        last_error: the last failure, one line, never holding the token.
        retry_at: wall-clock time of the next attempt while reconnecting.
        problems: what keeps the bridge from doing its work while connected
            (a status channel it cannot see...), each with what to do.
    """

    state: BridgeState
    since: float
    user: str = ""
    guild: str = ""
    latency_seconds: float | None = None
    last_error: str = ""
    retry_at: float | None = None
    problems: tuple[str, ...] = ()


HealthSource = Callable[[], BridgeHealth]
"""Returns the bridge's health now; it must not block."""
