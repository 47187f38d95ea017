"""The Discord bridge's life: log in, serve, and come back after failures.

A rejected token stops the bridge with a clear message; any other failure ends the client,
waits (``backoff``) and starts a new one, never disturbing the fleet.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import aiohttp
import anyio
import discord

from supervisor.bridge.backoff import Backoff, IdentifyPacing
from supervisor.bridge.board import Board
from supervisor.bridge.client import BridgeClient
from supervisor.bridge.context import BridgeContext
from supervisor.bridge.endpoints import point_discord_at
from supervisor.bridge.health import HealthRecord
from supervisor.bridge.logs import quiet_discord_logs, scrub
from supervisor.bridge.outbound import FINISH_SECONDS
from supervisor.bridge.tasks import TaskDesk
from supervisor.commands.health import describe
from supervisor.errors import ConfigError
from supervisor.events import StateChanged
from supervisor.state.outbox import Outbox

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from anyio.abc import TaskStatus

    from supervisor.commands.health import BridgeHealth
    from supervisor.commands.service import CommandService
    from supervisor.config.schema import DiscordSpec
    from supervisor.events import Event
    from supervisor.state.ledger import Ledger

logger = logging.getLogger(__name__)

CLOSE_TIMEOUT_SECONDS = 5.0
CLOSE_SECONDS = 1.0
"""Of ``CLOSE_TIMEOUT_SECONDS``, what is kept for closing the client after the farewell."""
_REJECTED_TOKEN = (
    "Discord rejected the bot token ({how}); the bridge stopped and will not retry. "
    "Copy a fresh token from the Developer Portal (Bot > Reset Token) into {where}, "
    "then restart dsup"
)


class DiscordBridge:
    """Runs the bridge of one node as one task of the node's task group.

    Args:
        spec: the ``[discord]`` table.
        node: the node name.
        ledger: the node's ledger.
        health: the record to keep the bridge's health in (default: a new one).
        sleep: waits between attempts, and before identifying again (tests pass
            one that controls time).
        clock: monotonic seconds, to tell a lasting connection from a failing one.
        http_trace: follows the requests of every client (the outbox's sender paces
            itself from it: ``OutboxSender.trace_config``); the health follows it too,
            to tell whether Discord answers. Default: a trace for the health alone.
        client_options: passed to :class:`discord.Client` (tests shorten
            ``guild_ready_timeout``).
        board: makes the status board (tests shorten its waits).
        outbox: the outbox the node's sender drains (default: one of ``ledger``,
            whose rows that sender finds at its next look).
    """

    farewell_seconds = FINISH_SECONDS + CLOSE_TIMEOUT_SECONDS
    """The longest the bridge holds a shutdown after the last sweep: the outbox's
    last sends (``Outbound.finish``), then the farewell and close."""

    def __init__(
        self,
        spec: DiscordSpec,
        *,
        node: str,
        ledger: Ledger,
        health: HealthRecord | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        clock: Callable[[], float] = anyio.current_time,
        http_trace: aiohttp.TraceConfig | None = None,
        client_options: dict[str, Any] | None = None,
        board: Callable[[BridgeContext], Board] = Board,
        outbox: Outbox | None = None,
    ) -> None:
        self._spec = spec
        self._node = node
        self._ledger = ledger
        self._sleep = sleep
        self._clock = clock
        self._client_options = dict(client_options or {})
        self._make_board = board
        self.outbox = outbox or Outbox(ledger)
        self.health = health or HealthRecord()
        self._trace = http_trace or aiohttp.TraceConfig()
        self.health.watch_requests(self._trace)
        self.backoff = Backoff()
        self.pacing = IdentifyPacing()
        self.attempts = 0
        self.client: BridgeClient | None = None
        self.board: Board | None = None
        self.desk: TaskDesk | None = None

    def deliver(self, event: Event) -> None:
        """Take the fleet's events (an ``EventSink``): a state change wakes the board."""
        if isinstance(event, StateChanged) and self.board is not None:
            self.board.fleet_changed()

    def health_now(self) -> BridgeHealth:
        """The bridge's health (a ``commands.health.HealthSource``)."""
        return self.health.snapshot()

    async def run(
        self,
        service: CommandService,
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve Discord until cancelled, or until the token is rejected.

        Starts at once (``task_status``) and connects in the background: the
        fleet never waits on Discord. Returns only when the bridge gave up
        (see ``health``); cancelling it closes the client, bounded.
        """
        context = BridgeContext(
            service=service,
            spec=self._spec,
            node=self._node,
            ledger=self._ledger,
            health=self.health,
            outbox=self.outbox,
        )
        task_status.started()
        try:
            token = await anyio.to_thread.run_sync(self._spec.read_token)
        except ConfigError as exc:
            self._give_up(str(exc))
            return
        quiet_discord_logs(token)
        point_discord_at(self._spec.api_base, self._spec.gateway_url)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._announce)
            await self._serve(context, token)
            tasks.cancel_scope.cancel("the bridge gave up")

    async def _announce(self) -> None:
        """Tell the operator (``dsup run``'s console) when the bridge connects or drops.

        Failures with a retry, and giving up, are told where they happen.
        """
        said = self.health.snapshot().state
        while True:
            await self.health.wait_changed()
            health = self.health.snapshot()
            if health.state == said:
                continue
            said = health.state
            if health.state == "connected":
                logger.warning("%s", describe(health, now=time.time())[0])
            elif health.state == "reconnecting" and health.retry_at is None:
                logger.warning("discord: connection lost; reconnecting")

    async def _serve(self, context: BridgeContext, token: str) -> None:
        while True:
            began = self._clock()
            error = await self._serve_once(context, token)
            if error is None:
                return
            delay = self.backoff.after_failure(self._clock() - began)
            self.health.reconnecting(error, retry_at=time.time() + delay)
            logger.warning("discord: %s; connecting again in %.0f s", error, delay)
            await self._sleep(delay)

    async def _serve_once(self, context: BridgeContext, token: str) -> str | None:
        """Run one client to its end; the failure to retry after, or None to give up."""
        self.attempts += 1
        client = self.client = BridgeClient(
            context,
            pacing=self.pacing,
            sleep=self._sleep,
            clock=self._clock,
            http_trace=self._trace,
            **self._client_options,
        )
        board = self._board(context)
        desk = self.desk = self.desk or TaskDesk(context, sleep=self._sleep)
        client.task_desk = desk
        failure: Exception | None = None
        try:
            async with client, anyio.create_task_group() as tasks:
                tasks.start_soon(board.serve, client)
                tasks.start_soon(desk.serve, client)
                try:
                    await client.start(token)
                except Exception as exc:  # judged below, once the client is closed
                    failure = exc
                finally:
                    # Cancelled from outside (not by a failed task): dsup is stopping.
                    is_stopping = not tasks.cancel_scope.cancel_called and failure is None
                    tasks.cancel_scope.cancel("the client ended")
                    with anyio.move_on_after(CLOSE_TIMEOUT_SECONDS, shield=True):
                        # No farewell while Discord does not answer: it would hold the
                        # stop to the bound for nothing; the next start shows the board.
                        if is_stopping and not client.is_closed() and self.health.is_reachable():
                            # A farewell that cannot finish must not keep the client
                            # open: its heartbeat thread would outlive the loop.
                            with anyio.move_on_after(CLOSE_TIMEOUT_SECONDS - CLOSE_SECONDS):
                                await board.farewell(client)
                        await client.close()
        except Exception as exc:  # a task of the bridge failed: restart it, never the node
            failure = exc
        return self._judge(failure, token)

    def _board(self, context: BridgeContext) -> Board:
        if self.board is None:
            self.board = self._make_board(context)
        return self.board

    def _judge(self, failure: Exception | None, token: str) -> str | None:
        """What to retry after (a one-line reason), or None after giving up for good."""
        if failure is None:
            return "the connection ended"
        if isinstance(failure, discord.LoginFailure):
            self._give_up(self._rejected("401 Unauthorized"))
            return None
        if isinstance(failure, discord.PrivilegedIntentsRequired):
            self._give_up("Discord refused a privileged intent; dsup asks for none")
            return None
        if isinstance(failure, discord.ConnectionClosed):
            if failure.code == 4004:
                self._give_up(self._rejected("gateway close 4004: authentication failed"))
                return None
            reason = failure.reason or "no reason given"
            return scrub(f"gateway closed with code {failure.code}: {reason}", token)
        while isinstance(failure, ExceptionGroup) and failure.exceptions:
            first = failure.exceptions[0]
            if not isinstance(first, Exception):
                break
            failure = first
        return scrub(f"{type(failure).__name__}: {failure}", token)

    def _rejected(self, how: str) -> str:
        where = (
            f"the file {self._spec.token_file}"
            if self._spec.token_file
            else f"the environment variable {self._spec.token_env}"
        )
        return _REJECTED_TOKEN.format(how=how, where=where)

    def _give_up(self, message: str) -> None:
        self.health.stopped(message)
        logger.error("discord: %s", message)
