"""200 tasks posted at once in the fake Discord's task channel: time to the last reply, 429s.

Runs a node with its bridge, relay and outbox in this process against the project's
fake Discord (Discord's headers, its limit of 5 messages per 5 s per channel), posts N
task messages (``@dsup echo: job i``) from an operator at once, and waits until each has
its one reply and it reads as the answer (a reply sent as ``queued`` with its Cancel
button is edited into the answer). A oneshot ``/bin/echo`` program (concurrency 8)
answers them. Prints the time to the last answer, the replies per message, the edits,
the 429s the fake counted; asserts nothing about speed.

    PYTHONPATH=. .venv/bin/python bench/tasks_discord.py [--tasks 200]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import anyio

from tests.bridge._members import members
from tests.bridge._relayed import relayed_node
from tests.discord_fake import FakeDiscord, open_fake_discord
from tests.discord_fake.connect import use_discord_api

ECHO = '[programs.echo]\ncommand = ["/bin/echo", "{task}"]\ntasks = "oneshot"\nconcurrency = 8\n'
DEADLINE = 1800.0


def _replies(fake: FakeDiscord) -> dict[str, int]:
    """Replies of the bot, by the id of the message they answer."""
    found: dict[str, int] = {}
    for action in fake.bot_actions("tasks"):
        ref = (action.message or {}).get("message_reference") or {}
        if action.kind == "create" and ref.get("message_id"):
            key = str(ref["message_id"])
            found[key] = found.get(key, 0) + 1
    return found


def _answered(fake: FakeDiscord) -> set[str]:
    """The ids of the messages whose reply reads as the answer now."""
    return {
        str(m["message_reference"]["message_id"])
        for m in fake.bot_messages("tasks")
        if m.get("message_reference") and not str(m["content"]).startswith("📥")
    }


async def _run(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with open_fake_discord() as fake, use_discord_api(fake.api_base, fake.token):
            fake.add_channel("tasks")
            team = members(fake)
            async with relayed_node(
                Path(tmp),
                fake,
                ECHO,
                channels={"log_channel": "ops", "task_channel": "tasks"},
                access={"operator": team.access["operator"]},
            ):
                start = time.perf_counter()
                posted = [
                    fake.post_message(team.operator, "tasks", f"echo: job {i}", mention_bot=True)
                    for i in range(n)
                ]
                ids = [m["id"] for m in posted]
                await fake.wait_until(
                    lambda: _answered(fake).issuperset(ids), timeout_seconds=DEADLINE
                )
                elapsed = time.perf_counter() - start
            replies = _replies(fake)
            rejected = sum(s.rejected for s in fake.limiter.stats.values())
            requests = sum(s.requests for s in fake.limiter.stats.values())
            reactions = sum(1 for a in fake.bot_actions("tasks") if a.kind == "react")
            edits = sum(1 for a in fake.bot_actions("tasks") if a.kind == "edit")
    counts = sorted({replies[i] for i in ids})
    print(f"{n} task messages posted at once in the fake Discord (5 messages / 5 s a channel)")
    print(f"  last answer after {elapsed:.1f} s ({n / elapsed:.2f} answers/s)")
    print(f"  replies per task message: {counts} (1 is exactly once); {edits} edited")
    print(f"  reactions: {reactions}; requests to the fake: {requests}; 429s: {rejected}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=200)
    args = parser.parse_args()
    anyio.run(_run, args.tasks, backend="asyncio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
