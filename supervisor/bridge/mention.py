"""Commands by mention, for servers without slash commands: ``@dsup restart scraper``.

A mention carries its text even without the message-content intent; the words become the
same :class:`Ask` a slash command builds, with the same access checks and audit.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from supervisor.bridge.access import actor_of
from supervisor.bridge.perform import VERBS, Ask, discord_files, execute, usage
from supervisor.bridge.replies import Reply
from supervisor.bridge.respond import NO_MENTIONS, may
from supervisor.bridge.views import shutdown_view
from supervisor.commands.reports import MAX_TAIL_LINES

if TYPE_CHECKING:
    import discord

    from supervisor.bridge.context import BridgeContext
    from supervisor.events import Stream

logger = logging.getLogger(__name__)

_DEFAULT_FILESIZE = 10 * 1024 * 1024  # Discord's default, when the guild is not cached
_NEEDS_TARGET = ("start", "stop", "restart", "signal", "tail", "logs")


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

    The client passes only messages of the served guild, from people.
    """
    if me not in message.mentions:
        return
    mention = re.compile(rf"<@!?{me.id}>")
    asked = parse(mention.sub(" ", message.content).split())
    if isinstance(asked, str):
        await _reply(message, Reply(content=asked))
        return
    actor = actor_of(context.spec.access, message.author)
    if asked.verb == "shutdown" and may(actor, asked):
        await message.reply(
            "Stop every process and exit dsup? Nothing restarts it from Discord.",
            view=shutdown_view(),
            allowed_mentions=NO_MENTIONS,
            mention_author=False,
        )
        return
    # A message tells no attachment limit; the guild's boost tier does.
    limit = message.guild.filesize_limit if message.guild else _DEFAULT_FILESIZE
    await _reply(message, await execute(context, actor, asked, filesize_limit=limit))


async def _reply(message: discord.Message, reply: Reply) -> None:
    await message.reply(
        reply.content,
        files=discord_files(reply),
        allowed_mentions=NO_MENTIONS,
        mention_author=False,
    )
