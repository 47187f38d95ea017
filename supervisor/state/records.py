"""The records the ledger stores and returns: process identities, runs, audit rows.

Kept apart from the storage, so the reaper and a run can name a process without sqlite.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

AuditSource = Literal["local", "discord"]


@dataclass(frozen=True, slots=True)
class ProcIdent:
    """The identity of a process: its pid AND its start time.

    A pid alone is not an identity: the kernel reuses pids, and dsup must never
    signal a stranger that got the pid of one of its dead children.

    Attributes:
        pid: process id.
        create_time: the process start time as psutil reports it (seconds since
            the epoch, float); equal for the same process across calls.
    """

    pid: int
    create_time: float


@dataclass(frozen=True, slots=True, kw_only=True)
class LeftoverProcess:
    """A process recorded in the ledger that may still be alive.

    Attributes:
        run_id: the run it belongs to.
        process: the process name of that run (``program:index``).
        ident: its recorded identity.
        is_main: True for the run's main process, False for a descendant.
    """

    run_id: str
    process: str
    ident: ProcIdent
    is_main: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRecord:
    """One run of one process, as recorded.

    Attributes:
        run_id: unique id of the run (the ``DSUP_RUN_ID`` marker).
        process: process name, ``program:index``.
        program: program name.
        pid: the main process's pid.
        create_time: the main process's create_time (see ``ProcIdent``).
        started_at: wall-clock start (display only).
        ended_at: wall-clock end, None while running or if dsup died first.
        exit_code: exit status when the run ended with ``exit()``.
        exit_signal: signal number when the run was killed by a signal.
        is_settled: True once nothing of the run can be alive any more.
    """

    run_id: str
    process: str
    program: str
    pid: int
    create_time: float
    started_at: float
    ended_at: float | None
    exit_code: int | None
    exit_signal: int | None
    is_settled: bool

    @property
    def ident(self) -> ProcIdent:
        """The identity of the run's main process."""
        return ProcIdent(self.pid, self.create_time)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditRecord:
    """One command recorded in the audit trail.

    Attributes:
        id: row id, increasing.
        at: wall-clock time of the command.
        actor: who (local user name or Discord user).
        source: ``local`` (control socket) or ``discord``.
        command: the command name (``stop``, ``restart``...).
        target: what it applied to (a process, program or glob; "" for none).
        outcome: ``ok``, ``denied``, ``error``...
        detail: free text (error message, number of processes affected).
    """

    id: int
    at: float
    actor: str
    source: AuditSource
    command: str
    target: str
    outcome: str
    detail: str
