"""A crash loop relaying "all" through a long outage: few rows, every state change once."""

from __future__ import annotations

from typing import TYPE_CHECKING

from supervisor.events import ProcessState, StateChanged
from supervisor.state.outbox import MAX_CONTENT_CHARS
from tests._wait import wait_until
from tests.bridge._relayed import note_of, notes_shown, program, relayed_node
from tests.discord_fake.pytest_plugin import fake_discord

if TYPE_CHECKING:
    from pathlib import Path

    from supervisor.events import Event
    from supervisor.state.ledger import Ledger
    from tests.discord_fake import FakeDiscord

__all__ = ["fake_discord"]

MESSAGES = ("POST", "/channels/{channel_id}/messages")
CRASHES = 5


class _Changes:
    """The state changes of ``crashy:0``, in order."""

    def __init__(self) -> None:
        self.seen: list[StateChanged] = []

    def deliver(self, event: Event) -> None:
        if isinstance(event, StateChanged) and event.process == "crashy:0":
            self.seen.append(event)


def _pending_states(ledger: Ledger) -> list[str]:
    """The pending state rows not tried yet (a tried row is never joined: it may be out)."""
    rows = ledger.read(
        "SELECT content FROM outbox WHERE status = 'pending' AND kind = 'state' AND attempts = 0"
    )
    return [str(row["content"]) for row in rows]


async def test_relay_crash_loop_through_an_outage_takes_few_rows_and_loses_no_change(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """State rows are joined in the outbox while the channel is away: none is lost or
    doubled, and their order holds, once Discord takes them again."""
    crashy = program(
        "crashy",
        "relay_crash_loop.py",
        tmp_path / "runs",
        CRASHES,
        relay="all",
        start_seconds=0.1,
        start_retries=1000,
        backoff_seconds=1.2,
        backoff_max_seconds=1.2,
    )
    changes = _Changes()
    fake_discord.fail_route(*MESSAGES, status=503, times=None)
    async with relayed_node(tmp_path, fake_discord, crashy, sinks=[changes], interval=0.05) as node:
        await wait_until(
            lambda: any(e.new is ProcessState.RUNNING for e in changes.seen), seconds=40
        )
        await wait_until(lambda: "RUNNING" in "".join(_pending_states(node.ledger)), seconds=10)
        waiting = _pending_states(node.ledger)
        fake_discord.clear_faults()
        await fake_discord.wait_until(
            lambda: len(notes_shown(fake_discord, "crashy:0")) >= len(changes.seen),
            timeout_seconds=40,
        )
        seen = [note_of(e) for e in changes.seen]  # not the stop at the end
    # A row per full message at most: two rows in a row would have fit one.
    assert len(waiting) <= 2 * sum(map(len, waiting)) // MAX_CONTENT_CHARS + 1, len(waiting)
    assert notes_shown(fake_discord, "crashy:0")[: len(seen)] == seen
    fake_discord.assert_within_rate_limits("ops")
