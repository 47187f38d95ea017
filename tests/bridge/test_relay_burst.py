"""Incidents opening together, through the fake Discord: state changes are not held back."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

from supervisor.events import ProcessState, StateChanged
from tests._wait import wait_until
from tests.bridge._relayed import program, relayed_node
from tests.discord_fake.pytest_plugin import fake_discord

if TYPE_CHECKING:
    from pathlib import Path

    from supervisor.events import Event
    from tests.discord_fake import BotAction, FakeDiscord

__all__ = ["fake_discord"]

BURST = 8


class _Changes:
    """The state changes of the processes of one program, in order."""

    def __init__(self, program: str) -> None:
        self.program = program
        self.seen: list[StateChanged] = []

    def deliver(self, event: Event) -> None:
        if isinstance(event, StateChanged) and event.program == self.program:
            self.seen.append(event)

    def running(self) -> int:
        """Processes whose latest change made them RUNNING."""
        latest = {e.process: e.new for e in self.seen}
        return sum(1 for state in latest.values() if state is ProcessState.RUNNING)


def _creates(fake: FakeDiscord) -> list[BotAction]:
    return [a for a in fake.bot_actions("ops") if a.kind == "create"]


def _created_at(action: BotAction) -> float:
    assert action.message is not None
    return datetime.datetime.fromisoformat(str(action.message["timestamp"])).timestamp()


def _shown_in(creates: list[BotAction], changes: list[StateChanged]) -> list[int]:
    """For each change, the index of the first create showing it, per process in order
    (-1 once one is missing)."""
    found = []
    after: dict[str, int] = {}
    for event in changes:
        text = f"`{event.process}` {event.old.value} → {event.new.value}"
        start = after.get(event.process, 0)
        index = next(
            (i for i in range(start, len(creates)) if text in (creates[i].content or "")), -1
        )
        found.append(index)
        if index < 0:
            break
        after[event.process] = index
    return found


async def test_relay_crash_burst_keeps_state_changes_next_in_line(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """Incidents opening together took a create each ahead of the state changes: with
    8 at once, a crash's own state change waited behind all 8 (about 8 s)."""
    gate = tmp_path / "gate"
    burst = program(
        "burst",
        "relay_burst.py",
        gate,
        tmp_path / "markers",
        numprocs=BURST,
        relay="all",
        start_seconds=0.2,
        backoff_seconds=0.1,
    )
    flood = program("flood", "relay_flood.py", 8, numprocs=2, relay="all")
    changes = _Changes("burst")
    async with relayed_node(tmp_path, fake_discord, burst, flood, sinks=[changes]):

        def started() -> bool:
            shown = _shown_in(_creates(fake_discord), changes.seen)
            return changes.running() == BURST and -1 not in shown

        await wait_until(started, seconds=30)
        before = len(changes.seen)
        gate.touch()  # while the floods print

        def settled() -> bool:
            burst_changes = changes.seen[before:]
            creates = _creates(fake_discord)
            incidents = [a for a in creates if "crashed" in (a.content or "")]
            return (
                len(burst_changes) >= 3 * BURST
                and changes.running() == BURST
                and len(incidents) >= BURST
                and -1 not in _shown_in(creates, burst_changes)
            )

        await wait_until(settled, seconds=60)
        burst_changes = changes.seen[before:]
    creates = _creates(fake_discord)
    for process in (f"burst:{n}" for n in range(BURST)):
        opened = [a for a in creates if f"`{process}` crashed" in (a.content or "")]
        assert len(opened) == 1, f"one incident message for {process}"
    late = []
    for event, index in zip(burst_changes, _shown_in(creates, burst_changes), strict=True):
        # Creates made after the change, before the one showing it: at the fake's 5 per
        # 5 s (one every 1.2 s at most), the one in flight when it happened at most.
        ahead = [a for a in creates[:index] if _created_at(a) >= event.at]
        if len(ahead) > 1:
            late.append(f"{event.process} {event.new.value}: {len(ahead)} messages ahead")
    assert not late, late
    assert fake_discord.rate_limit_stats("ops").rejected == 0
    fake_discord.assert_within_rate_limits()
