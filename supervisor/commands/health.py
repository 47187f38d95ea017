"""The Discord bridge's health, as the command surface reports it in ``status``.

The command surface must not import the bridge, so it reads a :class:`BridgeHealth`
snapshot through a :data:`HealthSource` callable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

from supervisor import humanize

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


def describe(health: BridgeHealth, *, now: float) -> list[str]:
    """What ``dsup ctl status`` and the console print: the connection, then each problem."""
    if health.state == "connected":
        latency = (
            f" (latency {health.latency_seconds * 1000:.0f} ms)"
            if health.latency_seconds is not None
            else ""
        )
        line = f"discord: connected as {health.user} to {health.guild}{latency}"
    elif health.state == "stopped":
        line = f"discord: stopped: {health.last_error}"
    else:
        line = f"discord: {health.state} for {humanize.duration(now - health.since)}"
        if health.retry_at is not None:
            line += f", next try in {humanize.duration(max(health.retry_at - now, 0.0))}"
        if health.last_error:
            line += f": {health.last_error}"
    return [line, *(f"discord: problem: {problem}" for problem in health.problems)]


def from_wire(data: object) -> BridgeHealth | None:
    """A :class:`BridgeHealth` back from its JSON form (``status`` over the socket)."""
    if not isinstance(data, dict) or data.get("state") not in get_args(BridgeState):
        return None

    def number(key: str) -> float | None:
        value = data.get(key)
        return float(value) if isinstance(value, int | float) else None

    problems = data.get("problems")
    return BridgeHealth(
        state=data["state"],
        since=number("since") or 0.0,
        user=str(data.get("user") or ""),
        guild=str(data.get("guild") or ""),
        latency_seconds=number("latency_seconds"),
        last_error=str(data.get("last_error") or ""),
        retry_at=number("retry_at"),
        problems=tuple(str(p) for p in problems) if isinstance(problems, list) else (),
    )
