"""``dsup ctl``'s arguments: its verbs and options, in ``dsup``'s parser.

Apart from ``ctl.py`` so that parsing ``dsup ctl`` does not load the client, its rendering
and its errors; ``dsup run`` does not build these at all (memory).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING

from supervisor.config.schema import DEFAULT_CONFIG

if TYPE_CHECKING:
    from collections.abc import Sequence

DEFAULT_TIMEOUT = 300.0
"""Seconds ``dsup ctl`` waits for an answer without ``--timeout``."""
_MAX_TIMEOUT = 86400.0


class _StrictParser(argparse.ArgumentParser):
    """A ``ctl`` subcommand parser: extra arguments are its error, shown with its usage.

    By default argparse hands them up to ``dsup``'s parser, which prints the
    top-level usage (``ctl status a b``).
    """

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extra = super().parse_known_args(args, namespace)
        if extra:
            self.error(f"unrecognized arguments: {' '.join(extra)}")
        return parsed, extra


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= _MAX_TIMEOUT:  # NaN fails too
        raise argparse.ArgumentTypeError(
            f"--timeout must be a number > 0 and at most {_MAX_TIMEOUT:g}, got {text!r}"
        )
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text!r}")
    return value


def _target(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("must not be empty; give a program, process, glob or all")
    return text


def _answer(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty; give one of the choices or a text")
    return text


def _add_global_options(parser: argparse.ArgumentParser) -> None:
    """``-c``, ``--socket``, ``--json`` and ``--timeout``: ctl's options, for any verb."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "-c", "--config", type=Path, help=f"config of the running dsup (default {DEFAULT_CONFIG})"
    )
    where.add_argument("--socket", type=Path, help="the control socket path itself")
    parser.add_argument("--json", action="store_true", help="print results as JSON for scripts")
    parser.add_argument(
        "--timeout",
        type=_timeout,
        metavar="SECONDS",
        help=(
            f"give up waiting for an answer after this long (default {DEFAULT_TIMEOUT:g}); "
            "for shutdown, also for dsup's exit (default: as long as its stops may take)"
        ),
    )


class _Verbs:
    """``ctl``'s subcommands, each also taking the global options after its name.

    There the options default to nothing at all (``SUPPRESS``), so a subcommand
    parser never overwrites what was given before the verb.
    """

    def __init__(self, action: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        self._action = action
        self._globals = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
        _add_global_options(self._globals)

    def add_parser(self, name: str, *, help: str) -> argparse.ArgumentParser:
        return self._action.add_parser(name, help=help, parents=[self._globals])


def add_arguments(ctl: argparse.ArgumentParser) -> None:
    """Add ``ctl``'s options and its own subcommands to ``dsup``'s ``ctl`` parser."""
    _add_global_options(ctl)
    sub = _Verbs(
        ctl.add_subparsers(
            dest="ctl_command", metavar="COMMAND", required=True, parser_class=_StrictParser
        )
    )
    status = sub.add_parser("status", help="a table of every process")
    status.add_argument(
        "name", nargs="?", default="all", type=_target, help="program, process, glob or all"
    )
    for name, text in (
        ("start", "start processes (waits until RUNNING or failed)"),
        ("stop", "stop processes"),
        ("restart", "restart processes"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("name", type=_target, help="program, program:N, glob (scrape*) or all")
    sig = sub.add_parser("signal", help="send a signal to running processes")
    sig.add_argument("name", type=_target, help="program, program:N, glob or all")
    sig.add_argument(
        "signal", type=_target, help="signal name or number (HUP, USR1, 15, RTMIN+3...)"
    )
    tail = sub.add_parser("tail", help="print the last lines of a process's output")
    tail.add_argument("name", type=_target, help="program, program:N, glob or all")
    tail.add_argument("-n", "--lines", type=_count, default=20, help="how many lines (default 20)")
    tail.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    tail.add_argument("--stderr", action="store_true", help="the stderr log, not stdout")
    task = sub.add_parser("task", help="queue a task for a program that takes tasks")
    task.add_argument("program", type=_target, help="a program with tasks = ...")
    task.add_argument("text", type=_target, help="the task (one argument: quote it)")
    task.add_argument(
        "--wait",
        action="store_true",
        help="wait for the task to end (up to --timeout); print its result, exit 0 if done",
    )
    tasks = sub.add_parser("tasks", help="the latest tasks and their states")
    tasks.add_argument("-n", "--limit", type=_count, default=20, help="how many (default 20)")
    cancel = sub.add_parser("task-cancel", help="cancel a queued or running task")
    cancel.add_argument("id", type=_count, help="the task id")
    sub.add_parser("asks", help="the questions workers are waiting on, with their ids")
    answer = sub.add_parser("answer", help="answer a worker's question (see asks)")
    answer.add_argument("question", type=_count, help="the question's id (from asks)")
    answer.add_argument("answer", type=_answer, help="one of its choices, or the text")
    results = sub.add_parser("results", help="the latest results workers reported")
    results.add_argument("name", type=_target, help="program, program:N, glob or all")
    results.add_argument(
        "-n", "--count", type=_count, default=10, help="how many (default 10, at most 100)"
    )
    sub.add_parser("reload", help="re-read the config: add, remove and restart what changed")
    sub.add_parser(
        "discord-sync", help="register the Discord slash commands again (changed or not)"
    )
    down = sub.add_parser("shutdown", help="stop every process and end dsup (waits for its exit)")
    down.add_argument(
        "--no-wait", action="store_true", help="return at once, without waiting for dsup to exit"
    )
