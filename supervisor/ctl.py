"""``dsup ctl``: drive a running dsup from another terminal, over its control socket.

This module owns the ``ctl`` arguments, the client side of the control
protocol (a plain blocking socket: one request per connection) and the human
and ``--json`` output. It does not own the protocol's server side (``control``)
nor what commands do (``commands``).

Exit codes: 0 ok (``status`` too, whatever states it shows), 1 the command
failed (unknown program, a process FATAL after start, refused), 2 usage,
3 no dsup running there (socket missing or refusing connections).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from supervisor import humanize
from supervisor.config import DEFAULT_CONFIG, load_config
from supervisor.errors import ConfigError
from supervisor.statedir import SOCKET_NAME

if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterator, Mapping, Sequence

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3

_MAX_RESPONSE_BYTES = 256 * 1024 * 1024
_ALIVE = ("STARTING", "RUNNING", "STOPPING")

JsonObject = dict[str, object]


class _NotRunning(Exception):
    """No dsup answers on the socket."""


class _Failed(Exception):
    """The server answered with an error."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


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
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="give up waiting for an answer after this long (default 300)",
    )
    sub = ctl.add_subparsers(dest="ctl_command", metavar="COMMAND", required=True)
    status = sub.add_parser("status", help="a table of every process")
    status.add_argument("name", nargs="?", default="all", help="program, process, glob or all")
    for name, text in (
        ("start", "start processes (waits until RUNNING or failed)"),
        ("stop", "stop processes"),
        ("restart", "restart processes"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("name", help="program, program:N, glob (scrape*) or all")
    sig = sub.add_parser("signal", help="send a signal to running processes")
    sig.add_argument("name", help="program, program:N, glob or all")
    sig.add_argument("signal", help="signal name or number (HUP, USR1, 15...)")
    tail = sub.add_parser("tail", help="print the last lines of a process's output")
    tail.add_argument("name", help="program, program:N, glob or all")
    tail.add_argument("-n", "--lines", type=int, default=20, help="how many lines (default 20)")
    tail.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    tail.add_argument("--stderr", action="store_true", help="the stderr log, not stdout")
    sub.add_parser("reload", help="re-read the config: add, remove and restart what changed")
    sub.add_parser("shutdown", help="stop every process and end dsup")


def main(args: argparse.Namespace) -> int:
    """Run one ``dsup ctl`` command and return its exit code."""
    try:
        path = _socket_path(args)
    except ConfigError as exc:
        print(f"dsup ctl: config error\n{exc}", file=sys.stderr)
        return EXIT_USAGE
    cmd, cmd_args = _request(args)
    try:
        if cmd == "tail" and cmd_args.get("follow"):
            return _follow(path, cmd_args, args)
        result = _call(path, cmd, cmd_args, timeout=args.timeout)
        text = json.dumps(result) if args.json else _render(cmd, result)
        if text:
            print(text, flush=True)
    except _NotRunning as exc:
        print(f"dsup ctl: no dsup running there: {exc}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    except _Failed as exc:
        print(f"dsup ctl: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except TimeoutError:
        print(f"dsup ctl: no answer within {args.timeout:g} s", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:  # `dsup ctl tail -f x | head`: the reader is done
        _silence_stdout()
        return EXIT_OK
    except OSError as exc:
        print(f"dsup ctl: {path}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    return EXIT_FAILED if _has_failures(result) else EXIT_OK


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the exit-time flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _socket_path(args: argparse.Namespace) -> Path:
    if args.socket is not None:
        return Path(args.socket)
    config = load_config(args.config or DEFAULT_CONFIG)
    return config.supervisor.state_dir / SOCKET_NAME


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
            sock.connect(os.fspath(path))
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
        many = len(_list(_checked(reader.message()).get("result"))) > 1
        sock.settimeout(None)  # a quiet log may stay quiet for hours
        try:
            while (message := reader.message()) is not None:
                event = _checked(message).get("event")
                text = json.dumps(event) if opts.json else _render_logs([event], many=many)
                print(text, flush=True)
        except KeyboardInterrupt:
            return EXIT_OK
    print("dsup ctl: dsup closed the connection", file=sys.stderr)
    return EXIT_NOT_RUNNING


# -- human output --------------------------------------------------------------


def _render(cmd: str, result: object) -> str:
    data = result if isinstance(result, dict) else {}
    if cmd == "status":
        return render_status(data)
    if cmd == "tail":
        logs = _list(data.get("logs"))
        return _render_logs(logs, many=len(logs) > 1)
    if cmd == "reload":
        return "\n".join(
            f"{key}: {', '.join(str(n) for n in _list(data.get(key))) or '-'}"
            for key in ("added", "removed", "changed", "unchanged")
        )
    if cmd == "shutdown":
        return f"node {data.get('node')!s}: stopping every process and exiting"
    return _render_actions(data)


def render_status(report: Mapping[str, object], *, now: float | None = None) -> str:
    """The ``status`` table: one aligned row per process.

    Args:
        report: a ``StatusReport`` as sent over the socket.
        now: wall-clock time for uptimes (default: the report's own time).
    """
    at = _number(report.get("at"), time.time()) if now is None else now
    rows = [("NAME", "STATE", "PID", "UPTIME", "RESTARTS", "LAST EXIT", "MEMORY", "CPU")]
    for proc in _list(report.get("processes")):
        info = proc if isinstance(proc, dict) else {}
        st = info.get("status")
        status = st if isinstance(st, dict) else {}
        state = str(status.get("state", "?"))
        started = status.get("started_at")
        alive = state in _ALIVE and isinstance(started, int | float)
        rows.append(
            (
                str(status.get("process", "?")),
                state,
                _opt(status.get("pid")),
                humanize.duration(at - float(started))
                if alive and isinstance(started, int | float)
                else "-",
                _opt(status.get("restarts")),
                _last_exit(status),
                humanize.memory(info.get("rss_bytes")),
                humanize.cpu(info.get("cpu_percent")),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _render_actions(data: Mapping[str, object]) -> str:
    lines = []
    for proc in _list(data.get("processes")):
        p = proc if isinstance(proc, dict) else {}
        pid = f" (pid {p['pid']})" if isinstance(p.get("pid"), int) else ""
        message = f": {p['message']}" if p.get("message") else ""
        lines.append(f"{p.get('process')}: {p.get('outcome')}, {p.get('state')}{pid}{message}")
    return "\n".join(lines)


def _render_logs(logs: Sequence[object], *, many: bool) -> str:
    out = []
    for item in logs:
        log = item if isinstance(item, dict) else {}
        prefix = f"{log.get('process')} | " if many else ""
        dropped = log.get("dropped")
        if isinstance(dropped, int) and dropped:
            out.append(f"{prefix}[{dropped} lines dropped: the log file has them]")
        out.extend(f"{prefix}{line}" for line in _list(log.get("lines")))
    return "\n".join(out)


def _has_failures(result: object) -> bool:
    if not isinstance(result, dict):
        return False
    procs = result.get("processes")
    if result.get("command") is None or not isinstance(procs, list):
        return False  # a status report: its states are information, not failures
    return any(isinstance(p, dict) and p.get("outcome") == "failed" for p in procs)


def _list(value: object) -> list[object]:
    return list(value) if isinstance(value, list) else []


def _number(value: object, default: float) -> float:
    return float(value) if isinstance(value, int | float) else default


def _opt(value: object) -> str:
    return "-" if value is None else str(value)


def _last_exit(status: Mapping[str, object]) -> str:
    code, sig = status.get("last_exit_code"), status.get("last_exit_signal")
    if isinstance(sig, int):
        return humanize.signal_name(sig)
    return f"exit {code}" if isinstance(code, int) else "-"
