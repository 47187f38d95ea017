"""Tasks in Discord: ``program: text`` in the task channel, ``/task``, and the answers.

Each message becomes a task once, keyed by its id, also when posted while dsup was away
or while the gateway had no session; its lifecycle shows as reactions and its answer is
one reply, queued in the outbox once.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import logging
import re
import shutil
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import aiohttp
import anyio
import discord
from discord import app_commands

from supervisor import humanize
from supervisor.bridge.access import actor_of
from supervisor.bridge.backoff import Backoff
from supervisor.bridge.complete import MAX_CHOICES
from supervisor.bridge.respond import NO_MENTIONS, is_ours, refuse_elsewhere
from supervisor.bridge.results import cancel_item
from supervisor.commands.access import AccessLevel
from supervisor.errors import AccessDenied, SupervisorError
from supervisor.state.channel_cursor import ChannelCursor
from supervisor.tasks import files
from supervisor.tasks.records import TaskState

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from pathlib import Path

    from supervisor.bridge.context import BridgeContext
    from supervisor.tasks.records import TaskRecord

logger = logging.getLogger(__name__)

EMOJI = {
    TaskState.QUEUED: "📥",
    TaskState.RUNNING: "⏳",
    TaskState.DONE: "✅",
    TaskState.FAILED: "❌",
    TaskState.TIMED_OUT: "⏱️",
    TaskState.CANCELLED: "🚫",
}
"""The reaction each step of a task's life adds to its message."""
TASK_VERBS = ("task", "task-cancel")
"""The slash commands of tasks (beside ``perform.VERBS``)."""
BACKFILL_MESSAGES = 1000
"""Messages of the task channel read back at most per gateway session."""
EVENTS_KEPT = 10_000
"""Task changes waiting for their messages, and for their reactions; beyond, the oldest
are skipped."""
DOWNLOAD_SECONDS = 60
"""The longest one file of a task message may take to download."""
_ANSWERS_PER_ROUND = 100
_TASK = re.compile(r"\s*([A-Za-z0-9_][A-Za-z0-9_.-]{0,63})\s*:\s*(\S.*)", re.DOTALL)


def parse_task(content: str, bot_id: int) -> tuple[str, str] | None:
    """``(program, text)`` of a message saying ``program: text`` (mentions of the bot aside)."""
    found = _TASK.fullmatch(re.sub(rf"<@!?{bot_id}>", " ", content))
    return (found[1], found[2].strip()) if found else None


def announcement(task: TaskRecord) -> str:
    """What the task channel shows of a task a worker gave: ``planner:0 -> writer: ...``."""
    head = f"{EMOJI[TaskState.QUEUED]} `{task.author}` -> `{task.program}`"
    return f"{head} (task {task.id}): {task.text}"


def acknowledgement(task: TaskRecord) -> str:
    """The reply to a task message while its task waits or runs (it has a Cancel button)."""
    return f"{EMOJI[TaskState.QUEUED]} `{task.program}` task {task.id} queued"


def answer_text(task: TaskRecord) -> str:
    """The reply that answers a task: its outcome, then its result or the reason."""
    head = f"{EMOJI[task.state]} `{task.program}` task {task.id}"
    if task.source == "worker":
        head += f" for `{task.author}`"
    if task.state is TaskState.DONE:
        return f"{head} done\n{task.result}" if task.result.strip() else f"{head} done"
    label = {TaskState.TIMED_OUT: "timed out", TaskState.CANCELLED: "cancelled"}
    what = label.get(task.state, "failed")
    why, _, stderr = task.reason.partition("\n")
    lines = (
        humanize.printable(line).replace("```", "`\u200b`\u200b`") for line in stderr.split("\n")
    )
    body = "\n```\n" + "\n".join(lines) + "\n```" if stderr.strip() else ""
    return f"{head} {what}: {why}{body}"


class TaskDesk:
    """The task channel of one bridge: ingest, reactions, answers. Outlives reconnections.

    Args:
        context: the bridge's context (the command surface holds the task queue).
        sleep: the waits between tries of a catch-up (tests control time).
    """

    def __init__(
        self,
        context: BridgeContext,
        *,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self._context = context
        self._sleep = sleep
        self._outbox = context.outbox  # the sender's: a reply written wakes it
        self._cursor = ChannelCursor(context.ledger)
        self._changes: deque[TaskRecord] = deque(maxlen=EVENTS_KEPT)
        self._wake = anyio.Event()
        self._reactions: deque[TaskRecord] = deque(maxlen=EVENTS_KEPT)
        self._reacted = anyio.Event()
        self._sessions = 0  # gateway sessions begun (READY), in every client
        self._caught_up = 0  # of those, the ones whose catch-up has read the history
        self._session_ready = anyio.Event()
        self._ingesting: set[int] = set()  # task messages being taken now, live or caught up
        queue = context.service.task_queue
        if queue is not None:
            queue.watch(self._deliver)

    @property
    def channel(self) -> int:
        """The task channel's id (0: none configured)."""
        return self._context.spec.task_channel

    def _deliver(self, task: TaskRecord) -> None:
        if task.reply_channel is not None:
            self._changes.append(task)
            self._reactions.append(task)
            self._wake.set()
            self._reacted.set()

    # -- gateway sessions -------------------------------------------------------

    def session_began(self) -> None:
        """A new gateway session (READY: the first, or after a refused resume).

        Discord sends none of the events of the gap before it: its messages are read
        back from the channel's history once the session is ready. Until then, the
        messages of the new session are taken without moving the cursor, which must
        still say where the gap begins. A resumed session replays the gap instead.
        """
        self._sessions += 1

    def session_ready(self) -> None:
        """The new session's guild is in (``on_ready``): its catch-up can read."""
        self._session_ready.set()

    async def _catch_up(self, client: discord.Client) -> None:
        """Read back the task channel at each new gateway session of ``client``."""
        while True:
            await self._session_ready.wait()
            ready = self._session_ready = anyio.Event()  # set again by the next session
            await self._read_back(client, self._sessions, ready)

    async def _read_back(self, client: discord.Client, began: int, ready: anyio.Event) -> None:
        """One session's catch-up: a read that failed in a way that may pass (a 5xx, no
        answer, a network error) is tried again, ever less often, until it works or a
        new session (``ready``) begins its own. Said once in the log."""
        backoff = Backoff()
        while True:
            try:
                if await self._backfill(client):
                    self._caught_up = began
                if backoff.failures:
                    logger.info(
                        "discord: read the task channel's history after %d failed tries",
                        backoff.failures,
                    )
                return
            except (discord.DiscordException, aiohttp.ClientError, OSError) as exc:
                if isinstance(exc, discord.HTTPException) and exc.status < 500:
                    logger.warning(  # no access: the next session reads it again
                        "discord: the task channel's history: %s %s", exc.status, exc.text
                    )
                    return
                delay = backoff.after_failure(0.0)
                if backoff.failures == 1:
                    logger.warning(
                        "discord: the task channel's history: %s; reading it again in "
                        "%.0f s, then ever less often, until it works",
                        str(exc) or type(exc).__name__,  # a timeout says nothing
                        delay,
                    )
            await self._pause(delay, ready)
            if ready.is_set():
                return  # a new session: its own catch-up reads

    async def _pause(self, seconds: float, ready: anyio.Event) -> None:
        """Wait ``seconds`` (the bridge's sleep), or until ``ready`` is set."""
        async with anyio.create_task_group() as tg:

            async def wait() -> None:
                await self._sleep(seconds)
                tg.cancel_scope.cancel()

            tg.start_soon(wait)
            await ready.wait()
            tg.cancel_scope.cancel()

    # -- messages in ------------------------------------------------------------

    async def handle(self, me: discord.ClientUser, message: discord.Message) -> bool:
        """Take a message of the served guild; True when it was a task (or a refusal)."""
        if not self.channel or message.channel.id != self.channel:
            return False
        if self._caught_up == self._sessions:  # else the catch-up moves the cursor
            await anyio.to_thread.run_sync(self._cursor.advance, self.channel, message.id)
        return await self._ingest(me, message)

    async def _ingest(self, me: discord.ClientUser, message: discord.Message) -> bool:
        """Take a task message once, met live and in a catch-up alike (even at once)."""
        parsed = parse_task(message.content, me.id)
        if parsed is None or parsed[0] not in self._context.service.task_programs():
            return False  # chatter, or a command by mention
        if message.id in self._ingesting:
            return True  # being taken the other way now
        self._ingesting.add(message.id)
        try:
            if not await self._is_settled(message.id):
                await self._take(message, *parsed)
        finally:
            self._ingesting.discard(message.id)
        return True

    async def _is_settled(self, message_id: int) -> bool:
        """Whether a task message was taken or refused already."""
        queue = self._context.service.task_queue
        assert queue is not None  # no task programs without a queue
        if await queue.is_submitted(str(message_id)):
            return True
        key = _refused_marker(message_id)
        return await anyio.to_thread.run_sync(self._outbox.meta, key) is not None

    async def _take(self, message: discord.Message, program: str, text: str) -> None:
        service = self._context.service
        actor = actor_of(self._context.spec.access, await _member(message))
        folder = None
        if message.attachments and actor.level >= AccessLevel.OPERATOR:
            folder = self._inbox(str(message.id))
            why = await _fetch_files(message.attachments, folder)
            if why is not None:
                await self._refuse(message, f"Not queued: {why}")
                return
        try:
            await service.task(
                actor,
                program,
                text,
                source_key=str(message.id),
                reply_channel=message.channel.id,
                reply_to=message.id,
            )
        except AccessDenied:  # audited by the command surface; not answered, but marked
            key = _refused_marker(message.id)
            await anyio.to_thread.run_sync(self._outbox.claim_marker, key)
        except SupervisorError as exc:  # a full backlog, a bad text: say so
            if folder is not None:
                await anyio.to_thread.run_sync(_remove, folder)
            await self._refuse(message, f"Not queued: {exc}")

    async def _refuse(self, message: discord.Message, text: str) -> None:
        """Reply why a task message was not queued, through the outbox, once."""

        def post() -> None:
            key = _refused_marker(message.id)
            if self._outbox.meta(key) is None:
                channel = message.channel.id
                now = time.time()
                self._outbox.post(channel, "reply", text, now=now, reply_to=message.id, marker=key)

        await anyio.to_thread.run_sync(post)

    def _inbox(self, source_key: str) -> Path:
        queue = self._context.service.task_queue
        assert queue is not None  # no task programs without a queue
        return queue.files_dir(source_key)

    async def _backfill(self, client: discord.Client) -> bool:
        """Ingest the task messages posted since the last one handled (while dsup was
        away, or the gateway had no session). A message taken already is taken once.

        Returns:
            False when the channel is not there to read (not in the client's guild).
        """
        after = await anyio.to_thread.run_sync(self._cursor.get, self.channel)
        if after is None:  # the first connection: from now on
            now = discord.utils.time_snowflake(datetime.datetime.now(datetime.UTC))
            await anyio.to_thread.run_sync(self._cursor.advance, self.channel, now)
            return True
        channel = client.get_channel(self.channel)
        if not isinstance(channel, discord.TextChannel) or client.user is None:
            return False
        seen = 0
        async for message in channel.history(
            after=discord.Object(id=after), oldest_first=True, limit=BACKFILL_MESSAGES
        ):
            seen += 1
            if not message.author.bot:
                await anyio.to_thread.run_sync(self._cursor.advance, self.channel, message.id)
                await self._ingest(client.user, message)
        if seen:
            logger.info("discord: read %d messages of the task channel posted meanwhile", seen)
        return True

    # -- the desk's task ----------------------------------------------------------

    async def serve(self, client: discord.Client) -> None:
        """While ``client`` runs: catch up with the channel at each new session, react
        and answer."""
        if self._context.service.task_queue is None or not self.channel:
            return
        self._session_ready = anyio.Event()  # a client closed before its catch-up: not this one's
        await client.wait_until_ready()
        await self._answer()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._react_all, client)
            tg.start_soon(self._catch_up, client)
            while True:  # the outbox's part at once: an answer can replace its acknowledgement
                await self._wake.wait()
                self._wake = anyio.Event()
                ended = False
                while self._changes:
                    task = self._changes.popleft()
                    ended = ended or task.state.is_final
                    if task.state is not TaskState.QUEUED:
                        continue
                    if task.source == "worker":
                        await anyio.to_thread.run_sync(self._announce_once, task)
                    elif task.reply_to is not None:
                        await anyio.to_thread.run_sync(self._acknowledge_once, task)
                if ended:
                    await self._answer()

    async def _react_all(self, client: discord.Client) -> None:
        """Add the reactions of task changes, at the pace Discord allows."""
        while True:
            await self._reacted.wait()
            self._reacted = anyio.Event()
            while self._reactions:
                await self._react(client, self._reactions.popleft())

    async def _react(self, client: discord.Client, task: TaskRecord) -> None:
        if task.reply_channel is None or task.reply_to is None:
            return
        message = client.get_partial_messageable(task.reply_channel).get_partial_message(
            task.reply_to
        )
        try:
            await message.add_reaction(EMOJI[task.state])
        except discord.HTTPException as exc:  # a deleted message, a missing permission
            logger.debug("discord: task %d: no reaction: %s", task.id, exc)

    async def _answer(self) -> None:
        """Queue the answer of every ended task not answered yet, each exactly once.

        The outbox row and a marker naming the task are written in one transaction:
        a crash before the task is marked answered finds the marker, not a second
        reply to send. A task is marked answered only once its answer is queued: an
        answer the ledger dropped (too many writes waiting) is queued again at the
        next round (the next task's end, or connection).
        """
        queue = self._context.service.task_queue
        assert queue is not None
        while tasks := await queue.unreplied(_ANSWERS_PER_ROUND):
            for task in tasks:
                if not await anyio.to_thread.run_sync(self._post_once, task):
                    return
                await queue.mark_replied(task.id)
            if len(tasks) < _ANSWERS_PER_ROUND:
                return

    def _announce_once(self, task: TaskRecord) -> None:
        """Show a task a worker gave in the task channel, once."""
        key = f"task-announce:{task.id}"
        if task.reply_channel is None or self._outbox.meta(key) is not None:
            return
        self._outbox.post(
            task.reply_channel, "notice", announcement(task), now=time.time(), marker=key
        )

    def _acknowledge_once(self, task: TaskRecord) -> None:
        """Reply to a task message with a Cancel button, once; its answer replaces it."""
        key = f"task-ack:{task.id}"
        if task.reply_channel is None or self._outbox.meta(key) is not None:
            return
        self._outbox.post(
            task.reply_channel,
            "reply",
            acknowledgement(task),
            now=time.time(),
            reply_to=task.reply_to,
            marker=key,
            attach=json.dumps({"cancel_task": task.id}),
        )

    def _post_once(self, task: TaskRecord) -> bool:
        """Queue a task's answer: the acknowledgement edited (its button gone), or a reply.

        Returns:
            True once the answer is queued (now or before); False when the ledger
            dropped it (its marker went with it).
        """
        key = f"task-answer:{task.id}"
        if task.reply_channel is None or self._outbox.meta(key) is not None:
            return True
        if task.reply_to is not None and self._outbox.meta(f"task-ack:{task.id}") is not None:
            ack = self._outbox.reply_row(task.reply_channel, task.reply_to)
            if ack is not None:
                with contextlib.suppress(LookupError):  # pruned meanwhile: a new reply
                    self._outbox.edit(
                        ack, answer_text(task), now=time.time(), drop_view=True, marker=key
                    )
                    return self._outbox.meta(key) is not None
        self._outbox.post(
            task.reply_channel,
            "reply",
            answer_text(task),
            now=time.time(),
            reply_to=task.reply_to,
            marker=key,
        )
        return self._outbox.meta(key) is not None


def _refused_marker(message_id: int) -> str:
    """The outbox marker of a refused task message (on its answer, if it has one)."""
    return f"task-refused:{message_id}"


def too_big(sizes: Sequence[tuple[str, int]]) -> str | None:
    """Why files of these ``(name, size)`` cannot come with a task, or None when they can."""
    for filename, size in sizes:
        if size > files.MAX_FILE_BYTES:
            name, shown = humanize.printable(filename), humanize.memory(size)
            return (
                f"`{name}` has {shown}, more than the "
                f"{humanize.memory(files.MAX_FILE_BYTES)} a task's file may have"
            )
    total = sum(size for _, size in sizes)
    if total > files.MAX_TASK_FILES_BYTES:
        return (
            f"the files have {humanize.memory(total)} together, more than the "
            f"{humanize.memory(files.MAX_TASK_FILES_BYTES)} a task's files may have"
        )
    return None


async def _fetch_files(attachments: list[discord.Attachment], folder: Path) -> str | None:
    """Download a task message's files into ``folder``; why not, if they are refused.

    Sizes are checked before any download (and again after). Names are made plain
    (no directory, no ``..``). A folder already there (the same message, taken
    before) is kept as it is.
    """
    why = too_big([(a.filename, a.size) for a in attachments])
    if why is not None:
        return why
    part = folder.with_name(folder.name + ".part")
    await anyio.to_thread.run_sync(_remove, part)
    await anyio.to_thread.run_sync(functools.partial(part.mkdir, mode=0o700, parents=True))
    taken: set[str] = set()
    try:
        got = 0
        for attachment in attachments:
            name = humanize.printable(attachment.filename)
            try:
                with anyio.fail_after(DOWNLOAD_SECONDS):
                    data = await attachment.read()
            except discord.HTTPException as exc:
                return f"could not download `{name}` (HTTP {exc.status})"
            except TimeoutError:
                return f"could not download `{name}` (not in {DOWNLOAD_SECONDS} s)"
            except OSError as exc:
                return f"could not download `{name}` ({exc.__class__.__name__})"
            got += len(data)
            if len(data) > files.MAX_FILE_BYTES or got > files.MAX_TASK_FILES_BYTES:
                return f"`{name}` is bigger than announced"
            path = part / files.safe_name(attachment.filename, taken)
            await anyio.to_thread.run_sync(path.write_bytes, data)
        await anyio.to_thread.run_sync(_settle, part, folder)
    finally:
        await anyio.to_thread.run_sync(_remove, part)
    return None


def _settle(part: Path, folder: Path) -> None:
    """Move downloaded files in place, unless the task's folder is there already."""
    if not folder.exists():
        part.rename(folder)


def _remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


async def _member(message: discord.Message) -> discord.User | discord.Member:
    """The author with their roles: a message read from history carries none."""
    author = message.author
    if isinstance(author, discord.Member) or message.guild is None:
        return author
    try:
        return await message.guild.fetch_member(author.id)
    except discord.HTTPException as exc:  # gone from the guild: judged by their id alone
        logger.debug("discord: member %s: %s", author.id, exc)
        return author


def task_commands(context: BridgeContext) -> list[app_commands.Command[Any, ..., None]]:
    """``/task program text`` (programs autocompleted) and ``/task-cancel id``."""

    async def programs(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        if not is_ours(context, interaction):
            return []
        if actor_of(context.spec.access, interaction.user).level < AccessLevel.VIEWER:
            return []
        typed = current.strip().lower()
        names = [n for n in context.service.task_programs() if typed in n.lower()]
        return [app_commands.Choice(name=n, value=n) for n in names[:MAX_CHOICES]]

    @app_commands.command(name="task", description="Give a task to a program that takes tasks")
    @app_commands.describe(program="a program with tasks = ...", text="the task")
    @app_commands.autocomplete(program=programs)
    async def task(interaction: discord.Interaction, program: str, text: str) -> None:
        if not is_ours(context, interaction):
            await refuse_elsewhere(interaction)
            return
        actor = actor_of(context.spec.access, interaction.user)
        channel = interaction.channel_id
        try:
            record = await context.service.task(
                actor,
                program,
                text,
                source_key=f"interaction:{interaction.id}",
                reply_channel=channel,
            )
        except SupervisorError as exc:
            await interaction.response.send_message(f"Not queued: {exc}", ephemeral=True)
            return
        view = discord.ui.View(timeout=None)
        view.add_item(cancel_button(context)(record.id))
        await interaction.response.send_message(
            f"{EMOJI[TaskState.QUEUED]} `{program}` task {record.id} queued; "
            "its answer comes in this channel",
            allowed_mentions=NO_MENTIONS,
            view=view,
        )

    @app_commands.command(name="task-cancel", description="Cancel a queued or running task")
    @app_commands.describe(id="the task's number")
    async def task_cancel(interaction: discord.Interaction, id: int) -> None:
        await cancel_for(context, interaction, id)

    return [task, task_cancel]


async def cancel_for(
    context: BridgeContext, interaction: discord.Interaction, task_id: int
) -> None:
    """Cancel a task for the member behind ``interaction`` (``/task-cancel`` or the button)."""
    if not is_ours(context, interaction):
        await refuse_elsewhere(interaction)
        return
    actor = actor_of(context.spec.access, interaction.user)
    try:
        if actor.level >= AccessLevel.OPERATOR:  # a stop may take stop_timeout_seconds
            await interaction.response.defer(thinking=True)
        record = await context.service.task_cancel(actor, task_id)
    except SupervisorError as exc:
        if interaction.response.is_done():
            await interaction.followup.send(f"Not cancelled: {exc}")
        else:
            await interaction.response.send_message(f"Not cancelled: {exc}", ephemeral=True)
        return
    await interaction.followup.send(
        f"{EMOJI[record.state]} task {record.id}: {record.state.value} ({record.reason})",
        allowed_mentions=NO_MENTIONS,
    )


CANCEL_TEMPLATE = r"task-cancel:(?P<id>[0-9]{1,18})"


def cancel_button(context: BridgeContext) -> type[discord.ui.DynamicItem[Any]]:
    """The Cancel button under a ``/task`` answer, bound to ``context`` (persistent)."""

    class CancelButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=CANCEL_TEMPLATE):
        def __init__(self, task_id: int) -> None:
            super().__init__(cancel_item(task_id))
            self.task_id = task_id

        @classmethod
        async def from_custom_id(
            cls,
            interaction: discord.Interaction,
            item: discord.ui.Item[Any],
            match: re.Match[str],
        ) -> CancelButton:
            return cls(int(match["id"]))

        async def callback(self, interaction: discord.Interaction) -> None:
            await cancel_for(context, interaction, self.task_id)

    return CancelButton
