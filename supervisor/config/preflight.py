"""``dsup check``'s look at this machine: what would fail at spawn or stop time.

A missing cwd or executable, a ``stop_signal`` that cannot end a process, a ``restart`` with no
pause: warnings, not errors, as a config valid here may not be on another machine.
"""

from __future__ import annotations

import os
import shutil
import signal
from typing import TYPE_CHECKING

from supervisor.config.schema import RestartPolicy

if TYPE_CHECKING:
    from supervisor.config.schema import Config, ProgramSpec

# Signals whose default action does not end a process: it stops, or ignores them.
_SUSPENDS = frozenset({signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU})
_IGNORED = frozenset({signal.SIGCHLD, signal.SIGCONT, signal.SIGURG, signal.SIGWINCH})


def preflight(config: Config) -> list[str]:
    """Problems a spawn or a stop of each program would hit here, one line each (may be empty)."""
    return [
        problem
        for spec in config.programs.values()
        for problem in (*_spawn(spec), *_stop(spec), *_loop(spec))
    ] + _access(config)


def _access(config: Config) -> list[str]:
    """A bridge nobody may use: no role or user listed in ``[discord.access]``."""
    access = config.discord.access if config.discord else None
    if access is None or access.viewer or access.operator or access.admin:
        return []
    return [
        "discord.access: no role or user id is listed in viewer, operator or admin, so "
        "nobody may use the bot's commands; list role ids (or user ids) there"
    ]


def _spawn(spec: ProgramSpec) -> list[str]:
    """A missing cwd and a missing executable, both: one does not hide the other."""
    where = f"programs.{spec.name}"
    problems: list[str] = []
    has_cwd = spec.cwd.is_dir()
    if not has_cwd:
        problems.append(f"{where}.cwd: {str(spec.cwd)!r} is not a directory")
    executable = spec.command[0]
    # Like exec: a name with a slash is a path (relative to cwd), else looked up in PATH.
    if "/" in executable:
        path = spec.cwd / executable  # an absolute path stays itself
        if (has_cwd or executable.startswith("/")) and (
            not os.access(path, os.X_OK) or path.is_dir()
        ):
            problems.append(f"{where}.command: {str(path)!r} is not an executable file")
        return problems
    search = spec.env.get("PATH", os.environ.get("PATH", os.defpath))
    if shutil.which(executable, path=search) is None:
        problems.append(f"{where}.command: {executable!r} is not found in PATH")
    return problems


def _stop(spec: ProgramSpec) -> list[str]:
    sig = spec.stop_signal
    if sig is signal.SIGSTOP:
        does = "suspends a process and cannot be caught"
    elif sig in _SUSPENDS:
        does = "suspends a process that does not handle it"
    elif sig in _IGNORED:
        does = "is ignored by a process that does not handle it"
    else:
        return []
    return [
        f"programs.{spec.name}.stop_signal: {sig.name} {does}, so a stop waits "
        f"stop_timeout_seconds ({spec.stop_timeout_seconds:g} s), then kills with SIGKILL; "
        "use TERM, INT, QUIT or HUP"
    ]


def _loop(spec: ProgramSpec) -> list[str]:
    """A restart policy with the crash-loop guard off respawns a crashing process at once."""
    if spec.backoff_seconds > 0 or spec.restart is RestartPolicy.NEVER:
        return []
    return [
        f"programs.{spec.name}.backoff_seconds: 0 turns the crash-loop guard off, so "
        f'restart = "{spec.restart.value}" respawns a process that keeps exiting without '
        f"a pause, paced only by start_seconds ({spec.start_seconds:g} s); "
        "use 0.5 (the default) or more"
    ]
