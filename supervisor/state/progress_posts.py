"""Progress messages whose run ended while no dsup could say so (dsup was killed).

A run's progress message is an outbox row marked ``progress:RUN``, its last edit marked
``progress-ended:RUN``; a message without the second is found here at the next start,
with what the ledger knows of how its run ended.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from supervisor.state.outbox import LATEST_CONTENT, key_range

if TYPE_CHECKING:
    from supervisor.state.ledger import Ledger

STARTED = "progress:"
"""The marker of a run's progress message (then the run id)."""
ENDED = "progress-ended:"
"""The marker of the edit that says the run ended (then the run id)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenProgress:
    """A progress message that does not say its run ended.

    Attributes:
        run_id: the run.
        row_id: the outbox row of the message.
        content: the message's latest text (queued or sent).
        ended_at: when the run's process exited, if the ledger knows (None: dsup
            was killed before it could see the exit).
        exit_code: its exit status, if it called exit().
        exit_signal: the signal that ended it, if any.
    """

    run_id: str
    row_id: int
    content: str
    ended_at: float | None
    exit_code: int | None
    exit_signal: int | None


def open_progress(ledger: Ledger, limit: int = 1000) -> list[OpenProgress]:
    """The progress messages without their end, oldest first.

    Call it before this dsup queues progress of its own: then every one found is of
    a run of an earlier dsup, over by now.
    """
    started, after = key_range(STARTED)
    rows = ledger.read(
        "SELECT substr(m.key, :skip) AS run_id, m.row_id, "
        f"{LATEST_CONTENT} AS content, r.ended_at, r.exit_code, r.exit_signal "
        "FROM outbox_meta m "
        "LEFT JOIN outbox_meta e ON e.key = :ended || substr(m.key, :skip) "
        "LEFT JOIN runs r ON r.run_id = substr(m.key, :skip) "
        "WHERE m.key >= :started AND m.key < :after AND m.row_id IS NOT NULL "
        "AND e.key IS NULL ORDER BY m.row_id LIMIT :limit",
        {
            "skip": len(STARTED) + 1,
            "ended": ENDED,
            "started": started,
            "after": after,
            "limit": limit,
        },
    )
    return [
        OpenProgress(
            run_id=row["run_id"],
            row_id=row["row_id"],
            content=row["content"] or "",
            ended_at=row["ended_at"],
            exit_code=row["exit_code"],
            exit_signal=row["exit_signal"],
        )
        for row in rows
    ]
