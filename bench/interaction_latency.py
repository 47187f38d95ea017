"""Interaction latency: a real ``dsup run`` bridged to the Discord fake, driven by a member.

For a fleet of ``--count`` ``sleep`` processes in one program, prints the median and
worst time, over ``--rounds`` rounds, from the interaction's dispatch to:
  - the first answer (Discord allows 3 s): a defer for allowed commands, the answer
    itself for a refusal;
  - the final answer (the follow-up), for ``/status`` (CPU sampled), ``/tail``,
    ``/restart`` of one process and ``/restart`` of the whole program;
  - autocomplete choices for ``name``;
  - the answer to a command given by mention (``@dsup status``), a reply queued in the
    outbox, with ``--gap`` seconds between two mentions, and back to back (the
    sender spaces a channel's creates over its rate-limit window).
The fake runs in this process on 127.0.0.1; dsup is a subprocess.

Run: PYTHONPATH=. .venv/bin/python bench/interaction_latency.py [--count 100] [--rounds 5]
    [--gap 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from _dsup_driver import SLEEP, program_table, quiet_dsup, write_config

from tests.bridge._bridge import discord_table, token_file
from tests.discord_fake import FakeDiscord, open_fake_discord

if TYPE_CHECKING:
    from tests.discord_fake import FakeUser


def _config(directory: Path, fake: FakeDiscord, count: int, operators: int) -> Path:
    sleepers = program_table("sleeper", SLEEP, numprocs=count, start_seconds=0.2, stop_timeout=3)
    token = token_file(directory, fake.token)
    table = discord_table(fake, token, status_channel=None, operator=[operators])
    return write_config(directory, sleepers, table)


async def _timed(
    fake: FakeDiscord, user: FakeUser, command: str, *, focused: str | None = None, **options: Any
) -> tuple[float, float]:
    """Seconds to the first answer and to the final one."""
    began = time.monotonic()
    if focused is None:
        record = fake.invoke(user, "general", command, **options)
    else:
        record = fake.autocomplete(user, "general", command, focused, **options)
    first = await record.wait_reply(timeout_seconds=60)
    at_first = time.monotonic() - began
    if first.type == 5:
        await record.wait_reply(kind="followup", timeout_seconds=60)
    return at_first, time.monotonic() - began


async def _mentioned(fake: FakeDiscord, user: FakeUser, text: str) -> float:
    """Seconds from a mention to the reply answering it."""
    began = time.monotonic()
    since = len(fake.bot_actions())
    asked = fake.post_message(user, "general", text, mention_bot=True)
    await fake.wait_for_action(
        "general",
        kind="create",
        since=since,
        predicate=lambda a: (
            a.message is not None
            and (a.message.get("message_reference") or {}).get("message_id") == asked["id"]
        ),
        timeout_seconds=60,
    )
    return time.monotonic() - began


async def _connected(fake: FakeDiscord, user: FakeUser) -> None:
    """Wait until the bot answers (an interaction sent before it is on the gateway is lost)."""
    with anyio.fail_after(60):
        while True:
            record = fake.autocomplete(user, "general", "status", "name")
            try:
                await record.wait_reply(timeout_seconds=1)
            except TimeoutError:
                continue
            return


def _line(label: str, samples: list[tuple[float, float]]) -> str:
    firsts, finals = [s[0] for s in samples], [s[1] for s in samples]
    return (
        f"{label}: first answer median {statistics.median(firsts) * 1e3:.0f} ms "
        f"(max {max(firsts) * 1e3:.0f}), final median {statistics.median(finals) * 1e3:.0f} ms "
        f"(max {max(finals) * 1e3:.0f})"
    )


async def live(count: int, rounds: int, gap: float) -> None:
    """The measures against a running dsup."""
    with tempfile.TemporaryDirectory() as tmp:
        async with open_fake_discord() as fake:
            ops = fake.add_user("otto", roles=("ops",))
            guest = fake.add_user("gus")
            config = _config(Path(tmp), fake, count, fake.store.role_named("ops").id)
            async with quiet_dsup(config):
                await fake.wait_until(
                    lambda: fake.store.commands.get(fake.guild_id) and fake.identify_count,
                    timeout_seconds=120,
                )
                await _connected(fake, ops)
                cases: list[tuple[str, FakeUser, str, dict[str, Any]]] = [
                    ("/status (refused)", guest, "status", {}),
                    ("autocomplete name='sleeper:1'", ops, "restart", {"name": "sleeper:1"}),
                    (f"/status of {count}", ops, "status", {}),
                    ("/tail sleeper:0", ops, "tail", {"name": "sleeper:0"}),
                    ("/restart sleeper:0", ops, "restart", {"name": "sleeper:0"}),
                    (f"/restart sleeper ({count})", ops, "restart", {"name": "sleeper"}),
                ]
                for label, user, command, options in cases:
                    focused = "name" if label.startswith("autocomplete") else None
                    samples = [
                        await _timed(fake, user, command, focused=focused, **options)
                        for _ in range(rounds)
                    ]
                    print(_line(label, samples))
                for text in ("status sleeper:0", "tail sleeper:0", "restart sleeper:0"):
                    spaced = []
                    for _ in range(rounds):
                        await anyio.sleep(gap)  # a member reading the answer before the next
                        spaced.append(await _mentioned(fake, ops, text))
                    await anyio.sleep(gap)
                    burst = [await _mentioned(fake, ops, text) for _ in range(rounds)]
                    print(
                        f"@dsup {text}: answer median {statistics.median(spaced) * 1e3:.0f} ms "
                        f"(max {max(spaced) * 1e3:.0f}) {gap:g} s apart, median "
                        f"{statistics.median(burst) * 1e3:.0f} ms (max {max(burst) * 1e3:.0f}) "
                        "back to back"
                    )


def main() -> None:
    """Parse the arguments and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100, help="processes (default 100)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per command (default 5)")
    parser.add_argument(
        "--gap", type=float, default=2.0, help="seconds between spaced mentions (default 2)"
    )
    args = parser.parse_args()
    anyio.run(live, args.count, args.rounds, args.gap, backend="asyncio")


if __name__ == "__main__":
    main()
