"""Workers' questions in Discord: a message with a button per choice, answered once.

Posted and closed through the outbox (who answered what, or timed out, or gone); the buttons
are persistent (``dsup:answer:ID:N``), so a click after a restart still answers, audited.
"""

from __future__ import annotations

import collections
import json
import logging
import time
from typing import TYPE_CHECKING, Any

import anyio
import discord

from supervisor.bridge.access import actor_of
from supervisor.bridge.respond import NO_MENTIONS, is_ours, refuse_elsewhere
from supervisor.bridge.results import button
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
    from supervisor.state.outbox import Outbox

logger = logging.getLogger(__name__)

ANSWER_TEMPLATE = r"dsup:answer:(?P<question>[0-9]{1,18}):(?P<choice>[0-9]{1,2}|text)"
MAX_WAITING = 1000
"""Question events waiting to be written to the outbox; beyond, the oldest are dropped."""
_QUESTION_CHARS = 1500  # of the question text shown: the message has other lines too
_BUTTONS_PER_ROW = 5
_WRITE_SECONDS = 5.0  # the longest the last writes may hold up a shutdown


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


def question_buttons(question: Question, *, closed: bool = False) -> str:
    """A button per choice (an "Answer…" button opening a text box for free text).

    As an outbox row's ``attach`` (JSON): the buttons are built when the row is sent.
    """
    if question.choices is None:
        buttons = [
            button(
                "Answer…",
                answer_id(question.id, "text"),
                style=discord.ButtonStyle.primary,
                disabled=closed,
            )
        ]
    else:
        buttons = [
            button(
                choice[:80],
                answer_id(question.id, index),
                row=index // _BUTTONS_PER_ROW,
                disabled=closed,
            )
            for index, choice in enumerate(question.choices)
        ]
    return json.dumps({"buttons": buttons})


class QuestionRelay:
    """Posts and settles the questions of a node's workers in Discord, through the outbox.

    A fleet ``EventSink``; :meth:`serve` is its task. A question's message is an
    outbox row marked ``question:ID``; its close is an edit of that row (buttons
    disabled) marked ``question-closed:ID``, so each is queued once, also across
    restarts, and sent once whatever Discord does meanwhile.

    Args:
        spec: the ``[discord]`` table (the results channel, else the log channel).
        outbox: where the messages go.
        ledger: the questions (closed while nobody could say so).
        programs: the node's programs now (each one's ``relay``).
        wall: wall-clock seconds.
    """

    def __init__(
        self,
        spec: DiscordSpec,
        outbox: Outbox,
        ledger: Ledger,
        programs: Callable[[], Mapping[str, ProgramSpec]],
        *,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.channel_id = spec.results_channel or spec.log_channel
        self._outbox = outbox
        self._posts = QuestionPosts(ledger)
        self._programs = programs
        self._wall = wall
        self._waiting: collections.deque[QuestionAsked | QuestionClosed] = collections.deque()
        self._wake = anyio.Event()
        self._writing = anyio.Lock()
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

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Queue question messages and their ends in the outbox until cancelled.

        First settles the messages of questions that closed while no dsup could
        say so (run it after the fleet closed the questions the last dsup left
        open). When cancelled, queues what is still waiting (shielded, bounded).
        """
        await anyio.to_thread.run_sync(self._settle_stale)
        task_status.started()
        try:
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                await self.flush()
        finally:
            with anyio.move_on_after(_WRITE_SECONDS, shield=True):
                await self.flush()

    async def flush(self) -> None:
        """Write the question events waiting to the outbox (one write at a time, in order)."""
        async with self._writing:
            events = list(self._waiting)
            self._waiting.clear()
            if events:
                await anyio.to_thread.run_sync(self._queue, events)

    def _queue(self, events: list[QuestionAsked | QuestionClosed]) -> None:
        """Write the events' messages to the outbox (worker thread), each once."""
        for event in events:
            question = event.question
            if isinstance(event, QuestionAsked):
                if self._outbox.meta(asked_marker(question.id)) is None:
                    self._outbox.post(
                        self.channel_id,
                        "question",
                        question_text(question),
                        now=self._wall(),
                        marker=asked_marker(question.id),
                        attach=question_buttons(question),
                    )
                continue
            text = closed_text(question, event.status, event.answer, event.by, event.at)
            self._close(question, text)

    def _close(self, question: Question, text: str) -> None:
        """Edit a question's message into its end, once (nothing if it was never queued)."""
        row = self._outbox.meta(asked_marker(question.id))
        if row is None or self._outbox.meta(closed_marker(question.id)) is not None:
            return
        try:
            self._outbox.edit(
                int(row),
                text,
                now=self._wall(),
                attach=question_buttons(question, closed=True),
                marker=closed_marker(question.id),
            )
        except LookupError:  # pruned: thousands of messages ago
            logger.info("discord: question %d's message is too old to edit", question.id)

    def _settle_stale(self) -> None:
        """Queue the ends of questions that closed while nobody could say so."""
        for post in self._posts.unsettled():
            text = closed_text(post.question, post.status, post.answer, post.by, post.closed_at)
            self._close(post.question, text)


def asked_marker(question_id: int) -> str:
    """The outbox marker of the message that asks question ``question_id``."""
    return f"question:{question_id}"


def closed_marker(question_id: int) -> str:
    """The outbox marker of the edit that shows how question ``question_id`` ended."""
    return f"question-closed:{question_id}"


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
