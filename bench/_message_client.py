"""Bench client of ``relay_message.py``: dsup's relay, outbox, sender and client, timed.

argv: api_base gateway_url token guild_id channel_id messages ride(0/1). Connects, relays
``messages`` worker results one after the other (each written and claimed in the relay's
trip, sent, confirmed) after a warm-up, and prints one JSON line: this process's CPU and
its main thread's per message. ``ride`` 1: the relay is about to write again after each
(a message within a burst: marked sent in the relay's next trip); 0: it is not (a burst's
last message: marked in a trip of its own). No commands, board or task desk.
"""

from __future__ import annotations

import inspect
import json
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import anyio

from supervisor.bridge.client import BridgeClient
from supervisor.bridge.health import HealthRecord
from supervisor.bridge.relay import Relay, RelayChannels
from supervisor.bridge.sender import OutboxSender
from supervisor.config.schema import ProgramSpec
from supervisor.config.schema import Relay as RelayMode
from supervisor.state.ledger import Ledger
from supervisor.state.outbox import Outbox
from tests.discord_fake.connect import DiscordEndpoints, set_endpoints

if TYPE_CHECKING:
    from supervisor.bridge.context import BridgeContext

WARM_UP = 30
LINE = "scraper:0 | 2026-12-06 10:00:00 fetched https://example.com/page/123456 in 0.042 s"
TEXT = "```\n" + "\n".join([LINE] * 21) + "\n```"


class Probe(BridgeClient):
    """The bridge's client with nothing installed."""

    async def setup_hook(self) -> None:
        """Install no commands: the messages are what is measured."""

    async def on_connect(self) -> None:
        """No task desk to tell."""


async def main() -> None:
    """Connect, relay the messages, print the figures."""
    api_base, gateway_url, token, guild_id, channel, count, ride = sys.argv[1:8]
    set_endpoints(DiscordEndpoints(api_base=api_base, gateway_url=gateway_url))
    programs = {"w": ProgramSpec(name="w", command=("true",), cwd=Path("/"), relay=RelayMode.ALL)}
    channels = RelayChannels(log=int(channel), results=int(channel))
    health = HealthRecord()
    with tempfile.TemporaryDirectory() as tmp, Ledger.open(Path(tmp) / "l.sqlite3") as ledger:
        outbox = Outbox(ledger)
        finished = anyio.Event()

        def on_finished(channel_id: int, left: int | None) -> None:
            relay.finished(channel_id, left)
            finished.set()

        options: dict[str, Any] = {"health": health, "on_finished": on_finished}
        if "writes_soon" in inspect.signature(OutboxSender).parameters:  # some older trees only
            options["writes_soon"] = lambda _: ride == "1"
        sender = OutboxSender(outbox, **options)
        relay = Relay(
            lambda: programs,
            outbox,
            ledger,
            log_dir=Path(tmp),
            channels=channels,
            channel_wait=sender.create_wait,
            edit_wait=sender.edit_wait,
            hand_over=sender,
        )
        trace = sender.trace_config()
        health.watch_requests(trace)
        context = cast("BridgeContext", SimpleNamespace(guild_id=int(guild_id), health=health))
        async with Probe(context, http_trace=trace) as client, anyio.create_task_group() as tg:
            tg.start_soon(client.start, token)
            await client.wait_until_ready()
            await tg.start(sender.run, lambda: client)
            await tg.start(relay.run)

            async def one() -> None:
                nonlocal finished
                finished = anyio.Event()
                relay.post_result("w:0", TEXT)
                await finished.wait()

            for _ in range(WARM_UP):
                await one()
            cpu, main_thread = time.process_time(), time.thread_time()
            for _ in range(int(count)):
                await one()
            cpu, main_thread = time.process_time() - cpu, time.thread_time() - main_thread
            figures = {"cpu_us": cpu / int(count) * 1e6, "main_us": main_thread / int(count) * 1e6}
            print(json.dumps(figures), flush=True)
            tg.cancel_scope.cancel()


if __name__ == "__main__":
    anyio.run(main, backend="asyncio")
