"""Faults in the middle of the relay's work, through the fake Discord: a 429 with its
Retry-After and a dropped gateway land while an incident is edited, while state rows
join in the outbox, and while a burst of incidents takes its turns.

Whatever lands, one incident message per process is edited and closed, every state
change is shown once and in order, and no request beyond the injected 429 meets one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from supervisor.bridge.incident import is_crash
from supervisor.humanize import plural
from tests._wait import Gate, wait_until
from tests.bridge._relayed import (
    ProgramChanges,
    bot_creates,
    notes_shown,
    program,
    relayed_node,
)
from tests.discord_fake.pytest_plugin import fake_discord

if TYPE_CHECKING:
    from pathlib import Path

    from supervisor.state.ledger import Ledger
    from tests.discord_fake import BotAction, FakeDiscord

__all__ = ["fake_discord"]

CREATE = ("POST", "/channels/{channel_id}/messages")
EDIT = ("PATCH", "/channels/{channel_id}/messages/{message_id}")


def _edits(fake: FakeDiscord) -> list[BotAction]:
    return [a for a in fake.bot_actions("ops") if a.kind == "edit"]


def _incident_creates(fake: FakeDiscord, process: str) -> list[BotAction]:
    """The incident messages of ``process`` (one closed before its turn came opens closed)."""
    opened = (f"`{process}` crashed", f"`{process}` is FATAL", f"✅ `{process}` recovered")
    return [a for a in bot_creates(fake) if any(text in (a.content or "") for text in opened)]


def _now_says(fake: FakeDiscord, action: BotAction) -> str:
    """What the message ``action`` made says now (after its edits)."""
    (message,) = [m for m in fake.bot_messages("ops") if int(m["id"]) == action.message_id]
    return str(message["content"])


def _joined_state_rows(ledger: Ledger) -> int:
    """State rows a later state row joined (their text grew after they were written)."""
    rows = ledger.read("SELECT count(*) FROM outbox WHERE kind = 'state' AND until_at > created_at")
    return int(rows[0][0])


async def test_relay_incident_edited_through_a_429_and_a_gateway_drop_is_one_message_closed(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """A crash loop's edit meets a 429 while the gateway is down: the edit goes again
    after its Retry-After, the loop keeps editing the same message, and its recovery
    closes it with the count of every crash."""
    gate_path = tmp_path / "gate"
    runs = tmp_path / "runs"
    crashy = program(
        "crashy",
        "relay_crash_until.py",
        gate_path,
        runs,
        start_seconds=0.2,
        start_retries=1000,
        backoff_seconds=0.05,
        backoff_max_seconds=0.1,
    )
    with Gate(gate_path) as gate:
        async with relayed_node(tmp_path, fake_discord, crashy, min_recover_seconds=1.0):
            (created,) = await fake_discord.wait_until(
                lambda: bot_creates(fake_discord), timeout_seconds=20
            )
            limited = fake_discord.fail_route(*EDIT, status=429, times=1, retry_after=1.0)
            async with fake_discord.gateway_outage():
                await fake_discord.wait_until(lambda: limited.hits == 1, timeout_seconds=20)
                edited = len(_edits(fake_discord))
                # The limited edit went again after its Retry-After, and the loop goes on.
                await fake_discord.wait_until(
                    lambda: len(_edits(fake_discord)) > edited, timeout_seconds=20
                )
            gate.open()
            await fake_discord.wait_until(
                lambda: "recovered after" in (_edits(fake_discord)[-1].content or ""),
                timeout_seconds=30,
            )
    crashes = int(runs.read_text()) - 1  # the last run stayed up
    assert crashes >= 2
    assert bot_creates(fake_discord) == [created]
    assert "`crashy:0` crashed" in (created.content or "")
    edits = _edits(fake_discord)
    assert {a.message_id for a in edits} == {created.message_id}
    final = edits[-1].content or ""
    assert final.startswith(f"✅ `crashy:0` recovered after {crashes} crashes")
    assert f"Traceback: crash {crashes}" in final
    assert limited.hits == 1
    fake_discord.assert_within_rate_limits()


async def test_relay_state_rows_joined_through_5xx_a_429_and_a_gateway_drop_show_each_change_once(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """A 5xx storm holds the channel while the crash loop goes on: the state changes
    written behind its head row join; a 429 meets the row's retry. Each change is shown
    once, in order."""
    gate_path = tmp_path / "gate"
    crashy = program(
        "crashy",
        "relay_crash_until.py",
        gate_path,
        tmp_path / "runs",
        relay="all",
        start_seconds=0.1,
        start_retries=1000,
        backoff_seconds=0.1,
        backoff_max_seconds=0.1,
    )
    changes = ProgramChanges("crashy")
    fake_discord.set_rate_limit(*CREATE, limit=5, per_seconds=1.0)  # the loop's turns come fast
    with Gate(gate_path) as gate:
        async with relayed_node(
            tmp_path,
            fake_discord,
            crashy,
            sinks=[changes],
            interval=0.05,
            min_recover_seconds=1.0,
            stuck_seconds=0.5,  # rows are written behind a held row after 0.5 s, not 5
        ) as node:
            await fake_discord.wait_until(
                lambda: _incident_creates(fake_discord, "crashy:0"), timeout_seconds=20
            )
            fake_discord.fail_route(*CREATE, status=503, times=None)
            async with fake_discord.gateway_outage():
                await wait_until(lambda: _joined_state_rows(node.ledger) > 0, seconds=30)
                fake_discord.clear_faults()
                # The retry of the held row meets it; rows keep joining behind meanwhile.
                limited = fake_discord.fail_route(*CREATE, status=429, times=1, retry_after=1.0)
                await fake_discord.wait_until(lambda: limited.hits == 1, timeout_seconds=20)
            gate.open()
            await wait_until(lambda: changes.running() == 1, seconds=20)
            await fake_discord.wait_until(
                lambda: len(notes_shown(fake_discord, "crashy:0")) >= len(changes.seen),
                timeout_seconds=30,
            )
            assert notes_shown(fake_discord, "crashy:0") == changes.notes("crashy:0")
    assert limited.hits == 1
    assert len(_incident_creates(fake_discord, "crashy:0")) == 1
    fake_discord.assert_within_rate_limits()


async def test_relay_burst_of_incidents_through_a_429_and_a_gateway_drop_takes_its_turns(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """Incidents opening together take the channel's turns one by one; a 429 on one
    of their messages and a dropped gateway neither double nor lose one, nor a state
    change between them."""
    burst = 4
    gate_path = tmp_path / "gate"
    crashers = program(
        "burst",
        "relay_burst.py",
        gate_path,
        tmp_path / "markers",
        numprocs=burst,
        relay="all",
        start_seconds=0.2,
        backoff_seconds=0.1,
    )
    changes = ProgramChanges("burst")
    processes = [f"burst:{n}" for n in range(burst)]

    def recovered(process: str) -> bool:
        return any(
            f"✅ `{process}` recovered after" in _now_says(fake_discord, incident)
            for incident in _incident_creates(fake_discord, process)
        )

    def all_shown() -> bool:
        return all(len(notes_shown(fake_discord, p)) >= len(changes.notes(p)) for p in processes)

    with Gate(gate_path) as gate:
        async with relayed_node(
            tmp_path, fake_discord, crashers, sinks=[changes], min_recover_seconds=1.0
        ):
            await wait_until(lambda: changes.running() == burst, seconds=30)
            await fake_discord.wait_until(all_shown, timeout_seconds=30)
            creates = len(bot_creates(fake_discord))
            limited = fake_discord.fail_route(*CREATE, status=429, times=1, retry_after=1.0)
            async with fake_discord.gateway_outage():
                gate.open()  # all crash at once, while the bot is away from the gateway
                await fake_discord.wait_until(lambda: limited.hits == 1, timeout_seconds=20)
            await fake_discord.wait_until(
                lambda: all(map(recovered, processes)) and changes.running() == burst,
                timeout_seconds=40,
            )
            await fake_discord.wait_until(all_shown, timeout_seconds=20)
            for process in processes:
                assert notes_shown(fake_discord, process) == changes.notes(process), process
    assert len(bot_creates(fake_discord)) > creates
    for process in processes:
        (incident,) = _incident_creates(fake_discord, process)
        crashes = [e for e in changes.seen if e.process == process and is_crash(e)]
        now = _now_says(fake_discord, incident)
        assert f"✅ `{process}` recovered after {plural(len(crashes), 'crash')}" in now
        if len(crashes) == 1:
            assert f"Traceback: {process} crashed with the others" in now
        edited = {
            a.message_id
            for a in _edits(fake_discord)
            if f"`{process}` crashed" in (a.content or "") or f"✅ `{process}`" in (a.content or "")
        }
        assert edited <= {incident.message_id}
    assert limited.hits == 1
    fake_discord.assert_within_rate_limits()
