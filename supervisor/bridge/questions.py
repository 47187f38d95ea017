"""Workers' questions in Discord: a message with a button per choice, answered once.

Closing edits the message (who answered what, or timed out, or gone); the buttons are
persistent (``dsup:answer:ID:N``), so a click after a restart still answers, audited.
"""

from __future__ import annotations

import collections
import logging
from typing import TYPE_CHECKING, Any

import anyio
import discord

from supervisor.bridge.access import actor_of
from supervisor.bridge.respond import NO_MENTIONS, is_ours, refuse_elsewhere
from supervisor.commands.access import AccessLevel
from supervisor.config.schema import Relay
from supervisor.errors import SupervisorError
from supervisor.events import QuestionAsked, QuestionClosed
from supervisor.state.question_posts import QuestionPosts

if TYPE_CHECKING:
    import re
    from collections.abc import Callable, Mapping

    from anyio.abc import TaskStatus

    from supervisor.bridge.context import BridgeContext
    from supervisor.config.schema import DiscordSpec, ProgramSpec
    from supervisor.events import Event, Question, QuestionStatus
    from supervisor.state.ledger import Ledger

logger = logging.getLogger(__name__)

ANSWER_TEMPLATE = r"dsup:answer:(?P<question>[0-9]{1,18}):(?P<choice>[0-9]{1,2}|text)"
MAX_WAITING = 1000
"""Question events waiting for Discord; beyond, the oldest are dropped (and logged)."""
RETRY_SECONDS = 2.0
"""Time between two tries while Discord is away or refuses a post."""
MAX_TRIES = 5
"""Tries per message before it is given up (logged); ``dsup ctl asks`` still has it."""
_QUESTION_CHARS = 1500  # of the question text shown: the message has other lines too
_BUTTONS_PER_ROW = 5
_POST_SECONDS = 10.0  # the longest a question's post may hold up a shutdown


def answer_id(question_id: int, choice: int | str) -> str:
    """The ``custom_id`` of the button giving choice number ``choice`` (or ``"text"``)."""
    return f"dsup:answer:{question_id}:{choice}"


def question_text(question: Question) -> str:
    """The message of an open question: who asks, what, and what happens without answer."""
    shown = discord.utils.escape_mentions(discord.utils.escape_markdown(question.text))
    if len(shown) > _QUESTION_CHARS:
        shown = shown[:_QUESTION_CHARS] + "…"
    lines = [f"**{question.process}** asks (question {question.id}):", f">>> {shown}"]
    if question.timeout_at is not None:
        when = f"<t:{int(question.timeout_at)}:R>"
        fallback = f"the answer **{question.default}**" if question.default else "no answer"
        lines.insert(1, f"Unanswered, it gets {fallback} {when}.")
    return "\n".join(lines)


def closed_text(
    question: Question, status: QuestionStatus, answer: str | None, by: str, at: float | None
) -> str:
    """The message of a closed question: the question, then how it ended."""
    when = f" <t:{int(at)}:f>" if at is not None else ""
    if status == "answered":
        name = discord.utils.escape_markdown(by)
        end = f"✅ Answered **{_shown(answer)}** by {name}{when}."
    elif status == "timeout":
        got = f"the default **{_shown(answer)}**" if answer else "no answer"
        end = f"⌛ Nobody answered in time{when}: the worker got {got}."
    else:
        end = f"🚫 Closed{when}: the asker is gone (its process ended, or dsup stopped)."
    return f"{question_text(question).split(chr(10))[0]}\n{end}\n>>> {_quoted(question)}"


def _shown(answer: str | None) -> str:
    text = discord.utils.escape_mentions(discord.utils.escape_markdown(answer or ""))
    return text[:300]


def _quoted(question: Question) -> str:
    shown = discord.utils.escape_mentions(discord.utils.escape_markdown(question.text))
    return shown if len(shown) <= _QUESTION_CHARS else shown[:_QUESTION_CHARS] + "…"


def question_view(question: Question, *, closed: bool = False) -> discord.ui.View:
    """A button per choice (a "Answer…" button opening a text box for free text)."""
    view = discord.ui.View(timeout=None)
    if question.choices is None:
        view.add_item(
            discord.ui.Button(
                label="Answer…",
                style=discord.ButtonStyle.primary,
                custom_id=answer_id(question.id, "text"),
                disabled=closed,
            )
        )
        return view
    for index, choice in enumerate(question.choices):
        view.add_item(
            discord.ui.Button(
                label=choice[:80],
                style=discord.ButtonStyle.secondary,
                custom_id=answer_id(question.id, index),
                row=index // _BUTTONS_PER_ROW,
                disabled=closed,
            )
        )
    return view


class QuestionRelay:
    """Posts and settles the questions of a node's workers in Discord.

    A fleet ``EventSink``; :meth:`serve` is its task.

    Args:
        spec: the ``[discord]`` table (the results channel, else the log channel).
        ledger: where the messages of questions are remembered.
        programs: the node's programs now (each one's ``relay``).
        retry_seconds: see :data:`RETRY_SECONDS`.
    """

    def __init__(
        self,
        spec: DiscordSpec,
        ledger: Ledger,
        programs: Callable[[], Mapping[str, ProgramSpec]],
        *,
        retry_seconds: float = RETRY_SECONDS,
    ) -> None:
        self.channel_id = spec.results_channel or spec.log_channel
        self._posts = QuestionPosts(ledger)
        self._programs = programs
        self._retry = retry_seconds
        self._waiting: collections.deque[QuestionAsked | QuestionClosed] = collections.deque()
        self._wake = anyio.Event()
        self.dropped = 0

    def deliver(self, event: Event) -> None:
        """Take a question event of a program that relays results; never blocks."""
        if not isinstance(event, QuestionAsked | QuestionClosed) or not self.channel_id:
            return
        spec = self._programs().get(event.question.program)
        if spec is None or spec.relay not in (Relay.RESULTS, Relay.ALL):
            return
        if len(self._waiting) >= MAX_WAITING:
            self._waiting.popleft()
            self.dropped += 1
            logger.warning("discord: a question event was dropped (%d waiting)", MAX_WAITING)
        self._waiting.append(event)
        self._wake.set()

    async def serve(
        self,
        current: Callable[[], discord.Client | None],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Post and edit question messages through ``current()``, the bridge's client.

        First settles the messages of questions that closed while no dsup or
        bridge could say so. Runs until cancelled.
        """
        task_status.started()
        client = await ready_client(current, self._retry)
        await self._settle_stale(client)
        while True:
            while not self._waiting:
                await self._wake.wait()
                self._wake = anyio.Event()
            event = self._waiting[0]
            for attempt in range(1, MAX_TRIES + 1):
                client = await ready_client(current, self._retry)
                try:
                    await self._show(client, event)
                    break
                except (discord.HTTPException, discord.ClientException) as exc:
                    logger.warning(
                        "discord: question %d not shown (try %d of %d): %s",
                        event.question.id,
                        attempt,
                        MAX_TRIES,
                        exc,
                    )
                    await anyio.sleep(self._retry)
            self._waiting.popleft()

    async def _show(self, client: discord.Client, event: QuestionAsked | QuestionClosed) -> None:
        question = event.question
        if isinstance(event, QuestionAsked):
            channel = await channel_of(client, self.channel_id)
            # A post is remembered whatever comes (its message must be edited later).
            with anyio.move_on_after(_POST_SECONDS, shield=True):
                message = await channel.send(
                    question_text(question),
                    view=question_view(question),
                    allowed_mentions=NO_MENTIONS,
                )
                await anyio.to_thread.run_sync(
                    self._posts.posted, question.id, self.channel_id, message.id
                )
            return
        where = await anyio.to_thread.run_sync(self._posts.message_of, question.id)
        if where is None:
            return  # never posted (relayed only since, or dropped)
        text = closed_text(question, event.status, event.answer, event.by, event.at)
        await _edit(client, where, text, question)
        await anyio.to_thread.run_sync(self._posts.settled, question.id)

    async def _settle_stale(self, client: discord.Client) -> None:
        """Edit the messages of questions that closed while nobody could say so."""
        for post in await anyio.to_thread.run_sync(self._posts.unsettled):
            text = closed_text(post.question, post.status, post.answer, post.by, post.closed_at)
            try:
                await _edit(client, (post.channel_id, post.message_id), text, post.question)
            except discord.NotFound:
                pass  # deleted by someone: nothing to settle
            except (discord.HTTPException, discord.ClientException) as exc:
                logger.warning("discord: question %d not settled: %s", post.question.id, exc)
                continue
            await anyio.to_thread.run_sync(self._posts.settled, post.question.id)


async def ready_client(
    current: Callable[[], discord.Client | None], retry_seconds: float
) -> discord.Client:
    """The bridge's client once it is connected (``current()`` checked every ``retry_seconds``)."""
    while True:
        client = current()
        if client is not None and client.is_ready() and not client.is_closed():
            return client
        await anyio.sleep(retry_seconds)


async def channel_of(client: discord.Client, channel_id: int) -> discord.abc.Messageable:
    """The channel ``channel_id``, from the cache or fetched."""
    channel = client.get_channel(channel_id) or await client.fetch_channel(channel_id)
    if not isinstance(channel, discord.abc.Messageable):
        raise discord.ClientException(f"channel {channel_id} takes no messages")
    return channel


async def _edit(
    client: discord.Client, where: tuple[int, int], text: str, question: Question
) -> None:
    channel = await channel_of(client, where[0])
    message = channel.get_partial_message(where[1])  # type: ignore[attr-defined]
    await message.edit(content=text, view=question_view(question, closed=True))


class _AnswerModal(discord.ui.Modal):
    """The text box of a free-text question."""

    def __init__(self, context: BridgeContext, question_id: int) -> None:
        super().__init__(
            title=f"Answer question {question_id}"[:45],
            timeout=900,
            custom_id=f"dsup:answertext:{question_id}",
        )
        self._context = context
        self._question_id = question_id
        self.text: discord.ui.TextInput[Any] = discord.ui.TextInput(
            label="Your answer",
            style=discord.TextStyle.paragraph,
            max_length=1000,
            custom_id="answer",
        )
        self.add_item(self.text)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await _answer(self._context, interaction, self._question_id, self.text.value)


async def _answer(
    context: BridgeContext, interaction: discord.Interaction, question_id: int, answer: str
) -> None:
    """Answer for the member behind ``interaction``; tell them privately how it went."""
    actor = actor_of(context.spec.access, interaction.user)
    await interaction.response.defer(ephemeral=True, thinking=True)
    try:
        report = await context.service.answer(actor, question_id, answer)
    except SupervisorError as exc:
        await interaction.followup.send(f"Not answered: {exc}", ephemeral=True)
        return
    await interaction.followup.send(
        f"You answered question {question_id}: **{_shown(report.answer)}**.",
        ephemeral=True,
        allowed_mentions=NO_MENTIONS,
    )


def _label(interaction: discord.Interaction, custom_id: str) -> str | None:
    """The label of the clicked button: the choice it gives."""
    message = interaction.message
    for row in message.components if message is not None else ():
        for item in getattr(row, "children", ()):
            if getattr(item, "custom_id", None) == custom_id:
                label = getattr(item, "label", None)
                return label if isinstance(label, str) else None
    return None


def answer_items(context: BridgeContext) -> tuple[type[discord.ui.DynamicItem[Any]], ...]:
    """The answer buttons' class, bound to ``context``: for ``add_dynamic_items``."""

    class AnswerButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=ANSWER_TEMPLATE):
        """One choice of one question, or the button opening a free-text box."""

        def __init__(self, question_id: int, choice: str) -> None:
            super().__init__(discord.ui.Button(custom_id=answer_id(question_id, choice)))
            self.question_id = question_id
            self.choice = choice

        @classmethod
        async def from_custom_id(
            cls,
            interaction: discord.Interaction,
            item: discord.ui.Item[Any],
            match: re.Match[str],
        ) -> AnswerButton:
            return cls(int(match["question"]), match["choice"])

        async def callback(self, interaction: discord.Interaction) -> None:
            if not is_ours(context, interaction):
                await refuse_elsewhere(interaction)
                return
            actor = actor_of(context.spec.access, interaction.user)
            if self.choice == "text" and actor.level >= AccessLevel.OPERATOR:
                await interaction.response.send_modal(_AnswerModal(context, self.question_id))
                return
            label = _label(interaction, answer_id(self.question_id, self.choice))
            # A refusal (a viewer, a stranger) goes through the surface too: audited.
            await _answer(context, interaction, self.question_id, label or "")

    return (AnswerButton,)
