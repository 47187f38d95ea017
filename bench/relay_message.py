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
within each round; prints the median, min and max per tree and mode over ``--rounds``,
and each round's ratio to the first tree's (on a shared machine the rounds' spread is
large, the ratio within a round much less). ``bench/relay.py`` measures the same in whole bursts.

    PYTHONPATH=. .venv/bin/python bench/relay_message.py [--messages 400] [--rounds 5]
        [--tree PATH ...] [--callgrind DIR]

``--tree`` (repeatable; default this checkout) is a dsup source tree, e.g. a worktree of
an older commit, to compare: ``--tree /tmp/old --tree .``.

``--callgrind DIR`` counts instructions instead (valgrind's callgrind, about 50 times
slower: far steadier than CPU time on a shared machine): only the measured
messages' instructions, per message; their profiles are kept in DIR for
``callgrind_annotate``. Rounds of the same tree spread by 1 to 2 % (timers and wakes
vary with the machine's load): compare medians of three rounds or more.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
from pathlib import Path

import anyio

from tests.discord_fake import FakeDiscord, open_fake_discord
from tests.discord_fake.ratelimit import MESSAGES_ROUTE

CLIENT = Path(__file__).with_name("_message_client.py")
MODES = {"within a burst": "1", "a burst's last": "0"}


async def _once(
    fake: FakeDiscord, tree: Path, messages: int, ride: str, valgrind: list[str]
) -> dict[str, float]:
    """One client run of ``tree`` (under ``valgrind`` if given): its figures."""
    argv = [
        *valgrind,
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
    with anyio.fail_after(3600 if valgrind else 300):
        done = await anyio.run_process(argv, env=env)
    figures: dict[str, float] = json.loads(done.stdout.decode().splitlines()[-1])
    fake.store.channel("ops").messages.clear()  # the fake keeps every message otherwise
    return figures


async def _instructions(
    fake: FakeDiscord, trees: list[Path], messages: int, rounds: int, out: Path
) -> None:
    """Instructions per message of each tree and mode, printed; profiles kept in ``out``."""
    results: dict[tuple[str, Path], list[float]] = {}
    for round_ in range(rounds):
        for mode, ride in MODES.items():
            for n, tree in enumerate(trees):
                name = out / f"callgrind.{n}.{ride}.{round_}"
                # The client reads its thread's CPU time just before and after the
                # measured messages: dumped there, part 2 holds exactly those.
                valgrind = [
                    "valgrind",
                    "--tool=callgrind",
                    "--dump-before=time_thread_time",
                    f"--callgrind-out-file={name}",
                ]
                await _once(fake, tree, messages, ride, valgrind)
                part = await anyio.Path(f"{name}.2").read_text()
                found = re.search(r"^(?:summary|totals): (\d+)", part, re.MULTILINE)
                count = float(found.group(1)) if found else float("nan")
                results.setdefault((mode, tree), []).append(count / messages)
    print(f"callgrind: the client's instructions per message, {messages} per run, {rounds} rounds")
    print(f"(profiles of the measured messages: {out}/callgrind.TREE.RIDE.ROUND.2)")
    for mode in MODES:
        for tree in trees:
            runs = [r / 1e6 for r in results[(mode, tree)]]
            print(
                f"{mode}, {tree}: median {statistics.median(runs):.3f} M instructions per "
                f"message (min {min(runs):.3f}, max {max(runs):.3f})"
            )


async def main(trees: list[Path], messages: int, rounds: int, callgrind: Path | None) -> None:
    """Run the rounds and print the figures."""
    results: dict[tuple[str, Path], list[dict[str, float]]] = {}
    async with open_fake_discord() as fake:
        fake.set_rate_limit(*MESSAGES_ROUTE, limit=1_000_000, per_seconds=1.0)
        if callgrind is not None:
            await _instructions(fake, trees, messages, rounds, callgrind)
            return
        for _ in range(rounds):
            for mode, ride in MODES.items():
                for tree in trees:
                    figures = await _once(fake, tree, messages, ride, [])
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
    parser.add_argument("--callgrind", type=Path, metavar="DIR")
    args = parser.parse_args()
    trees = [t.resolve() for t in args.trees or [Path.cwd()]]
    rounds = max(1, args.rounds)
    if args.callgrind is not None:
        args.callgrind.mkdir(parents=True, exist_ok=True)
    anyio.run(main, trees, args.messages, rounds, args.callgrind, backend="asyncio")
