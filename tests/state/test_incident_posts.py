"""Incidents left open by a dsup that died, found with what continues them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from supervisor.state.incident_posts import OPENED, STATE, open_incidents, state_value
from supervisor.state.ledger import Ledger
from supervisor.state.outbox import Outbox

if TYPE_CHECKING:
    from pathlib import Path


def test_open_incidents_are_the_newest_of_each_process_not_closed(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        box = Outbox(ledger)

        def write(process: str, text: str, crashes: int, *, closed: bool = False) -> int:
            state = (STATE + process, state_value(opened_at=5.0, crashes=crashes, is_closed=closed))
            return box.post(1, "incident", text, now=1.0, meta=state, marker=OPENED + process)

        write("a:0", "a first", 3, closed=True)
        second = write("a:0", "a again", 1)
        box.mark_sent(second, 900, now=2.0)
        state = (STATE + "a:0", state_value(opened_at=5.0, crashes=2, is_closed=False))
        box.edit(second, "a crashed twice", now=3.0, meta=state)
        closed = write("b:0", "b", 1)
        box.edit(
            closed,
            "b recovered",
            now=3.0,
            meta=(STATE + "b:0", state_value(opened_at=5.0, crashes=1, is_closed=True)),
        )
        found = open_incidents(ledger)
    assert [(i.process, i.row_id, i.content, i.crashes, i.opened_at) for i in found] == [
        ("a:0", second, "a crashed twice", 2, 5.0)
    ]
