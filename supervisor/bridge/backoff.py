"""How long the bridge waits before it connects again after a failure.

Exponential, 5 s to 10 minutes, and pure (the caller sleeps): a bridge failing on every try
spends at most about 150 IDENTIFYs a day, and Discord resets a token after 1,000.
"""

from __future__ import annotations

from dataclasses import dataclass

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
