"""``dsup ctl``: drive a running dsup from another terminal, over its control socket.

Exit codes: 0 ok, 1 the command failed, 2 usage (also an argument the server refuses), 3 no
dsup running there. docs/control.md describes the commands.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from supervisor.commands.reports import MAX_TAIL_LINES
from supervisor.config.schema import DEFAULT_CONFIG, load_config, state_dir_of
from supervisor.control.client import Failed, JsonObject, NotRunning, call, checked, connect, send
from supervisor.control.ctl_args import DEFAULT_TIMEOUT
from supervisor.control.render import render, render_logs
from supervisor.control.socketfile import NotOurServer
from supervisor.errors import ConfigError
from supervisor.humanize import plural
from supervisor.state.statedir import (
    SOCKET_NAME,
    access_hint,
    running_holder,
    shutdown_marker,
    wait_released,
)

if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3

_ANSWER_MARGIN = 10.0  # seconds for an answer beyond a wait the server bounds itself


class _Error(Exception):
    """What ``dsup ctl`` reports before it exits: an exit code, an error type, a message."""

    def __init__(self, code: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.kind = kind


def main(args: argparse.Namespace) -> int:
    """Run one ``dsup ctl`` command and return its exit code.

    An error is printed to stderr; with ``--json`` also to stdout, as
    ``{"ok": false, "error": {"type": ..., "message": ...}}``.
    """
    try:
        return _run(args)
    except BrokenPipeError:  # `dsup ctl tail -f x | head`: the reader is done
        _silence_stdout()
        return EXIT_OK
    except _Error as exc:
        if args.json:
            error = {"type": exc.kind, "message": str(exc)}
            print(json.dumps({"ok": False, "error": error}), flush=True)
        print(f"dsup ctl: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace) -> int:
    path = _socket_path(args)
    cmd, cmd_args = _request(args)
    timeout = args.timeout or DEFAULT_TIMEOUT
    if cmd == "task" and args.wait:
        cmd_args["wait_seconds"] = timeout
        timeout += _ANSWER_MARGIN  # the answer comes once the wait is over
    try:
        if cmd == "tail" and cmd_args.get("follow"):
            return _follow(path, cmd_args, args, timeout)
        result = call(path, cmd, cmd_args, timeout=timeout)
    except NotRunning as exc:
        if cmd == "shutdown" and (pid := _shutting_down(path.parent)) is not None:
            return _already_shutting_down(path.parent, pid, args)
        raise _Error(EXIT_NOT_RUNNING, "NotRunning", _why_no_answer(path, exc)) from None
    except NotOurServer as exc:
        raise _Error(EXIT_FAILED, "NotOurServer", str(exc)) from None
    except Failed as exc:
        # A bad argument the server refused is a usage error, as if ours.
        code = EXIT_USAGE if exc.kind == "InvalidArgument" else EXIT_FAILED
        raise _Error(code, exc.kind, str(exc)) from None
    except TimeoutError:
        raise _Error(EXIT_FAILED, "Timeout", f"no answer within {timeout:g} s") from None
    except BrokenPipeError:
        raise
    except OSError as exc:
        why = f"{exc.strerror or exc}{access_hint(path)}"
        raise _Error(EXIT_FAILED, "OSError", f"{path}: {why}") from None
    if cmd == "tail" and isinstance(result, dict):
        _note_tail_cap(result.get("logs"))
    if cmd == "shutdown" and not args.no_wait:
        report = result if isinstance(result, dict) else {}
        wait = report.get("wait_seconds")
        seconds = args.timeout or (float(wait) if isinstance(wait, int | float) else timeout)
        if not args.json:
            print(f"{render(cmd, result)}; waiting for it to exit", flush=True)
        return _wait_for_exit(path.parent, report, seconds, as_json=args.json)
    if cmd == "task" and args.wait:
        return _task_result(result, as_json=args.json)
    text = json.dumps(result) if args.json else render(cmd, result)
    if text:
        print(text, flush=True)
    return EXIT_FAILED if _has_failures(result) else EXIT_OK


def _task_result(task: object, *, as_json: bool) -> int:
    """``task --wait``: the result on stdout and exit 0 when done; else why, and 1."""
    record = task if isinstance(task, dict) else {}
    state = record.get("state")
    if as_json:
        print(json.dumps(record), flush=True)
    elif state == "done":
        result = str(record.get("result", ""))
        print(result, end="" if result.endswith("\n") else "\n", flush=True)
    if state == "done":
        return EXIT_OK
    if state in ("queued", "running"):
        why = f"still {state} when the wait ended (--timeout); see dsup ctl tasks"
    else:
        why = f"{state}: {record.get('reason', '')}"
    print(f"dsup ctl: task {record.get('id')} {why}", file=sys.stderr)
    return EXIT_FAILED


def _shutting_down(state_dir: Path) -> int | None:
    """The pid of the live dsup of ``state_dir`` if it has begun its shutdown."""
    holder = running_holder(state_dir)
    return holder if holder is not None and shutdown_marker(state_dir) == holder else None


def _why_no_answer(path: Path, exc: NotRunning) -> str:
    """What to tell when no dsup answers on the socket at ``path``."""
    state_dir = path.parent
    holder = running_holder(state_dir)
    if holder is None:
        return f"no dsup running there: {exc}"
    if shutdown_marker(state_dir) == holder:
        return (
            f"dsup (pid {holder}) is shutting down: it is stopping its processes and "
            "takes no more commands"
        )
    if path.exists() and not path.is_socket():
        advice = (
            f"{path} is not a socket: dsup leaves someone else's file alone, and binds its "
            "socket again within seconds once the file is removed"
        )
    else:
        advice = "a deleted socket is re-created within seconds, try again"
    silent = f"dsup (pid {holder}) holds {state_dir} but does not answer on its socket"
    return f"{silent} ({exc}); {advice}"


def _already_shutting_down(state_dir: Path, pid: int, args: argparse.Namespace) -> int:
    """``shutdown`` of a dsup already shutting down: wait for its exit as for our own.

    dsup takes no more commands then, so ctl cannot ask how long its stops
    may take: the wait is bounded by ``--timeout`` (default 300 s).
    """
    report: JsonObject = {
        "node": None,
        "pid": pid,
        "wait_seconds": None,
        "already_shutting_down": True,
    }
    if not args.json:
        wait = "" if args.no_wait else "; waiting for it to exit"
        print(f"dsup (pid {pid}) is already shutting down{wait}", flush=True)
    if args.no_wait:
        if args.json:
            print(json.dumps(report), flush=True)
        return EXIT_OK
    return _wait_for_exit(state_dir, report, args.timeout or DEFAULT_TIMEOUT, as_json=args.json)


def _wait_for_exit(state_dir: Path, report: JsonObject, seconds: float, *, as_json: bool) -> int:
    """After ``shutdown``: wait until dsup has let go of ``state_dir``, for ``seconds`` at most."""
    pid = report.get("pid")
    if not wait_released(state_dir, seconds):
        raise _Error(
            EXIT_FAILED,
            "Timeout",
            f"dsup (pid {pid}) has not exited within {seconds:g} s; it may still be "
            "stopping a process (see its output)",
        )
    print(json.dumps(report) if as_json else f"dsup (pid {pid}) has exited", flush=True)
    return EXIT_OK


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the exit-time flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _socket_path(args: argparse.Namespace) -> Path:
    """The socket: ``--socket``, or ``control.sock`` in the config's state_dir.

    A config that does not validate (being edited before a ``reload``) still
    names its state_dir: then only ``[supervisor].state_dir`` is read.
    """
    if args.socket is not None:
        if args.config is not None:  # one before the verb, the other after it
            raise _Error(EXIT_USAGE, "Usage", "give -c/--config or --socket, not both")
        return Path(args.socket)
    path = Path(args.config or DEFAULT_CONFIG).absolute()
    try:
        return load_config(path).supervisor.state_dir / SOCKET_NAME
    except ConfigError as exc:
        state_dir = state_dir_of(path)
        if state_dir is None:
            raise _Error(EXIT_USAGE, "ConfigError", f"config error\n{exc}") from None
        print(
            f"dsup ctl: note: {path} does not validate ({plural(len(exc.issues), 'issue')}; "
            f"`dsup check` lists {'it' if len(exc.issues) == 1 else 'them'}); "
            f"using its state_dir {state_dir}",
            file=sys.stderr,
        )
        return state_dir / SOCKET_NAME


def _request(args: argparse.Namespace) -> tuple[str, JsonObject]:
    cmd: str = args.ctl_command
    if cmd in ("status", "start", "stop", "restart"):
        return cmd, {"target": args.name}
    if cmd == "signal":
        return cmd, {"target": args.name, "signal": args.signal}
    if cmd == "task":
        return cmd, {"program": args.program, "text": args.text}
    if cmd == "tasks":
        return cmd, {"limit": args.limit}
    if cmd == "task-cancel":
        return cmd, {"id": args.id}
    if cmd == "answer":
        return cmd, {"question": args.question, "answer": args.answer}
    if cmd == "results":
        return cmd, {"target": args.name, "count": args.count}
    if cmd == "tail":
        stream = "stderr" if args.stderr else "stdout"
        return cmd, {
            "target": args.name,
            "lines": args.lines,
            "stream": stream,
            "follow": args.follow,
        }
    return cmd, {}


def _follow(
    path: Path, args: Mapping[str, object], opts: argparse.Namespace, timeout: float
) -> int:
    """``tail -f``: print events until Ctrl-C or a shutdown (exit 0), or dsup goes away (3)."""
    with connect(path, timeout) as (sock, reader):
        send(sock, "tail", args)
        # The acknowledgement names the processes followed (or it is an error).
        followed = checked(reader.message()).get("result")
        many = isinstance(followed, list) and len(followed) > 1
        sock.settimeout(None)  # a quiet log may stay quiet for hours
        try:
            while (message := reader.message()) is not None:
                event = checked(message).get("event")
                _note_tail_cap([event])
                text = json.dumps(event) if opts.json else render_logs([event], many=many)
                print(text, flush=True)
        except KeyboardInterrupt:
            return EXIT_OK
        except Failed as exc:  # dsup ended the follow: the processes are gone
            raise Failed(exc.kind, f"tail -f ended: {exc}") from None
    pid = shutdown_marker(path.parent)
    if pid is None:
        raise NotRunning("dsup closed the connection")
    print(f"dsup ctl: tail -f ended: dsup (pid {pid}) is shutting down", file=sys.stderr)
    return EXIT_OK


def _note_tail_cap(logs: object) -> None:
    """Say so on stderr when a log of ``logs`` had more lines than ``tail`` gives."""
    listed = logs if isinstance(logs, list) else []
    if any(isinstance(log, dict) and log.get("capped") for log in listed):
        print(
            f"dsup ctl: note: tail gives at most {MAX_TAIL_LINES} lines per process; "
            "the log files in state_dir/logs keep the rest",
            file=sys.stderr,
        )


def _has_failures(result: object) -> bool:
    if not isinstance(result, dict):
        return False
    procs = result.get("processes")
    if result.get("command") is None or not isinstance(procs, list):
        return False  # a status report: its states are information, not failures
    return any(isinstance(p, dict) and p.get("outcome") == "failed" for p in procs)
