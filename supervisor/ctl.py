"""``dsup ctl``: drive a running dsup from another terminal, over its control socket.

This module owns the ``ctl`` arguments, the client side of the control
protocol (a plain blocking socket: one request per connection), finding the
socket from a config (even one being edited) and the ``--json`` output; the
human output is ``ctl_render``'s. It does not own the protocol's server side (``control``)
nor what commands do (``commands``).

Exit codes: 0 ok (``status`` too, whatever states it shows), 1 the command
failed (unknown program, a process FATAL after start, refused), 2 usage
(including an argument the server refuses as ``InvalidArgument``), 3 no dsup
running there (socket missing or refusing connections).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import math
import os
import re
import socket
import sys
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

from supervisor import config_values, socketfile
from supervisor.config import DEFAULT_CONFIG, DEFAULT_STATE_DIR, load_config
from supervisor.ctl_render import render, render_logs
from supervisor.errors import ConfigError
from supervisor.humanize import plural
from supervisor.reports import MAX_TAIL_LINES
from supervisor.statedir import SOCKET_NAME, running_holder

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3

_MAX_RESPONSE_BYTES = 256 * 1024 * 1024
_MAX_TIMEOUT = 86400.0

JsonObject = dict[str, object]


class _NotRunning(Exception):
    """No dsup answers on the socket."""


class _Failed(Exception):
    """The server answered with an error."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class _Error(Exception):
    """What ``dsup ctl`` reports before it exits: an exit code, an error type, a message."""

    def __init__(self, code: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.kind = kind


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


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``ctl`` subcommand and its own subcommands to ``dsup``'s parser."""
    ctl = subparsers.add_parser(
        "ctl",
        help="control a running dsup (status, start, stop, restart, tail...)",
        description="Talk to a running dsup over its control socket (state_dir/control.sock).",
        epilog="exit codes: 0 ok, 1 command failed, 2 usage, 3 no dsup running there",
    )
    where = ctl.add_mutually_exclusive_group()
    where.add_argument(
        "-c", "--config", type=Path, help=f"config of the running dsup (default {DEFAULT_CONFIG})"
    )
    where.add_argument("--socket", type=Path, help="the control socket path itself")
    ctl.add_argument("--json", action="store_true", help="print results as JSON for scripts")
    ctl.add_argument(
        "--timeout",
        type=_timeout,
        default=300.0,
        metavar="SECONDS",
        help="give up waiting for an answer after this long (default 300)",
    )
    sub = ctl.add_subparsers(
        dest="ctl_command", metavar="COMMAND", required=True, parser_class=_StrictParser
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
    sig.add_argument("signal", type=_target, help="signal name or number (HUP, USR1, 15...)")
    tail = sub.add_parser("tail", help="print the last lines of a process's output")
    tail.add_argument("name", type=_target, help="program, program:N, glob or all")
    tail.add_argument("-n", "--lines", type=_count, default=20, help="how many lines (default 20)")
    tail.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    tail.add_argument("--stderr", action="store_true", help="the stderr log, not stdout")
    sub.add_parser("reload", help="re-read the config: add, remove and restart what changed")
    sub.add_parser("shutdown", help="stop every process and end dsup")


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
    try:
        if cmd == "tail" and cmd_args.get("follow"):
            return _follow(path, cmd_args, args)
        result = _call(path, cmd, cmd_args, timeout=args.timeout)
    except _NotRunning as exc:
        holder = running_holder(path.parent)
        if holder is None:
            message = f"no dsup running there: {exc}"
        else:
            message = (
                f"dsup (pid {holder}) holds {path.parent} but does not answer on its socket "
                f"({exc}); a deleted socket is re-created within seconds, try again"
            )
        raise _Error(EXIT_NOT_RUNNING, "NotRunning", message) from None
    except _Failed as exc:
        # A bad argument the server refused is a usage error, as if ours.
        code = EXIT_USAGE if exc.kind == "InvalidArgument" else EXIT_FAILED
        raise _Error(code, exc.kind, str(exc)) from None
    except TimeoutError:
        raise _Error(EXIT_FAILED, "Timeout", f"no answer within {args.timeout:g} s") from None
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise _Error(EXIT_FAILED, "OSError", f"{path}: {exc.strerror or exc}") from None
    if cmd == "tail":
        _note_tail_cap(cmd_args)
    text = json.dumps(result) if args.json else render(cmd, result)
    if text:
        print(text, flush=True)
    return EXIT_FAILED if _has_failures(result) else EXIT_OK


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
        return Path(args.socket)
    path = Path(args.config or DEFAULT_CONFIG).absolute()
    try:
        return load_config(path).supervisor.state_dir / SOCKET_NAME
    except ConfigError as exc:
        state_dir = _state_dir_only(path)
        if state_dir is None:
            raise _Error(EXIT_USAGE, "ConfigError", f"config error\n{exc}") from None
        print(
            f"dsup ctl: note: {path} does not validate ({plural(len(exc.issues), 'issue')}; "
            f"`dsup check` lists {'it' if len(exc.issues) == 1 else 'them'}); "
            f"using its state_dir {state_dir}",
            file=sys.stderr,
        )
        return state_dir / SOCKET_NAME


def _state_dir_only(path: Path) -> Path | None:
    """``[supervisor].state_dir`` of a config that does not validate, or None.

    Resolved as ``load_config`` does: relative to the file, ``.dsup`` beside it
    by default. A file that is not TOML (a half-made edit elsewhere in it) is
    read for its ``[supervisor]`` table alone.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError):
        try:
            data = tomllib.loads(_supervisor_section(text))
        except (tomllib.TOMLDecodeError, RecursionError):
            return None
    table = data.get("supervisor", {})
    if not isinstance(table, dict):
        return None
    base = path.resolve().parent
    if "state_dir" not in table:
        return base / DEFAULT_STATE_DIR
    try:
        return config_values.path(base)(table["state_dir"])
    except config_values.BadValue:
        return None


_TABLE_HEADER = re.compile(r"^\s*\[")
_SUPERVISOR_HEADER = re.compile(r"^\s*\[\s*supervisor\s*\]\s*(#.*)?$")


def _supervisor_section(text: str) -> str:
    """The ``[supervisor]`` table of a config as TOML text ("" when it has none)."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if _SUPERVISOR_HEADER.match(line)), None)
    if start is None:
        return ""
    end = next(
        (i for i in range(start + 1, len(lines)) if _TABLE_HEADER.match(lines[i])), len(lines)
    )
    return "\n".join(lines[start:end])


def _request(args: argparse.Namespace) -> tuple[str, JsonObject]:
    cmd: str = args.ctl_command
    if cmd in ("status", "start", "stop", "restart"):
        return cmd, {"target": args.name}
    if cmd == "signal":
        return cmd, {"target": args.name, "signal": args.signal}
    if cmd == "tail":
        stream = "stderr" if args.stderr else "stdout"
        return cmd, {
            "target": args.name,
            "lines": args.lines,
            "stream": stream,
            "follow": args.follow,
        }
    return cmd, {}


# -- the client ----------------------------------------------------------------


@contextlib.contextmanager
def _connect(path: Path, timeout: float) -> Iterator[tuple[socket.socket, _LineReader]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        try:
            with socketfile.address(path) as where:
                sock.connect(where)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise _NotRunning(f"{path}: {exc.strerror}") from None
        except OSError as exc:
            if exc.errno in (errno.ENOTSOCK, errno.ENOTDIR):
                raise _NotRunning(f"{path}: {exc.strerror}") from None
            raise
        yield sock, _LineReader(sock)
    finally:
        sock.close()


class _LineReader:
    """Reads JSON lines from a socket (bounded), without per-byte syscalls."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = bytearray()

    def message(self) -> JsonObject | None:
        """The next message, or None when the server closed the connection."""
        while (end := self._buf.find(b"\n")) < 0:
            if len(self._buf) > _MAX_RESPONSE_BYTES:
                raise _Failed("ControlProtocolError", "response too large")
            data = self._sock.recv(1024 * 1024)
            if not data:
                return None
            self._buf += data
        line = bytes(self._buf[:end])
        del self._buf[: end + 1]
        try:
            message = json.loads(line)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            raise _Failed("ControlProtocolError", f"unexpected response {line[:200]!r}")
        return message


def _send(sock: socket.socket, cmd: str, args: Mapping[str, object]) -> None:
    sock.sendall(json.dumps({"id": 1, "cmd": cmd, "args": args}).encode() + b"\n")


def _checked(message: JsonObject | None) -> JsonObject:
    if message is None:
        raise _NotRunning("dsup closed the connection")
    if message.get("ok") is not True:
        error = message.get("error")
        err = error if isinstance(error, dict) else {}
        raise _Failed(str(err.get("type", "Error")), str(err.get("message", message)))
    return message


def _call(path: Path, cmd: str, args: Mapping[str, object], *, timeout: float) -> object:
    """One request, one response: the ``result``."""
    with _connect(path, timeout) as (sock, reader):
        _send(sock, cmd, args)
        return _checked(reader.message()).get("result")


def _follow(path: Path, args: Mapping[str, object], opts: argparse.Namespace) -> int:
    """``tail -f``: print events until Ctrl-C (exit 0) or dsup goes away (exit 3)."""
    with _connect(path, opts.timeout) as (sock, reader):
        _send(sock, "tail", args)
        # The acknowledgement names the processes followed (or it is an error).
        followed = _checked(reader.message()).get("result")
        _note_tail_cap(args)
        many = isinstance(followed, list) and len(followed) > 1
        sock.settimeout(None)  # a quiet log may stay quiet for hours
        try:
            while (message := reader.message()) is not None:
                event = _checked(message).get("event")
                text = json.dumps(event) if opts.json else render_logs([event], many=many)
                print(text, flush=True)
        except KeyboardInterrupt:
            return EXIT_OK
        except _Failed as exc:  # dsup ended the follow: the processes are gone
            raise _Failed(exc.kind, f"tail -f ended: {exc}") from None
    raise _NotRunning("dsup closed the connection")


def _note_tail_cap(args: Mapping[str, object]) -> None:
    lines = args.get("lines")
    if isinstance(lines, int) and lines > MAX_TAIL_LINES:
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
