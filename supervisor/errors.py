"""The exception hierarchy of dsup.

Every error carries its data in attributes and builds its message in ``__init__``: the subject,
the bad value and the fix; never a secret such as the bot token.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence


class SupervisorError(Exception):
    """Root of every error dsup raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem found in a config file.

    Attributes:
        key: dotted key path, e.g. ``programs.scraper.restart`` ("" for the file).
        message: what is wrong and what is accepted.
    """

    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}" if self.key else self.message


class ConfigError(SupervisorError, ValueError):
    """Raised when a config file cannot be read or fails validation.

    Holds every issue found, so a user fixes them all in one go.
    """

    def __init__(self, path: Path | str, issues: Sequence[ConfigIssue]) -> None:
        self.path = Path(path)
        self.issues = tuple(issues)
        lines = [f"{self.path}: {issue}" for issue in self.issues]
        super().__init__("\n".join(lines))


class SpawnError(SupervisorError, OSError):
    """Raised when a worker's process cannot be started (missing file, bad cwd...)."""

    def __init__(self, process: str, argv: Sequence[str], reason: str) -> None:
        self.process = process
        self.argv = tuple(argv)
        self.reason = reason
        super().__init__(f"process {process!r}: cannot start {list(argv)!r}: {reason}")


class UnknownProcess(SupervisorError, LookupError):
    """Raised when a command names no program, process or glob of this node."""

    def __init__(self, name: str, known: Sequence[str] = ()) -> None:
        self.name = name
        self.known = tuple(known)
        hint = f"; known: {', '.join(self.known)}" if self.known else ""
        super().__init__(f"no program or process matches {name!r}{hint}")


class InvalidTransition(SupervisorError):
    """Raised when a command asks a process for a state change it cannot make."""

    def __init__(self, process: str, current: str, wanted: str) -> None:
        self.process = process
        self.current = current
        self.wanted = wanted
        super().__init__(f"process {process!r} is {current}; cannot {wanted}")


class StateDirLocked(SupervisorError):
    """Raised when another live dsup holds the state directory."""

    def __init__(self, state_dir: Path, holder_pid: int | None) -> None:
        self.state_dir = state_dir
        self.holder_pid = holder_pid
        who = f" (pid {holder_pid})" if holder_pid else ""
        super().__init__(
            f"state_dir {str(state_dir)!r} is held by another running dsup{who}; "
            "stop it first or give this node its own state_dir"
        )


class StateDirUnsafe(SupervisorError, PermissionError):
    """Raised when the state directory cannot be trusted or used as it is.

    The state directory holds the control socket, the ledger of every pid dsup
    started and the instance id; one that other users can write to would let
    them make dsup signal arbitrary processes.
    """

    def __init__(self, state_dir: Path, reason: str, fix: str) -> None:
        self.state_dir = state_dir
        self.reason = reason
        super().__init__(f"state_dir {str(state_dir)!r} {reason}; {fix}")


class LedgerError(SupervisorError):
    """Raised when the ledger file cannot be used (newer schema, not a database)."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"ledger {str(path)!r}: {reason}")


class ControlProtocolError(SupervisorError):
    """Raised when a control-socket message is malformed or too large."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"control protocol error: {reason}")


class AccessDenied(SupervisorError, PermissionError):
    """Raised when an actor's access level is below what a command requires."""

    def __init__(self, actor: str, command: str, required: str, level: str) -> None:
        self.actor = actor
        self.command = command
        self.required = required
        self.level = level
        super().__init__(f"{actor!r} may not {command}: it needs {required} access and has {level}")


class InvalidArgument(SupervisorError, ValueError):
    """Raised when a command gets an argument it cannot use (a bad signal name...)."""

    def __init__(self, command: str, name: str, value: object, fix: str) -> None:
        self.command = command
        self.name = name
        self.value = value
        super().__init__(f"{command}: bad {name} {value!r}; {fix}")


class Unavailable(SupervisorError):
    """Raised when a command needs a part of the node that is not running (the bridge)."""

    def __init__(self, command: str, reason: str) -> None:
        self.command = command
        self.reason = reason
        super().__init__(f"{command}: {reason}")


class UnknownTask(SupervisorError, LookupError):
    """Raised when a command names a task id the store does not hold."""

    def __init__(self, task_id: int) -> None:
        self.task_id = task_id
        super().__init__(f"no task {task_id} (finished tasks are kept a while, then dropped)")


class NotATaskProgram(SupervisorError, LookupError):
    """Raised when a task is submitted to a program that takes no tasks."""

    def __init__(self, program: str, takers: Sequence[str]) -> None:
        self.program = program
        self.takers = tuple(takers)
        which = ", ".join(self.takers) if self.takers else "none (set tasks = ... on one)"
        super().__init__(f"program {program!r} takes no tasks; programs that do: {which}")


class TaskBacklogFull(SupervisorError):
    """Raised when a program already has ``task_backlog`` tasks waiting: the task is refused."""

    def __init__(self, program: str, backlog: int) -> None:
        self.program = program
        self.backlog = backlog
        super().__init__(
            f"program {program!r} already has {backlog} tasks waiting (task_backlog); "
            "task refused, try again once some are done"
        )


class TaskFinished(SupervisorError):
    """Raised when a task that has already ended is asked to change (cancelled)."""

    def __init__(self, task_id: int, state: str) -> None:
        self.task_id = task_id
        self.state = state
        super().__init__(f"task {task_id} is already {state}; nothing to cancel")


class UnknownQuestion(SupervisorError, LookupError):
    """Raised when an answer names no open question (answered already, timed out, gone)."""

    def __init__(self, question_id: int, open_ids: Sequence[int] = ()) -> None:
        self.question_id = question_id
        self.open_ids = tuple(open_ids)
        hint = (
            f"open now: {', '.join(map(str, self.open_ids))}"
            if self.open_ids
            else "no question is open (dsup ctl asks lists them)"
        )
        super().__init__(
            f"question {question_id} is not open (answered, timed out, or its asker is gone); "
            f"{hint}"
        )
