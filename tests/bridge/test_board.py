"""The status board through the fake Discord: one message, edited in place, only on change."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest

from supervisor.bridge.board_text import MARKER
from supervisor.commands.access import Actor
from supervisor.state.board import BoardStore
from tests._control import program
from tests._wait import wait_until
from tests.bridge._bridge import bridged_node
from tests.discord_fake.pytest_plugin import fake_discord

if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from tests.bridge._bridge import Bridged
    from tests.discord_fake import FakeDiscord

__all__ = ["fake_discord"]

pytestmark = pytest.mark.timeout(60)

TICK = program("tick", "ctl_ticker.py", "0.2", numprocs=2)
MESSAGES = ("POST", "/channels/{channel_id}/messages")
EDIT = ("PATCH", "/channels/{channel_id}/messages/{message_id}")
INTERVAL = 0.2


def _kinds(fake: FakeDiscord, channel: str = "general") -> list[str]:
    return [a.kind for a in fake.bot_actions(channel) if a.kind in ("create", "edit", "delete")]


def _board(fake: FakeDiscord, channel: str = "general") -> dict[str, Any]:
    (board,) = fake.bot_messages(channel)
    return board


def _text(fake: FakeDiscord) -> str:
    return str(_board(fake)["embeds"][0]["description"])


async def _settled(bridged: Bridged, fake: FakeDiscord) -> None:
    """Every process RUNNING, and one board showing it (an extra one found is deleted),
    known to the bot."""
    node = bridged.node
    await wait_until(
        lambda: all(c.status().state.value == "RUNNING" for c in node.fleet.processes()),
        seconds=20,
    )
    await fake.wait_until(
        lambda: (
            len(fake.bot_messages("general")) == 1
            and "STARTING" not in _text(fake)
            and _text(fake).count("RUNNING") >= 2
        ),
        timeout_seconds=20,
    )
    # The fake stores a post before the bot reads its answer: wait for the bot too.
    board = bridged.bridge.board
    assert board is not None
    await wait_until(lambda: board.message_id == int(_board(fake)["id"]))


async def test_board_is_posted_once_then_edited_in_place(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    async with bridged_node(tmp_path, fake_discord, TICK, interval=INTERVAL) as bridged:
        await _settled(bridged, fake_discord)
        board = _board(fake_discord)
        assert board["embeds"][0]["footer"]["text"] == f"{MARKER} · node ctltest"
        await bridged.node.service.stop(Actor.local(), "tick:1")
        await fake_discord.wait_until(lambda: "STOPPED `tick:1`" in _text(fake_discord))
    assert _kinds(fake_discord).count("create") == 1
    assert "edit" in _kinds(fake_discord)
    assert _board(fake_discord)["id"] == board["id"]
    fake_discord.assert_within_rate_limits()


async def test_board_says_when_dsup_stopped(tmp_path: Path, fake_discord: FakeDiscord) -> None:
    async with bridged_node(tmp_path, fake_discord, TICK, interval=INTERVAL) as bridged:
        await _settled(bridged, fake_discord)
        assert "dsup stopped" not in _text(fake_discord)
    assert "dsup stopped <t:" in _text(fake_discord)
    assert _kinds(fake_discord).count("create") == 1


async def test_board_says_when_dsup_stopped_during_its_first_post(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """The farewell ran beside the board's post still waiting for its answer: it found no
    message to edit, and the client's close then aborted the post (no board at all).
    Here the fake holds the first post for 1 s, and dsup stops meanwhile."""
    fault = fake_discord.delay_route("POST", "/channels/{channel_id}/messages", 1.0, times=1)
    async with bridged_node(tmp_path, fake_discord, TICK, interval=INTERVAL):
        await wait_until(lambda: fault.hits == 1, seconds=20)  # the post waits in the fake
    assert "dsup stopped <t:" in _text(fake_discord)
    assert _kinds(fake_discord) == ["create", "edit"]


async def test_idle_fleet_makes_no_edit(tmp_path: Path, fake_discord: FakeDiscord) -> None:
    async with bridged_node(tmp_path, fake_discord, TICK, interval=INTERVAL) as bridged:
        await _settled(bridged, fake_discord)
        before = len(fake_discord.bot_actions())
        board = bridged.bridge.board
        assert board is not None
        looked = board.looks
        # The board looks at the fleet at least once per interval: 15 looks, no request.
        await wait_until(lambda: board.looks >= looked + 15, seconds=20)
        assert fake_discord.bot_actions()[before:] == []
        assert board.edits == _kinds(fake_discord).count("edit")


async def test_deleted_board_is_posted_again(tmp_path: Path, fake_discord: FakeDiscord) -> None:
    async with bridged_node(tmp_path, fake_discord, TICK, interval=INTERVAL) as bridged:
        await _settled(bridged, fake_discord)
        old = _board(fake_discord)["id"]
        fake_discord.delete_message("general", int(old))
        await fake_discord.wait_until(lambda: fake_discord.bot_messages("general"))
        new = int(_board(fake_discord)["id"])
        assert new != int(old)
        board = bridged.bridge.board
        assert board is not None
        await wait_until(lambda: board.message_id == new)


async def test_board_deleted_as_soon_as_posted_is_posted_again(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """Deleted before the bot had taken the new board's id in, it was never posted again."""
    idle = program("idle", "ctl_ticker.py", "0.2", autostart=False)  # its board never changes
    async with bridged_node(tmp_path, fake_discord, idle, interval=INTERVAL):
        first = await fake_discord.wait_for_action("general", kind="create", timeout_seconds=20)
        assert first.message is not None
        fake_discord.delete_message("general", int(first.message["id"]))
        again = await fake_discord.wait_for_action(
            "general", kind="create", since=fake_discord.bot_actions().index(first) + 1
        )
    assert again.message is not None
    assert again.message["id"] != first.message["id"]


async def test_edit_of_a_deleted_board_posts_a_new_one(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """A deletion the bot did not see (it was away): the edit's 10008 says so."""
    async with bridged_node(tmp_path, fake_discord, TICK, interval=INTERVAL) as bridged:
        await _settled(bridged, fake_discord)
        old = int(_board(fake_discord)["id"])
        async with fake_discord.gateway_outage():
            fake_discord.store.channel("general").messages.pop(old)
        await bridged.node.service.stop(Actor.local(), "tick:0")
        await fake_discord.wait_until(
            lambda: (
                fake_discord.bot_messages("general") and "STOPPED `tick:0`" in _text(fake_discord)
            )
        )
        assert int(_board(fake_discord)["id"]) != old


@pytest.mark.parametrize("ledger_lost", [False, True], ids=["ledger", "history"])
async def test_restarted_dsup_edits_the_same_board(
    tmp_path: Path, fake_discord: FakeDiscord, ledger_lost: bool
) -> None:
    async with bridged_node(tmp_path, fake_discord, TICK, interval=INTERVAL) as bridged:
        await _settled(bridged, fake_discord)
        first = _board(fake_discord)["id"]
    if ledger_lost:
        for path in (tmp_path / "state").glob("ledger.sqlite3*"):
            path.unlink()
    fake_discord.post_message(fake_discord.add_user("carol"), "general", "chatter after it")
    async with bridged_node(tmp_path, fake_discord, TICK, interval=INTERVAL) as bridged:
        await _settled(bridged, fake_discord)
        await bridged.node.service.stop(Actor.local(), "tick:1")
        await fake_discord.wait_until(lambda: "STOPPED `tick:1`" in _text(fake_discord))
    assert _board(fake_discord)["id"] == first
    assert _kinds(fake_discord).count("create") == 1


@pytest.mark.parametrize("ledger_lost", [False, True], ids=["ledger", "history"])
async def test_board_deleted_while_looked_for_is_posted_again(
    tmp_path: Path, fake_discord: FakeDiscord, ledger_lost: bool
) -> None:
    """A deletion of the board that came while a starting dsup looked for it (by its id,
    or in the channel's history) was not tracked: the board it took up was gone. Its
    next edit met a 404 and posted again; with nothing new to show (a restart within
    the same second), it stayed gone."""
    idle = program("idle", "ctl_ticker.py", "0.2", autostart=False)
    async with bridged_node(tmp_path, fake_discord, idle, interval=INTERVAL) as bridged:
        await fake_discord.wait_for_action("general", kind="create", timeout_seconds=20)
        old = int(_board(fake_discord)["id"])
        store, channel = BoardStore(bridged.node.ledger), fake_discord.channel("general").id
        await wait_until(lambda: store.message_id(channel) == old, seconds=20)
    if ledger_lost:
        for path in (tmp_path / "state").glob("ledger.sqlite3*"):
            path.unlink()
    look = ("GET", "/channels/{channel_id}/messages" + ("" if ledger_lost else "/{message_id}"))
    held = fake_discord.hold_answers(*look)
    edits = fake_discord.rate_limit_stats("general", EDIT).requests
    async with bridged_node(tmp_path, fake_discord, idle, interval=INTERVAL) as bridged:
        client = bridged.bridge.client
        assert client is not None
        deleted: list[int] = []
        client.deletion_listeners.append(deleted.append)  # told after the board
        await wait_until(lambda: held.hits == 1, seconds=20)
        fake_discord.delete_message("general", old)
        await wait_until(lambda: deleted == [old], seconds=20)
        held.release()
        await fake_discord.wait_until(
            lambda: bool(fake_discord.bot_messages("general")), timeout_seconds=20
        )
        board = bridged.bridge.board
        assert board is not None
        await wait_until(lambda: board.message_id == int(_board(fake_discord)["id"]))
        # Posted again at once: the deleted board was not taken up, nor edited (a 404).
        assert fake_discord.rate_limit_stats("general", EDIT).requests == edits
    assert board.message_id != old


async def test_two_boards_found_in_history_leave_one(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """Never two boards: an extra one found after a lost ledger is deleted."""
    async with bridged_node(tmp_path, fake_discord, TICK, interval=INTERVAL) as bridged:
        await _settled(bridged, fake_discord)
        original = _board(fake_discord)
    channel = fake_discord.store.channel("general")
    copy = dict(original, id=str(fake_discord.store.snowflakes.next()))
    fake_discord.store.store_message(channel, copy)
    for path in (tmp_path / "state").glob("ledger.sqlite3*"):
        path.unlink()
    async with bridged_node(tmp_path, fake_discord, TICK, interval=INTERVAL) as bridged:
        await _settled(bridged, fake_discord)
    assert _board(fake_discord)["id"] == copy["id"]


async def test_storm_of_state_changes_edits_at_most_once_per_interval(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """100 processes restarted twice: about 600 state changes.

    Each restart takes at least its ``start_seconds`` (1 s, two intervals) so the board
    has changes to show; a storm over within one interval would rightly edit nothing,
    since a board whose text is unchanged is not edited."""
    many = """[programs.many]
command = ["sleep", "1000"]
numprocs = 100
start_seconds = 1
stop_timeout_seconds = 2
"""
    async with bridged_node(tmp_path, fake_discord, many, interval=0.5) as bridged:
        node = bridged.node
        await wait_until(
            lambda: all(c.status().state.value == "RUNNING" for c in node.fleet.processes()),
            seconds=30,
        )
        await fake_discord.wait_until(
            lambda: fake_discord.bot_messages("general") and "x 100 RUNNING" in _text(fake_discord),
            timeout_seconds=10,
        )
        before = len(_kinds(fake_discord))
        began = anyio.current_time()
        for _ in range(2):
            await node.service.restart(Actor.local(), "many")
        await fake_discord.wait_until(
            lambda: (
                "x 100 RUNNING" in _text(fake_discord) and "STARTING" not in _text(fake_discord)
            ),
            timeout_seconds=10,
        )
        elapsed = anyio.current_time() - began
        edits = _kinds(fake_discord)[before:]
    assert set(edits) <= {"edit"}  # no second board, nothing deleted
    assert len(edits) <= elapsed / 0.5 + 1
    assert len(_text(fake_discord)) <= 4096


async def test_30046_on_edits_backs_off_without_a_loop(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    async with bridged_node(tmp_path, fake_discord, TICK, interval=INTERVAL) as bridged:
        await _settled(bridged, fake_discord)
        fault = fake_discord.fail_route(*EDIT, status=429, code=30046, times=None, retry_after=0.01)
        await bridged.node.service.stop(Actor.local(), "tick:1")
        await wait_until(lambda: fault.hits >= 5)
        board = bridged.bridge.board
        assert board is not None
        # Two more refused attempts (after waits of 0.3 s, then 0.6 s) of discord.py's
        # 5 tries each: a looping board would have asked far more often by then.
        await wait_until(lambda: board.refusals >= 3, seconds=20)
        assert fault.hits <= 15
        fake_discord.clear_faults()
        await fake_discord.wait_until(
            lambda: "STOPPED `tick:1`" in _text(fake_discord), timeout_seconds=10
        )
        assert bridged.bridge.board is not None
        assert bridged.bridge.board.refusals >= 1
    assert _kinds(fake_discord).count("create") == 1


async def test_429_on_edits_waits_and_retries(tmp_path: Path, fake_discord: FakeDiscord) -> None:
    async with bridged_node(tmp_path, fake_discord, TICK, interval=INTERVAL) as bridged:
        await _settled(bridged, fake_discord)
        fault = fake_discord.fail_route(*EDIT, status=429, times=2, retry_after=0.2)
        await bridged.node.service.stop(Actor.local(), "tick:1")
        await fake_discord.wait_until(lambda: "STOPPED `tick:1`" in _text(fake_discord))
    assert fault.hits == 2
    assert _kinds(fake_discord).count("create") == 1


async def test_status_channel_the_bot_cannot_see(tmp_path: Path, fake_discord: FakeDiscord) -> None:
    fake_discord.add_channel("secret", bot_denied=True)
    async with bridged_node(
        tmp_path, fake_discord, TICK, interval=INTERVAL, status_channel="secret"
    ) as bridged:
        health = bridged.bridge.health
        await wait_until(lambda: bool(health.snapshot().problems))
        (problem,) = health.snapshot().problems
        assert "cannot use the status channel" in problem
        assert "View Channel" in problem
        board = bridged.bridge.board
        assert board is not None
        # The first try, then tries after waits of 0.5 s and 1 s: a looping board
        # would have asked again and again by then.
        await wait_until(lambda: board.refusals >= 3, seconds=20)
        requests = sum(
            s.requests
            for (_, _, major), s in fake_discord.limiter.stats.items()
            if major == str(fake_discord.channel("secret").id)
        )
    assert requests <= 3  # the first try, then waits of 0.5 s and 1 s
    assert fake_discord.bot_messages("secret") == []


async def test_board_whose_post_lost_its_answer_is_posted_once(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """The first post's answer was lost (the board was posted, the bot heard nothing):
    the board posted another, and the first said its first words for good."""
    lost = fake_discord.lose_answers(*MESSAGES, times=1)
    async with bridged_node(tmp_path, fake_discord, TICK, interval=INTERVAL) as bridged:
        await _settled(bridged, fake_discord)
        await bridged.node.service.stop(Actor.local(), "tick:1")
        await fake_discord.wait_until(lambda: "STOPPED `tick:1`" in _text(fake_discord))
    assert lost.hits == 1
    assert _kinds(fake_discord).count("create") == 1
    assert "dsup stopped <t:" in _text(fake_discord)
