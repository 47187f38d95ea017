"""Incidents opening together, through the fake Discord: state changes are not held back."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from supervisor.events import ProcessState
from tests._wait import Gate, wait_until
from tests.bridge._relayed import (
    ProgramChanges,
    bot_creates,
    late_changes,
    program,
    relayed_node,
    shown_in,
)
from tests.discord_fake.pytest_plugin import fake_discord

if TYPE_CHECKING:
    from pathlib import Path

    from tests.discord_fake import FakeDiscord

__all__ = ["fake_discord"]

# Two floods fill both cores for 8 s: under the suite's second worker the node can
# take longer than the default 60 s, within the waits' own deadlines (30 s + 60 s).
# The floods of the relay tests run on one worker, one at a time.
pytestmark = [pytest.mark.timeout(150), pytest.mark.xdist_group("floods")]

BURST = 8


def _incidents(fake: FakeDiscord, process: str) -> list[str]:
    """The current text of each incident message of ``process`` in ops."""
    opened = {
        a.message_id
        for a in bot_creates(fake)
        if f"`{process}` crashed" in (a.content or "") or f"✅ `{process}`" in (a.content or "")
    }
    return [str(m["content"]) for m in fake.bot_messages("ops") if int(m["id"]) in opened]


async def test_relay_crash_burst_keeps_state_changes_next_in_line(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """Incidents opening together took a create each ahead of the state changes: with
    8 at once, a crash's own state change waited behind all 8 (about 10 s).

    Each incident still gets its one message, later, and is closed by an edit once its
    process recovered; the crashes of a program relaying errors only, which has no state
    changes in the channel, are named at once in the first incident's message."""
    gate_path = tmp_path / "gate"
    burst = program(
        "burst",
        "relay_burst.py",
        gate_path,
        tmp_path / "markers",
        numprocs=BURST,
        relay="all",
        start_seconds=0.2,
        backoff_seconds=0.1,
    )
    errors = program(
        "quiet", "relay_burst.py", gate_path, tmp_path / "markers", numprocs=2, start_seconds=0.2
    )
    flood = program("flood", "relay_flood.py", 8, numprocs=2, relay="all")
    changes, quiet = ProgramChanges("burst"), ProgramChanges("quiet")
    processes = [f"burst:{n}" for n in range(BURST)]
    with Gate(gate_path) as gate:
        async with relayed_node(
            tmp_path,
            fake_discord,
            burst,
            errors,
            flood,
            sinks=[changes, quiet],
            min_recover_seconds=1.0,
        ):

            def started() -> bool:
                shown = shown_in(bot_creates(fake_discord), changes.seen)
                return changes.running() == BURST and quiet.running() == 2 and -1 not in shown

            await wait_until(started, seconds=30)
            before = len(changes.seen)
            gate.open()  # while the floods print

            def settled() -> bool:
                burst_changes = changes.seen[before:]
                return (
                    len(burst_changes) >= 3 * BURST
                    and changes.running() == BURST
                    and all(
                        "recovered after 1 crash" in "".join(_incidents(fake_discord, p))
                        for p in processes
                    )
                    and -1 not in shown_in(bot_creates(fake_discord), burst_changes)
                )

            await wait_until(settled, seconds=60)
            burst_changes = changes.seen[before:]
            crashes = [e for e in quiet.seen if e.old is ProcessState.RUNNING]
    creates = bot_creates(fake_discord)
    for process in processes:
        (incident,) = _incidents(fake_discord, process)
        assert f"✅ `{process}` recovered after 1 crash" in incident
        assert f"Traceback: {process} crashed with the others" in incident
    late = late_changes(creates, burst_changes)
    assert not late, late
    # Relaying errors only: a crash is told by its incident, or named in the first one's.
    assert len(crashes) == 2
    late = late_changes(creates, crashes, lambda event: f"`{event.process}`")
    assert not late, late
    assert fake_discord.rate_limit_stats("ops").rejected == 0
    fake_discord.assert_within_rate_limits()
