"""Workers' questions across Discord outages and a restart of the real ``dsup run``.

A question is an outbox row: asked while Discord answers 503, it reaches the channel once
Discord is back, exactly once, also when dsup is stopped in the middle of the outage.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
from typing import TYPE_CHECKING, Any

import anyio

from tests._wait import wait_until
from tests.bridge._bridge import dsup_process, node_config
from tests.bridge._relayed import program
from tests.discord_fake.pytest_plugin import fake_discord

if TYPE_CHECKING:
    from pathlib import Path

    from tests.discord_fake import FakeDiscord

__all__ = ["fake_discord"]

MESSAGES = ("POST", "/channels/{channel_id}/messages")
QUESTION = "Rotate the keys now?"


def _config(tmp_path: Path, fake: FakeDiscord, programs: str) -> Path:
    return node_config(tmp_path, fake, programs, name="asking", channels={"results_channel": "ops"})


def _asker() -> str:
    return program(
        "w", "sdk_worker.py", "ask", QUESTION, "yes,no", "-", "-", relay="results", restart="never"
    )


def _rows(config: Path, kind: str = "question") -> list[tuple[str, int]]:
    """(status, attempts) of the outbox's creates of ``kind`` (read beside the running dsup)."""
    uri = f"file:{config.parent / 'state' / 'ledger.sqlite3'}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            rows = db.execute(
                "SELECT status, attempts FROM outbox WHERE kind = ? AND target IS NULL", (kind,)
            )
            return [(str(status), int(attempts)) for status, attempts in rows]
    except sqlite3.OperationalError:
        return []


def _progress(fake: FakeDiscord) -> list[dict[str, Any]]:
    return [
        m for m in fake.bot_messages("ops") if str(m.get("content", "")).startswith("**p:0** `")
    ]


def _asking(fake: FakeDiscord) -> list[dict[str, Any]]:
    return [m for m in fake.bot_messages("ops") if QUESTION in str(m.get("content", ""))]


def _buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for row in message.get("components") or [] for c in row.get("components", [])]


async def test_question_asked_during_an_outage_reaches_the_channel_once_after_it(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """Asked while Discord answers 503 (four refusals), shown once it answers, once."""
    config = _config(
        tmp_path,
        fake_discord,
        _asker(),
    )
    outage = fake_discord.fail_route(*MESSAGES, status=503, times=None)
    async with dsup_process(config) as dsup:
        await wait_until(lambda: outage.hits >= 4, seconds=30)
        assert _asking(fake_discord) == []
        fake_discord.clear_faults()
        (message,) = await fake_discord.wait_until(
            lambda: _asking(fake_discord), timeout_seconds=20
        )
        assert [b["label"] for b in _buttons(message)] == ["yes", "no"]
        dsup.send_signal(signal.SIGTERM)
        with anyio.fail_after(20):
            assert await dsup.wait() == 0
    # Closed as dsup stopped: the same message says so, and is the only one.
    (message,) = _asking(fake_discord)
    assert "the asker is gone" in message["content"]
    assert all(b.get("disabled") for b in _buttons(message))


async def test_question_asked_before_a_restart_mid_outage_is_posted_once_after_it(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """Questions and progress lived in memory only: shown while Discord was away, they
    died with dsup."""
    reporter = program("p", "sdk_worker.py", "report", relay="results", restart="never")
    config = _config(
        tmp_path,
        fake_discord,
        _asker() + reporter,
    )
    fake_discord.fail_route(*MESSAGES, status=503, times=None)
    async with dsup_process(config) as first:

        def tried() -> bool:
            rows = _rows(config) + _rows(config, "progress") + _rows(config, "result")
            return len(rows) == 3 and any(attempts for _, attempts in rows)

        await wait_until(tried, seconds=20)
        first.send_signal(signal.SIGTERM)
        with anyio.fail_after(20):
            assert await first.wait() == 0
    assert [status for status, _ in _rows(config)] == ["pending"]
    assert _asking(fake_discord) == []
    fake_discord.clear_faults()
    quiet = program("w", "child_ready.py", relay="results")  # asks nothing this time
    config = _config(tmp_path, fake_discord, quiet)
    async with dsup_process(config) as second:

        def settled() -> list[dict[str, Any]] | None:
            found = _asking(fake_discord)
            return found if found and "the asker is gone" in found[0]["content"] else None

        (message,) = await fake_discord.wait_until(settled, timeout_seconds=20)
        assert all(b.get("disabled") for b in _buttons(message))
        second.send_signal(signal.SIGTERM)
        with anyio.fail_after(20):
            assert await second.wait() == 0
    assert len(_asking(fake_discord)) == 1
    assert [status for status, _ in _rows(config)] == ["sent"]
    (shown,) = _progress(fake_discord)
    assert "step 10" in shown["content"]
    fake_discord.assert_within_rate_limits("ops")
