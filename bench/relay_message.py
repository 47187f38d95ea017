"""What one relayed message costs dsup's process, from the relay's write to Discord's answer.

Serves the project's fake Discord in this process (its message limit raised: the bench
measures CPU, not pacing) and runs, in a subprocess per source tree and round, dsup's
relay, outbox, sender and ``BridgeClient`` (no commands, no board): it relays
``--messages`` worker results one after the other (written and claimed in the relay's
trip to the ledger, posted, confirmed, marked sent, the gateway's echo received) and
prints its process's CPU per message, and its main thread's. Twice per round: as a
message within a burst (the relay about to write again: marked sent in its next trip)
and as a burst's last (marked in a trip of its own in trees whose sender asks
``writes_soon``; later trees mark it in the next claim, the safety poll's in a real
burst, here the next message's: both modes then measure the same). Trees alternate
within each round;
prints the median, min and max per tree and mode over ``--rounds``, and each round's
ratio to the first tree's (on a shared machine the rounds' spread is large, the ratio
within a round much less). ``bench/relay.py`` measures the same in whole bursts.

    PYTHONPATH=. .venv/bin/python bench/relay_message.py [--messages 400] [--rounds 5]
        [--tree PATH ...]

``--tree`` (repeatable; default this checkout) is a dsup source tree, e.g. a worktree of
an older commit, to compare: ``--tree /tmp/old --tree .``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import anyio

from tests.discord_fake import FakeDiscord, open_fake_discord
from tests.discord_fake.ratelimit import MESSAGES_ROUTE

CLIENT = Path(__file__).with_name("_message_client.py")
MODES = {"within a burst": "1", "a burst's last": "0"}


async def _once(fake: FakeDiscord, tree: Path, messages: int, ride: str) -> dict[str, float]:
    """One client run of ``tree``: its figures."""
    argv = [
        sys.executable,
        str(CLIENT),
        fake.api_base,
        fake.gateway_url,
        fake.token,
        str(fake.guild_id),
        str(fake.channel("ops").id),
        str(messages),
        ride,
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), str(Path.cwd())])}
    with anyio.fail_after(300):
        done = await anyio.run_process(argv, env=env)
    figures: dict[str, float] = json.loads(done.stdout.decode().splitlines()[-1])
    fake.store.channel("ops").messages.clear()  # the fake keeps every message otherwise
    return figures


async def main(trees: list[Path], messages: int, rounds: int) -> None:
    """Run the rounds and print the figures."""
    results: dict[tuple[str, Path], list[dict[str, float]]] = {}
    async with open_fake_discord() as fake:
        fake.set_rate_limit(*MESSAGES_ROUTE, limit=1_000_000, per_seconds=1.0)
        for _ in range(rounds):
            for mode, ride in MODES.items():
                for tree in trees:
                    figures = await _once(fake, tree, messages, ride)
                    results.setdefault((mode, tree), []).append(figures)
    print(f"{messages} relayed messages (about 2 KB each) per run, {rounds} rounds")
    for mode in MODES:
        first = results[(mode, trees[0])]
        for tree in trees:
            runs = results[(mode, tree)]
            cpu = [r["cpu_us"] for r in runs]
            main_thread = statistics.median(r["main_us"] for r in runs)
            ratios = ", ".join(
                f"{r['cpu_us'] / f['cpu_us']:.2f}" for r, f in zip(runs, first, strict=True)
            )
            print(
                f"{mode}, {tree}: CPU per message median {statistics.median(cpu):.0f} us "
                f"(min {min(cpu):.0f}, max {max(cpu):.0f}), main thread "
                f"{main_thread:.0f} us; per round / the first tree's: {ratios}"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tree", type=Path, action="append", dest="trees")
    args = parser.parse_args()
    trees = [t.resolve() for t in args.trees or [Path.cwd()]]
    anyio.run(main, trees, args.messages, max(1, args.rounds), backend="asyncio")
