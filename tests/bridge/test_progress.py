"""The progress relay on its own, with a real ledger and outbox: when it looks for changes."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import anyio

from supervisor.bridge.progress import ProgressRelay
from supervisor.config.schema import DiscordSpec, ProgramSpec, Relay
from supervisor.events import Progress, ProgressReported
from supervisor.state.ledger import Ledger
from supervisor.state.outbox import Outbox
from tests._wait import wait_until

if TYPE_CHECKING:
    from pathlib import Path

TICK = 0.01


async def test_progress_relay_at_rest_looks_at_nothing_until_a_run_reports(
    tmp_path: Path,
) -> None:
    """An idle node's progress relay woke every second to find no change: now it sleeps
    until a run reports, and that report is still queued within a tick or so.

    The quiet part is watched over a window of 30 ticks (a look at the runs reads the
    clock): the old relay read it about 30 times there, this one never can.
    """
    looks: list[float] = []

    def clock() -> float:
        looks.append(anyio.current_time())
        return looks[-1]

    programs = {"w": ProgramSpec(name="w", command=("true",), cwd=tmp_path, relay=Relay.RESULTS)}
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        relay = ProgressRelay(
            DiscordSpec(results_channel=42),
            Outbox(ledger),
            ledger,
            lambda: programs,
            clock=clock,
            tick_seconds=TICK,
        )
        async with anyio.create_task_group() as tg:
            await tg.start(relay.serve)
            with anyio.move_on_after(30 * TICK):  # a window to watch: nothing comes
                await wait_until(lambda: bool(looks))
            assert looks == []
            progress = Progress(fraction=0.5, text="half", at=time.time())
            relay.deliver(ProgressReported(process="w:0", run_id="r1", progress=progress))
            await wait_until(
                lambda: bool(ledger.read("SELECT 1 FROM outbox WHERE kind = 'progress'"))
            )
            tg.cancel_scope.cancel()
    assert looks  # the report was looked at
