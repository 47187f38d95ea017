"""Who may run which command: access levels, the commands, and the actor asking.

One vocabulary for every front end, so ``dsup ctl`` and Discord grant the same levels; the
check itself happens once, in ``service``.
"""

from __future__ import annotations

import enum
import os
import pwd
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from supervisor.state.records import AuditSource


class AccessLevel(enum.IntEnum):
    """What an actor may do; each level includes the ones below it."""

    NONE = 0  # granted nothing (a Discord member no access list names)
    VIEWER = 1  # look: status, tail, asks, results
    OPERATOR = 2  # act on processes and tasks: start, stop, restart, signal, task, answer
    ADMIN = 3  # act on the node: reload, shutdown, discord-sync


class Command(enum.StrEnum):
    """The commands of the surface, each with the access level it requires."""

    STATUS = "status"
    TAIL = "tail"
    START = "start"
    STOP = "stop"
    RESTART = "restart"
    SIGNAL = "signal"
    RELOAD = "reload"
    SHUTDOWN = "shutdown"
    DISCORD_SYNC = "discord-sync"
    TASK = "task"
    TASKS = "tasks"
    TASK_CANCEL = "task-cancel"
    ASKS = "asks"
    ANSWER = "answer"
    RESULTS = "results"

    @property
    def required_level(self) -> AccessLevel:
        """The lowest access level allowed to run this command."""
        return _REQUIRED[self]


_REQUIRED = {
    Command.STATUS: AccessLevel.VIEWER,
    Command.TAIL: AccessLevel.VIEWER,
    Command.START: AccessLevel.OPERATOR,
    Command.STOP: AccessLevel.OPERATOR,
    Command.RESTART: AccessLevel.OPERATOR,
    Command.SIGNAL: AccessLevel.OPERATOR,
    Command.RELOAD: AccessLevel.ADMIN,
    Command.SHUTDOWN: AccessLevel.ADMIN,
    Command.DISCORD_SYNC: AccessLevel.ADMIN,
    Command.TASK: AccessLevel.OPERATOR,
    Command.TASKS: AccessLevel.VIEWER,
    Command.TASK_CANCEL: AccessLevel.OPERATOR,
    Command.ASKS: AccessLevel.VIEWER,
    Command.ANSWER: AccessLevel.OPERATOR,
    Command.RESULTS: AccessLevel.VIEWER,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Actor:
    """Who asks for a command.

    Attributes:
        name: the local user name or the Discord user (as shown in the audit).
        source: ``local`` (control socket) or ``discord``.
        level: what this actor may do.
    """

    name: str
    source: AuditSource
    level: AccessLevel

    @classmethod
    def local(cls, uid: int | None = None) -> Actor:
        """The local user ``uid`` (default: ours), with ADMIN access.

        Whoever can reach the control socket (mode 0600) owns the node, so a
        local actor is an admin; only the name is looked up.
        """
        uid = os.getuid() if uid is None else uid
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:  # a uid with no passwd entry (containers)
            import getpass  # here: rare, and a node without a local caller never needs it

            name = getpass.getuser() if uid == os.getuid() else f"uid {uid}"
        return cls(name=name, source="local", level=AccessLevel.ADMIN)
