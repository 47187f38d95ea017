"""Incidents whose message an earlier dsup left open (it was killed, or crashed).

An incident's message is an outbox row marked ``incident:PROCESS``; each write of it also
stores ``incident-state:PROCESS`` (when it opened, its crashes, whether it is closed) in the
same transaction, so the next start finds the open one and continues or closes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from supervisor.state.outbox import LATEST_CONTENT, key_range

if TYPE_CHECKING:
    from supervisor.state.ledger import Ledger

OPENED = "incident:"
"""The marker of an incident's message (then the process)."""
STATE = "incident-state:"
"""The key of what is known of the process's latest incident (then the process)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenIncident:
    """An incident whose message does not say it closed.

    Attributes:
        process: ``program:index``.
        row_id: the outbox row of its message.
        content: the message's latest text (queued or sent).
        opened_at: wall time of its first crash.
        crashes: crashes so far.
    """

    process: str
    row_id: int
    content: str
    opened_at: float
    crashes: int


def state_value(*, opened_at: float, crashes: int, is_closed: bool) -> str:
    """What :data:`STATE` holds for an incident."""
    return json.dumps({"opened_at": opened_at, "crashes": crashes, "closed": is_closed})


def open_incidents(ledger: Ledger, limit: int = 1000) -> list[OpenIncident]:
    """The incidents left open, oldest first.

    Call it before this dsup writes incidents of its own: every one found is of
    an earlier dsup.
    """
    opened, after = key_range(OPENED)
    rows = ledger.read(
        "SELECT substr(m.key, :skip) AS process, m.row_id, s.value AS state, "
        f"{LATEST_CONTENT} AS content "
        "FROM outbox_meta m JOIN outbox_meta s ON s.key = :state || substr(m.key, :skip) "
        "WHERE m.key >= :opened AND m.key < :after AND m.row_id IS NOT NULL "
        "ORDER BY m.row_id LIMIT :limit",
        {
            "skip": len(OPENED) + 1,
            "state": STATE,
            "opened": opened,
            "after": after,
            "limit": limit,
        },
    )
    found = []
    for row in rows:
        state = json.loads(row["state"])
        if state["closed"] or row["content"] is None:
            continue
        found.append(
            OpenIncident(
                process=row["process"],
                row_id=row["row_id"],
                content=row["content"],
                opened_at=float(state["opened_at"]),
                crashes=int(state["crashes"]),
            )
        )
    return found
