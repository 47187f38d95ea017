"""Progress messages left open by a dsup that died, found with how their runs ended."""

from __future__ import annotations

from typing import TYPE_CHECKING

from supervisor.state.ledger import Ledger
from supervisor.state.outbox import Outbox
from supervisor.state.progress_posts import ENDED, STARTED, open_progress

if TYPE_CHECKING:
    from pathlib import Path


def test_open_progress_is_every_message_without_its_end_with_its_runs_exit(
    tmp_path: Path,
) -> None:
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        box = Outbox(ledger)
        for run, pid in (("killed", 10), ("exited", 11), ("closed", 12)):
            ledger.record_run_start(
                run_id=run, process="p:0", program="p", pid=pid, create_time=1.0, started_at=1.0
            )
        ledger.record_run_exit(run_id="exited", exit_code=3, exit_signal=None, ended_at=2.0)
        rows = {
            run: box.post(5, "progress", f"**p:0** {run}", now=1.0, marker=STARTED + run)
            for run in ("killed", "exited", "closed", "unknown")
        }
        box.mark_sent(rows["exited"], 900, now=1.5)
        box.edit(rows["exited"], "**p:0** exited 50%", now=2.0)
        box.edit(rows["closed"], "**p:0** closed\nEnded: EXITED", now=2.0, marker=ENDED + "closed")
        found = {p.run_id: p for p in open_progress(ledger)}
    assert sorted(found) == ["exited", "killed", "unknown"]
    assert found["exited"].content == "**p:0** exited 50%"  # the latest text, not yet sent
    assert (found["exited"].ended_at, found["exited"].exit_code) == (2.0, 3)
    assert found["killed"].ended_at is None
    assert found["killed"].row_id == rows["killed"]
    assert found["unknown"].exit_code is None  # its run was pruned
