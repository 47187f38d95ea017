"""Commands by mention, for servers without slash commands: ``@dsup restart scraper``.

A mention carries its text even without the message-content intent; the words become the
same :class:`Ask` a slash command builds, with the same access checks and audit. The
command has run: its answer is a reply queued in the outbox, so it arrives, once.
"""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING

import anyio

from supervisor import humanize
from supervisor.bridge.access import actor_of
from supervisor.bridge.perform import VERBS, Ask, execute, usage
from supervisor.bridge.replies import Attachment, Reply
from supervisor.bridge.respond import may
from supervisor.bridge.views import SHUTDOWN_QUESTION, shutdown_attach
from supervisor.commands.reports import MAX_TAIL_LINES
from supervisor.state.outbox import MAX_CONTENT_CHARS
from supervisor.state.outbox_files import MAX_FILES, MAX_ROW_BYTES

if TYPE_CHECKING:
    import discord

    from supervisor.bridge.context import BridgeContext
    from supervisor.events import Stream
    from supervisor.state.outbox import Outbox

logger = logging.getLogger(__name__)

_DEFAULT_FILESIZE = 10 * 1024 * 1024  # Discord's default, when the guild is not cached
_NEEDS_TARGET = ("start", "stop", "restart", "signal", "tail", "logs")
_ANSWER_FILE = "answer.txt"


def parse(words: list[str]) -> Ask | str:
    """The request the words after the mention make, or what is wrong with them."""
    if not words or words[0].lower() in ("help", "/help", "?"):
        return usage()
    word, *rest = words
    verb = next((v for v in VERBS if v == word.lower().removeprefix("/")), None)
    if verb is None:
        return f"I don't know {word[:40]!r}. {usage()}"
    if verb in _NEEDS_TARGET and not rest:
        return f"{verb} needs a name: a program, process (name:N), glob or all."
    stream: Stream = "stdout"
    if verb in ("tail", "logs") and rest[-1:] == ["stderr"]:
        stream, rest = "stderr", rest[:-1]
    expected = {"signal": 2, "tail": 2, "status": 1, "reload": 0, "shutdown": 0}.get(verb, 1)
    if len(rest) > expected:
        return f"Too many words for {verb}. {usage()}"
    target = rest[0] if rest else "all"
    if verb == "signal":
        if len(rest) < 2:
            return "signal needs a name and a signal: signal scraper HUP."
        return Ask(verb="signal", target=target, signal=rest[1])
    if verb == "tail":
        count = rest[1] if len(rest) > 1 else "20"
        if not count.isdigit() or not 1 <= int(count) <= MAX_TAIL_LINES:
            return f"tail takes 1 to {MAX_TAIL_LINES} lines, not {count[:20]!r}."
        return Ask(verb="tail", target=target, lines=int(count), stream=stream)
    return Ask(verb=verb, target=target, stream=stream)


async def handle_message(
    context: BridgeContext, me: discord.ClientUser, message: discord.Message
) -> None:
    """Run the command of a message that mentions the bot; ignore any other message.

    The client passes only messages of the served guild, from people. The answer is
    a reply queued in the outbox (with its files and buttons), so it reaches the
    asker once, across an outage or a restart of dsup. The message is claimed in
    the ledger before its command runs: delivered again (a resumed session), even
    while that command still runs, it runs nothing. A dsup killed in between
    leaves the command unanswered rather than run twice.
    """
    if me not in message.mentions:
        return
    outbox = context.outbox
    if not await anyio.to_thread.run_sync(outbox.claim_marker, _marker(message.id)):
        return
    mention = re.compile(rf"<@!?{me.id}>")
    asked = parse(mention.sub(" ", message.content).split())
    if isinstance(asked, str):
        await _queue(outbox, message, Reply(content=asked))
        return
    actor = actor_of(context.spec.access, message.author)
    if asked.verb == "shutdown" and may(actor, asked):
        await _queue(outbox, message, Reply(content=SHUTDOWN_QUESTION), attach=shutdown_attach())
        return
    # A message tells no attachment limit; the guild's boost tier does.
    limit = message.guild.filesize_limit if message.guild else _DEFAULT_FILESIZE
    reply = await execute(context, actor, asked, filesize_limit=limit)
    await _queue(outbox, message, reply, limit=limit)


async def _queue(
    outbox: Outbox,
    message: discord.Message,
    reply: Reply,
    *,
    attach: str = "",
    limit: int = _DEFAULT_FILESIZE,
) -> None:
    """Queue ``reply`` to ``message``: its files kept in the state directory first.

    Files that cannot be kept (a full disk, too many answers waiting) or sent
    (over ``limit`` bytes) are left out, and the answer says so.
    """
    channel, asked = message.channel.id, message.id

    def write() -> None:
        content, files, notes = _bounded(reply, limit)
        folder = ""
        if files:
            try:
                folder = outbox.files.keep([(f.name, f.data) for f in files])
            except OSError as exc:
                logger.warning("discord: the files of an answer cannot be kept: %s", exc)
                names = ", ".join(f.name for f in files)
                notes.append(f"Not attached ({names}): the node cannot keep it ({exc.strerror}).")
        text = "\n".join([content, *notes])
        outbox.post(
            channel,
            "reply",
            text,
            now=time.time(),
            reply_to=asked,
            attach=attach,
            files=folder,
            marker=_marker(asked),
        )

    await anyio.to_thread.run_sync(write)


def _bounded(reply: Reply, limit: int) -> tuple[str, list[Attachment], list[str]]:
    """The content, the files that fit one message, and notes on the others.

    A content that does not fit an outbox row with its notes (the marker takes a
    little of a message) goes whole as a file, as
    :func:`~supervisor.bridge.replies.fitted` does for one over a message.
    """
    kept: list[Attachment] = []
    notes: list[str] = []
    total = 0
    for file in reply.files:
        size = len(file.data)
        if len(kept) == MAX_FILES or size > limit or total + size > MAX_ROW_BYTES:
            notes.append(
                f"Not attached ({file.name}, {humanize.memory(size)}): over what one message "
                f"takes here ({humanize.memory(limit)} a file, {MAX_FILES} files)."
            )
            continue
        kept.append(file)
        total += size
    content = reply.content
    whole = content.encode()
    fits = len(kept) < MAX_FILES and total + len(whole) <= MAX_ROW_BYTES
    if len("\n".join([content, *notes])) > MAX_CONTENT_CHARS and fits:
        head = content.split("\n", 1)[0][:200]
        content = f"{head}\nthe whole answer is attached ({_ANSWER_FILE})"
        kept.insert(0, Attachment(_ANSWER_FILE, whole))
    return content, kept, notes


def _marker(message_id: int) -> str:
    """The outbox marker saying that the message ``message_id`` was answered."""
    return f"mention:{message_id}"
