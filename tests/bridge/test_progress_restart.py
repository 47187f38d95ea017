"""Workers' progress across a SIGKILL of the real ``dsup run``: the message is closed once.

dsup runs as a subprocess (so it can be killed) against the fake Discord served by this
test's event loop, through unmodified discord.py.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Any

from tests.bridge._bridge import dsup_process, node_config, stop_process
from tests.bridge._relayed import program
from tests.discord_fake.pytest_plugin import fake_discord

if TYPE_CHECKING:
    from pathlib import Path

    from tests.discord_fake import FakeDiscord

__all__ = ["fake_discord"]


def _config(tmp_path: Path, fake: FakeDiscord, programs: str) -> Path:
    return node_config(
        tmp_path, fake, programs, name="progress", channels={"results_channel": "ops"}
    )


def _progress(fake: FakeDiscord, process: str) -> list[dict[str, Any]]:
    return [
        m
        for m in fake.bot_messages("ops")
        if str(m.get("content", "")).startswith(f"**{process}** `")
    ]


def _visible(content: str) -> str:
    """``content`` without the outbox's invisible marker."""
    return content.translate(dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\u2063")))


async def test_progress_of_a_run_killed_with_dsup_is_closed_once_at_the_next_start(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    """After a SIGKILL of dsup, the run's message said "40% page 40" for ever."""
    (tmp_path / "raw").write_bytes(b'{"type":"progress","fraction":0.4,"text":"page 40"}\n')
    reporter = program(
        "p", "sdk_worker.py", "raw", str(tmp_path / "raw"), relay="results", restart="never"
    )
    async with dsup_process(_config(tmp_path, fake_discord, reporter)) as first:
        (shown,) = await fake_discord.wait_until(
            lambda: _progress(fake_discord, "p:0"), timeout_seconds=20
        )
        await stop_process(first, signal.SIGKILL)
    assert "Ended" not in shown["content"]
    quiet = program("q", "child_ready.py", relay="results")  # reports no progress
    async with dsup_process(_config(tmp_path, fake_discord, quiet)) as second:

        def closed() -> list[dict[str, Any]] | None:
            found = _progress(fake_discord, "p:0")
            return found if found and "Ended" in found[0]["content"] else None

        (message,) = await fake_discord.wait_until(closed, timeout_seconds=20)
        assert await stop_process(second, signal.SIGTERM) == 0
    assert message["id"] == shown["id"]
    assert _visible(message["content"]).split("\n") == [
        _visible(shown["content"]),
        "Ended: dsup was stopped while it ran",
    ]
    # A third start says nothing more of it: the next message in the channel, a
    # progress message of this start's own, goes out after anything queued before.
    finisher = program("r", "sdk_worker.py", "report", relay="results", restart="never")
    async with dsup_process(_config(tmp_path, fake_discord, finisher)) as third:

        def finished() -> list[dict[str, Any]] | None:
            found = _progress(fake_discord, "r:0")
            return found if found and "100%" in found[0]["content"] else None

        await fake_discord.wait_until(finished, timeout_seconds=20)
        assert await stop_process(third, signal.SIGTERM) == 0
    edits = [
        a
        for a in fake_discord.bot_actions("ops")
        if a.kind == "edit" and a.message_id == int(shown["id"])
    ]
    assert len(edits) == 1
    (closed_once,) = _progress(fake_discord, "p:0")
    assert closed_once["content"] == message["content"]
