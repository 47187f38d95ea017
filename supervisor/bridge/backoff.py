"""How long the bridge waits before it connects again after a failure.

Exponential, 5 s to 10 minutes, and pure (the caller sleeps): a bridge failing on every try
spends at most about 150 IDENTIFYs a day, and Discord resets a token after 1,000.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

FIRST_SECONDS = 5.0
MOST_SECONDS = 600.0


@dataclass(slots=True, kw_only=True)
class Backoff:
    """Doubles the wait after each failure in a row, up to ``most``.

    Attributes:
        first: the wait after a first failure.
        most: the longest wait.
        stable_seconds: a connection that lasted this long resets the waits.
    """

    first: float = FIRST_SECONDS
    most: float = MOST_SECONDS
    stable_seconds: float = MOST_SECONDS
    failures: int = 0

    def after_failure(self, lasted: float) -> float:
        """The wait before the next attempt, after one that ended in ``lasted`` seconds."""
        if lasted >= self.stable_seconds:
            self.failures = 0
        delay = min(self.first * 2.0**self.failures, self.most)
        self.failures += 1
        return delay


IDENTIFY_WINDOW_SECONDS = 3600.0


@dataclass(slots=True, kw_only=True)
class IdentifyPacing:
    """The wait before an IDENTIFY that is not a client's first (a refused resume...).

    discord.py waits 5 s each time, so a gateway that keeps invalidating the
    session would spend 1,000 IDENTIFYs in under two hours. Here each IDENTIFY
    in the last hour doubles the wait, up to ``most``.
    """

    first: float = FIRST_SECONDS
    most: float = MOST_SECONDS
    recent: deque[float] = field(default_factory=deque)

    def wait_before(self, now: float, *, initial: bool) -> float:
        """The wait before an IDENTIFY at ``now`` (0 for a client's first: the bridge
        already waited its backoff); records it."""
        while self.recent and self.recent[0] <= now - IDENTIFY_WINDOW_SECONDS:
            self.recent.popleft()
        delay = 0.0 if initial else min(self.first * 2.0 ** max(len(self.recent) - 1, 0), self.most)
        self.recent.append(now + delay)
        return delay
