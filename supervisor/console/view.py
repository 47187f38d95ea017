"""How the console's batches look: plain log lines, JSON lines, or a rich live table.

Every method of a view runs in a thread, one call at a time, so rendering never holds the loop.
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import heapq
import json
import logging
import os
import socket
import stat
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from supervisor import humanize, signals
from supervisor.events import (
    OrphansCleaned,
    ProgressReported,
    QuestionAsked,
    QuestionClosed,
    ResultReported,
    StateChanged,
    WorkerEvent,
    WorkerLogged,
)
from supervisor.output.framing import decode_lines
from supervisor.output.pump import grow_pipe

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence
    from typing import BinaryIO, TextIO

    Buffer = bytes | memoryview

    from supervisor.events import Stream
    from supervisor.process.status import ProcessStatus

logger = logging.getLogger(__name__)

RECENT_LINES = 200
"""Lines of recent output (and state changes, log records) the live view keeps."""

STREAM_MARK: dict[Stream, str] = {"stdout": "|", "stderr": "!"}


@dataclass(frozen=True, slots=True)
class Lines:
    """The accepted part of one ``OutputChunk``: whole lines, raw, each ending in a newline."""

    process: str
    stream: Stream
    data: bytes


@dataclass(frozen=True, slots=True)
class Dropped:
    """Output lines of one process (or state changes, process "") the console lost."""

    process: str
    count: int


@dataclass(frozen=True, slots=True)
class Logged:
    """One of dsup's own log records, captured instead of written to stderr."""

    level: str
    logger: str
    message: str

    def text(self) -> str:
        """One line for the live view: the message, after its level unless WARNING.

        WARNING is what dsup logs for the operator (``SIGINT: stopping every
        process (Ctrl-C again ...)``): a prefix and the logger's name would push
        the end of the message, often the hint, off a terminal row.
        """
        head = "" if self.level == "WARNING" else f"{self.level}: "
        return f"{head}{self.message}".replace("\n", " ")


@dataclass(frozen=True, slots=True)
class Rendered:
    """Bytes ready to write: a plain view formats on the event loop, its thread only writes."""

    buffers: list[Buffer]


Note = StateChanged | OrphansCleaned | Dropped | WorkerEvent
"""What the console shows as a note (with its time), not as a line of output."""
Item = tuple[float, "Note | Lines | Rendered"]


class Batch:
    """Items handed to a worker thread; taken exactly once, by it or by the final flush."""

    def __init__(self, items: list[Item]) -> None:
        self._items = items
        self._lock = threading.Lock()

    def claim(self) -> list[Item]:
        """Take the items; every later call gets an empty list."""
        with self._lock:
            items, self._items = self._items, []
        return items


class View:
    """Writes batches to the stream from worker threads, one call at a time."""

    def __init__(self, stream: TextIO, node: str) -> None:
        self._stream = stream
        self._node = node
        self._lock = threading.Lock()
        self._is_broken = False

    def show(
        self, batch: Batch, rows: Sequence[ProcessStatus], *, final: bool, timeout: float
    ) -> None:
        """Show a batch and the status rows; never raises for a broken stream.

        Args:
            batch: the items to show (claimed here, so a batch is shown once).
            rows: the status of every process (live view only).
            final: the last call: the live view leaves its final table behind.
            timeout: seconds to wait for a call still stuck in a write (-1: forever);
                on timeout nothing is shown.
        """
        if not self._lock.acquire(timeout=timeout):
            return
        try:
            items = batch.claim()
            if not self._is_broken:
                self._emit(items, rows, final=final)
        except OSError as exc:
            # The reader went away (EPIPE, a closed terminal): supervision goes on.
            self._is_broken = True
            logger.warning("console: cannot write to the terminal any more: %s", exc)
        finally:
            self._lock.release()

    def prepare(self, items: list[Item]) -> Sequence[Item]:
        """Do on the event loop what is cheaper there than in the thread (nothing by default)."""
        return items

    def _emit(self, items: list[Item], rows: Sequence[ProcessStatus], *, final: bool) -> None:
        raise NotImplementedError

    def capturing_logs(self) -> contextlib.AbstractContextManager[object]:
        """While running, log records the view shows itself are not written by handlers."""
        return contextlib.nullcontext()


class PlainView(View):
    """Log lines, or JSON lines, written in batches.

    Worker output is written as the bytes the worker wrote, prefixed per line,
    with no decoding: to a file or a pipe it is what the log file holds
    (control bytes included, as ``docker logs`` does). On a terminal every line
    is made printable first (``humanize.printable``), so a worker's escape
    sequences never reach it raw. JSON escapes what JSON needs.
    """

    def __init__(self, stream: TextIO, node: str, json_logs: bool) -> None:
        super().__init__(stream, node)
        self._is_json = json_logs
        self._escapes = isatty(stream)
        self._logs = LogCapture() if json_logs else None
        self._bytes = _utf8_buffer(stream)
        self._is_file = self._bytes is not None and _has_mode(stream, stat.S_ISREG)
        self._out: _Nonblocking | None = None
        if self._bytes is not None and _has_mode(stream, stat.S_ISFIFO):
            grow_pipe(stream.fileno())  # whoever reads us wakes up less often
            self._out = _Nonblocking.pipe(stream.fileno())
        elif self._bytes is not None and _has_mode(stream, stat.S_ISSOCK):
            self._out = _Nonblocking.socket(stream.fileno())  # journald's stdout stream

    @property
    def writes_on_loop(self) -> bool:
        """Whether batches are written on the event loop (a regular file, a pipe, a socket).

        A file: appending to the page cache costs less than a thread hand-off
        (as for the log files), so a file always keeps up. A pipe or a stream
        socket (systemd's journal): without blocking, as far as it has room, the
        rest when it is writable again (:attr:`wait_fd`); the reader's pace is
        then the only limit.
        """
        return self._is_file or self._out is not None

    @property
    def wait_fd(self) -> int | None:
        """The descriptor to wait on until a full pipe or socket is writable (None: a file)."""
        return None if self._out is None else self._out.fd

    def write_on_loop(self, buffers: deque[Buffer]) -> int:
        """Write from the left of ``buffers`` what the stream takes now, without blocking.

        What a full pipe or socket did not take stays in ``buffers``. A stream
        that is gone (EPIPE) is said once; everything is dropped from then on.

        Returns:
            The bytes taken from ``buffers`` (written, or dropped for good).
        """
        taken = 0
        if self._is_broken:
            taken = sum(map(len, buffers))
            buffers.clear()
            return taken
        try:
            if self._out is None:
                taken = sum(map(len, buffers))
                self._write(list(buffers))
                buffers.clear()
                return taken
            while buffers:
                head = buffers[0]
                n = self._out.send(head)
                taken += n
                if n < len(head):
                    buffers[0] = memoryview(head)[n:]
                    break
                buffers.popleft()
        except BlockingIOError:
            pass
        except OSError as exc:
            taken += sum(map(len, buffers))
            buffers.clear()
            if not self._is_broken:
                self._is_broken = True
                logger.warning("console: cannot write to the terminal any more: %s", exc)
        return taken

    def close(self) -> None:
        """Close the descriptor of its own, if any (the stream stays open)."""
        if self._out is not None:
            self._out.close()
            self._out = None

    def capturing_logs(self) -> contextlib.AbstractContextManager[object]:
        """With ``--json-logs``, dsup's log records join the JSON stream (``type`` log).

        A log shipper reading stdout then sees them instead of plain text on
        stderr (handlers writing to ``sys.stderr`` are muted meanwhile). Plain
        lines leave the log records on stderr.
        """
        if self._logs is None:
            return contextlib.nullcontext()
        return capturing(self._logs, lambda handler: handler.stream is sys.stderr)

    def prepare(self, items: list[Item]) -> list[tuple[float, Rendered]]:
        """Format on the event loop, with the log records captured meanwhile (JSON), in time order.

        Formatting is a ``replace`` per chunk of lines; done here, a writer
        thread only writes (and holds no GIL meanwhile).
        """
        rendered: Iterable[tuple[float, Rendered]] = (
            (at, self._render(at, item)) for at, item in items
        )
        if self._logs is not None:
            logged = ((at, Rendered([self._json_log(at, r)])) for at, r in self._logs.claim())
            rendered = heapq.merge(rendered, logged, key=lambda item: item[0])
        return list(rendered)

    def _render(self, at: float, item: Note | Lines | Rendered) -> Rendered:
        if isinstance(item, Rendered):
            return item
        return Rendered(self._json(at, item) if self._is_json else self._plain(at, item))

    def _emit(self, items: list[Item], rows: Sequence[ProcessStatus], *, final: bool) -> None:
        self._write([buffer for at, item in items for buffer in self._render(at, item).buffers])

    def _write(self, buffers: list[Buffer]) -> None:
        """Write in order: to the byte stream under a UTF-8 one, else decoded."""
        if not buffers:
            return
        if self._bytes is not None:
            self._stream.flush()  # nothing is written through it; flushed to be sure
            for buffer in buffers:
                self._bytes.write(buffer)
            self._bytes.flush()
        else:
            self._stream.write("".join(str(buffer, "utf-8", "replace") for buffer in buffers))
            self._stream.flush()

    def _plain(self, at: float, item: Note | Lines) -> list[Buffer]:
        if not isinstance(item, Lines):
            return [_plain_note(at, item).encode()]
        head = f"{item.process} {STREAM_MARK[item.stream]} ".encode()
        data = item.data
        if self._escapes and not (data.isascii() and humanize.is_safe_bytes(data)):
            lines = decode_lines(data)
            return ["".join(f"{head.decode()}{humanize.printable(x)}\n" for x in lines).encode()]
        # One replace for the whole batch; the prefix after the last newline is cut off.
        body = data.replace(b"\n", b"\n" + head)
        return [head, memoryview(body)[: len(body) - len(head)]]

    def _json_log(self, at: float, record: Logged) -> Buffer:
        time_ = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
        obj = {"time": time_, "node": self._node, "type": "log", "level": record.level}
        obj |= {"logger": record.logger, "message": record.message}
        return (json.dumps(obj, ensure_ascii=False) + "\n").encode()

    def _json(self, at: float, item: Note | Lines) -> list[Buffer]:
        time_ = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
        obj: dict[str, object] = {"time": time_, "node": self._node}
        match item:
            case StateChanged():
                obj |= {"type": "state", "process": item.process, **_state_fields(item)}
            case OrphansCleaned():
                obj |= {"type": "orphans_cleaned", "pids": item.pids, "reason": item.reason}
            case Lines():
                obj |= {"type": "output", "process": item.process, "stream": item.stream}
                # One object per line; the shared fields are encoded once per batch.
                head = json.dumps(obj, ensure_ascii=False)[:-1] + ', "line": '
                return _json_lines(head.encode(), item.data)
            case Dropped():
                kind = "lines" if item.process else "state_changes"
                obj |= {"type": "dropped", "process": item.process, kind: item.count}
            case _:
                obj |= _worker_fields(item)
        return [(json.dumps(obj, ensure_ascii=False) + "\n").encode()]


def _json_lines(head: bytes, data: bytes) -> list[Buffer]:
    """``{head}"line"}`` for every line of ``data``, with no decoding when it can be.

    Valid UTF-8 with nothing JSON escapes (no quote, backslash or control byte
    but the newlines: the usual log line) is its own JSON string, so every
    newline just becomes the end of one object and the start of the next.
    Other lines are decoded (invalid UTF-8 replaced) and encoded with
    ``json.dumps``: joined by newlines in one call when there is no backslash
    (an encoded line's own backslash could be followed by an ``n``), else one
    call per line.
    """
    if _is_json_safe(data):
        body = data.replace(b"\n", b'"}\n' + head + b'"')
        return [head, b'"', memoryview(body)[: len(body) - len(head) - 1]]
    text = str(data, "utf-8", "replace")[:-1]
    prefix = head.decode()
    if "\\" in text:
        encoded = "".join(
            f"{prefix}{json.dumps(x, ensure_ascii=False)}}}\n" for x in text.split("\n")
        )
    else:
        block = json.dumps(text, ensure_ascii=False).replace("\\n", f'"}}\n{prefix}"')
        encoded = f"{prefix}{block}}}\n"
    return [encoded.encode()]


_JSON_ESCAPED = [b'"', b"\\", *(bytes([c]) for c in range(0x20) if c != 0x0A)]
"""The bytes ``json.dumps`` escapes in UTF-8 text, besides the newline."""


def _is_json_safe(data: bytes) -> bool:
    """Whether lines are valid UTF-8 holding nothing JSON escapes: one ``memchr`` per byte value."""
    if not data.isascii():
        try:
            data.decode()
        except UnicodeDecodeError:
            return False
    return not any(byte in data for byte in _JSON_ESCAPED)


def _state_fields(event: StateChanged) -> dict[str, object]:
    return {
        "program": event.program,
        "old": event.old.value,
        "new": event.new.value,
        "pid": event.pid,
        "run_id": event.run_id,
        "exit_code": event.exit_code,
        "exit_signal": signals.name(event.exit_signal) if event.exit_signal else None,
        "reason": event.reason,
    }


def _worker_fields(item: WorkerEvent) -> dict[str, object]:
    """The JSON fields of a worker event (``--json-logs``)."""
    fields: dict[str, object]
    match item:
        case ProgressReported():
            p = item.progress
            fields = {"type": "progress", "process": item.process, "fraction": p.fraction}
            fields |= {"text": p.text, "done": p.done, "total": p.total}
        case WorkerLogged():
            fields = {"type": "worker_log", "process": item.process, "level": item.level}
            fields["text"] = item.text
        case ResultReported():
            r = item.result
            fields = {"type": "result", "process": r.process, "id": r.id, "text": r.text}
            fields |= {"data": json.loads(r.data) if r.data else None, "files": r.files}
        case QuestionAsked():
            q = item.question
            fields = {"type": "question", "process": q.process, "id": q.id, "text": q.text}
            fields |= {"choices": q.choices, "default": q.default, "timeout_at": q.timeout_at}
        case QuestionClosed():
            q = item.question
            fields = {"type": "question_closed", "process": q.process, "id": q.id}
            fields |= {"status": item.status, "answer": item.answer, "by": item.by}
    return fields


def _plain_note(at: float, item: Note) -> str:
    """A note as a plain line: a drop count of a process, or a timed line."""
    if isinstance(item, Dropped) and item.process:
        return f"{item.process} [{humanize.plural(item.count, 'line')} dropped]\n"
    return f"{clock(at)} {humanize.printable(describe(item))}\n"


def _utf8_buffer(stream: TextIO) -> BinaryIO | None:
    """The byte stream under ``stream`` when it encodes UTF-8 (stdout to a file or pipe)."""
    buffer: BinaryIO | None = getattr(stream, "buffer", None)
    try:
        utf8 = codecs.lookup(stream.encoding).name == "utf-8"
    except (AttributeError, LookupError, TypeError):
        return None
    return buffer if utf8 else None


def describe(item: Note) -> str:
    """A state change, orphan cleanup, lost state changes or worker event, in words."""
    match item:
        case StateChanged():
            text = f"{item.process} {item.old.value} -> {item.new.value}"
            if item.pid is not None:
                text += f" pid {item.pid}"
            if item.exit_code is not None:
                text += f" exit {item.exit_code}"
            if item.exit_signal:
                text += f" signal {signals.name(item.exit_signal)}"
            return text + (f" ({item.reason})" if item.reason else "")
        case OrphansCleaned():
            pids = ", ".join(map(str, item.pids[:20])) + (", ..." if len(item.pids) > 20 else "")
            cleaned = humanize.plural(len(item.pids), "orphan process")
            return f"dsup cleaned {cleaned} ({item.reason}): pids {pids}"
        case Dropped():
            return f"dsup [{humanize.plural(item.count, 'state change')} dropped]"
        case _:
            return describe_worker(item)


def describe_worker(item: WorkerEvent) -> str:
    """A worker event in words, beginning with the process (no time)."""
    match item:
        case ProgressReported():
            p = item.progress
            return f"{item.process} {humanize.progress_bar(p.fraction)} {p.text}".rstrip()
        case WorkerLogged():
            return f"{item.process} [{item.level}] {item.text}"
        case ResultReported():
            r = item.result
            parts = [r.text, r.data or "", ", ".join(r.files)]
            return f"{r.process} result {r.id}: " + " ".join(p for p in parts if p)
        case QuestionAsked():
            q = item.question
            offered = f" [{'/'.join(q.choices)}]" if q.choices else " [free text]"
            how = "dsup ctl answer {} {}".format(q.id, "CHOICE" if q.choices else "TEXT")
            return f"{q.process} asks #{q.id}: {q.text}{offered} ({how})"
        case QuestionClosed():
            q = item.question
            if item.status == "answered":
                outcome = f"answered {item.answer!r} by {item.by}"
            elif item.status == "timeout":
                outcome = "timed out" + (f", default {item.answer!r}" if item.answer else "")
            else:
                outcome = "closed: its asker is gone"
            return f"{q.process} question #{q.id} {outcome}"


def clock(at: float) -> str:
    """``at`` (seconds since the epoch) as local HH:MM:SS."""
    return time.strftime("%H:%M:%S", time.localtime(at))


class LogCapture(logging.Filter):
    """Keeps log records (bounded) instead of letting a handler write them."""

    def __init__(self) -> None:
        super().__init__()
        self._records: deque[tuple[float, Logged]] = deque(maxlen=RECENT_LINES)
        self._lock = threading.Lock()
        self.on_record: Callable[[], None] | None = None
        """Called after each record is kept, in the thread that logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            message += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
        with self._lock:
            self._records.append((record.created, Logged(record.levelname, record.name, message)))
        if self.on_record is not None:
            self.on_record()
        return False

    def claim(self) -> list[tuple[float, Logged]]:
        with self._lock:
            records = list(self._records)
            self._records.clear()
        return records


@contextlib.contextmanager
def capturing(
    capture: LogCapture, wanted: Callable[[logging.StreamHandler[TextIO]], bool]
) -> Iterator[object]:
    """Route the records of the root logger's wanted stream handlers into ``capture``."""
    handlers = [
        h
        for h in logging.getLogger().handlers
        if isinstance(h, logging.StreamHandler) and wanted(h)
    ]
    for handler in handlers:
        handler.addFilter(capture)
    try:
        yield capture
    finally:
        for handler in handlers:
            handler.removeFilter(capture)


class _Nonblocking:
    """Non-blocking writes to dsup's stdout, which itself stays blocking.

    ``O_NONBLOCK`` belongs to an open file description, which dsup's stdout may
    share with its stderr (``2>&1``) or a shell: setting it there would make
    their writes fail. A pipe is opened anew through ``/proc/self/fd`` (a
    description of its own); a socket is sent to with ``MSG_DONTWAIT``.
    """

    def __init__(self, fd: int, send: Callable[[Buffer], int], close: Callable[[], None]) -> None:
        self.fd = fd
        self.send = send
        self.close = close

    @classmethod
    def pipe(cls, fd: int) -> _Nonblocking | None:
        """A non-blocking description of the pipe at ``fd``; None where there is none."""
        try:
            own = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            logger.debug("console: no non-blocking stdout (%s): writes go through a thread", exc)
            return None
        return cls(own, functools.partial(os.write, own), functools.partial(os.close, own))

    @classmethod
    def socket(cls, fd: int) -> _Nonblocking | None:
        """Sends with ``MSG_DONTWAIT`` to the stream socket at ``fd``; None for another kind."""
        sock = socket.socket(fileno=os.dup(fd))
        if sock.type != socket.SOCK_STREAM:
            sock.close()
            return None
        return cls(sock.fileno(), functools.partial(_send_nowait, sock), sock.close)


def _send_nowait(sock: socket.socket, data: Buffer) -> int:
    return sock.send(data, socket.MSG_DONTWAIT)


def _has_mode(stream: TextIO, check: Callable[[int], bool]) -> bool:
    try:
        return check(os.fstat(stream.fileno()).st_mode)
    except (OSError, ValueError):
        return False


def isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (OSError, ValueError):
        return False
