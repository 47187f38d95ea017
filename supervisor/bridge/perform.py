"""One chat request run on the command surface, whatever asked: slash command, button, mention.

:func:`execute` runs an :class:`Ask` for the member's :class:`Actor` through the
``CommandService`` (access and audit are ``dsup ctl``'s) and makes a :class:`Reply`.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import anyio
import discord

from supervisor.bridge.logfile import pack_log
from supervisor.bridge.replies import Attachment, Reply, failure, file_stem, fitted, render
from supervisor.commands.access import Command
from supervisor.commands.reports import MAX_TAIL_LINES, LogFilesReport
from supervisor.errors import SupervisorError
from supervisor.state.outbox_files import MAX_FILES, MAX_ROW_BYTES

if TYPE_CHECKING:
    from supervisor.bridge.context import BridgeContext
    from supervisor.commands.access import Actor
    from supervisor.events import Stream

logger = logging.getLogger(__name__)

Verb = Literal["status", "start", "stop", "restart", "signal", "tail", "logs", "reload", "shutdown"]
_COMMAND: dict[Verb, Command] = {
    "status": Command.STATUS,
    "start": Command.START,
    "stop": Command.STOP,
    "restart": Command.RESTART,
    "signal": Command.SIGNAL,
    "tail": Command.TAIL,
    "logs": Command.TAIL,  # sending the log file is a look at the output, as tail is
    "reload": Command.RELOAD,
    "shutdown": Command.SHUTDOWN,
}
VERBS: tuple[Verb, ...] = tuple(_COMMAND)
"""What a member can ask, in the order help lists it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Ask:
    """A member's request, from a slash command, a button or a mention.

    Attributes:
        verb: what to do.
        target: the program, process, glob or ``all`` it names.
        signal: for ``signal``: its name or number.
        lines: for ``tail``: how many lines.
        stream: for ``tail`` and ``logs``: which log.
    """

    verb: Verb
    target: str = "all"
    signal: str = ""
    lines: int = 20
    stream: Stream = "stdout"

    @property
    def command(self) -> Command:
        """The command of the context this runs (and is audited as)."""
        return _COMMAND[self.verb]

    @property
    def title(self) -> str:
        """How the request reads in its answer: ``/signal web HUP``."""
        words: list[str] = [f"/{self.verb}"]
        if self.verb not in ("reload", "shutdown") and not (
            self.verb == "status" and self.target == "all"
        ):
            words.append(self.target)
        if self.verb == "signal":
            words.append(self.signal)
        if self.verb == "tail" and self.lines != 20:
            words.append(str(self.lines))
        if self.verb in ("tail", "logs") and self.stream == "stderr":
            words.append("stderr")
        return " ".join(words)


async def execute(context: BridgeContext, actor: Actor, ask: Ask, *, filesize_limit: int) -> Reply:
    """Run ``ask`` for ``actor``; the reply says what happened, or why nothing did.

    Args:
        context: the command context and access.
        actor: who asks (a refused actor is audited by the context).
        ask: the request.
        filesize_limit: the most bytes one attachment may have here.

    A cancelled request is cancelled (its audit row is still written); any other
    error becomes a polite reply, and an unexpected one is logged.
    """
    service = context.service
    try:
        if ask.verb == "logs":
            files = await service.log_files(actor, ask.target, stream=ask.stream)
            return await _logs(files, ask, filesize_limit)
        result: object
        if ask.verb == "status":
            result = await service.status(actor, ask.target)
        elif ask.verb == "tail":
            result = await service.tail(actor, ask.target, lines=ask.lines, stream=ask.stream)
        elif ask.verb == "signal":
            result = await service.signal(actor, ask.target, ask.signal)
        elif ask.verb == "reload":
            result = await service.reload(actor)
        elif ask.verb == "shutdown":
            result = await service.shutdown(actor)
        else:
            act = {"start": service.start, "stop": service.stop, "restart": service.restart}
            result = await act[ask.verb](actor, ask.target)
    except Exception as exc:
        if not isinstance(exc, SupervisorError):
            logger.exception("%s by %s failed", ask.title, actor.name)
        return failure(exc, title=ask.title)
    return render(result, title=ask.title)


async def _logs(report: LogFilesReport, ask: Ask, filesize_limit: int) -> Reply:
    """The log files as attachments, each packed to fit (at most MAX_FILES)."""
    sent = report.files[:MAX_FILES]
    limit = min(filesize_limit, MAX_ROW_BYTES // max(len(sent), 1))
    files: list[Attachment] = []
    lines: list[str] = []
    for log in sent:
        name = f"{file_stem(log.process.replace(':', '-'))}.{log.stream}.log"
        packed = await anyio.to_thread.run_sync(pack_log, log.path, name, limit)
        if packed.attachment is not None:
            files.append(packed.attachment)
        lines.append(f"{log.process}: {packed.note}" if packed.note else f"{log.process}: whole")
    left = len(report.files) - len(sent)
    if left:
        lines.append(f"and {left} more: a message holds {MAX_FILES} files; name fewer processes")
    reply = fitted(f"{ask.title}: {len(files)} attached", lines, "logs")
    return Reply(content=reply.content, files=(*files, *reply.files))


def discord_files(reply: Reply) -> list[discord.File]:
    """The reply's attachments as discord.py files."""
    return [discord.File(io.BytesIO(a.data), filename=a.name) for a in reply.files]


def usage() -> str:
    """What a member can ask, for a mention that asked nothing dsup knows."""
    return (
        "I understand: status [name], start name, stop name, restart name, "
        "signal name SIGNAL, tail name [lines], logs name, reload, shutdown "
        f"(tail gives at most {MAX_TAIL_LINES} lines)."
    )
