"""``tail`` and ``tail -f`` for the command surface: the last lines, and follows of live logs.

A follow runs one watcher per process into one bounded buffer, and ends by itself once every
process it follows has left the fleet (removed by a reload).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio

from supervisor.commands.follow_buffer import FollowBuffer
from supervisor.commands.reports import MAX_TAIL_LINES, LogFollow, LogLines
from supervisor.errors import InvalidArgument, UnknownProcess
from supervisor.output.logfile import log_paths
from supervisor.output.logread import log_mark, tail_lines, watch_log

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence
    from pathlib import Path

    from supervisor.events import Stream
    from supervisor.output.logread import LogMark
    from supervisor.process.fleet import Fleet
    from supervisor.process.slot import Slot

FOLLOW_BUFFER_BYTES = 4 * 1024 * 1024
"""The most bytes of lines one ``tail -f`` holds for a slow client before dropping."""

_DRAIN_SECONDS = 5.0  # how long a follow whose processes are gone waits for its reader


def tail_count(lines: int) -> int:
    """The lines one ``tail`` gives for ``lines`` asked: at most MAX_TAIL_LINES.

    Raises:
        InvalidArgument: ``lines`` is negative.
    """
    if lines < 0:
        raise InvalidArgument("tail", "lines", lines, "give a count >= 0")
    return min(lines, MAX_TAIL_LINES)


async def tail_one(log_dir: Path, slot: Slot, asked: int, stream: Stream) -> LogLines:
    """The last ``asked`` lines (at most MAX_TAIL_LINES) of one process's ``stream`` log.

    Read in a worker thread. When more were asked than the cap, one line more
    is read to tell whether the log had more (``capped``).

    Raises:
        InvalidArgument: ``asked`` is negative.
    """
    n = tail_count(asked)
    read = n + 1 if asked > n else n
    path = log_path(log_dir, slot, stream)
    got = await anyio.to_thread.run_sync(
        lambda: tail_lines(path, read, max_line_bytes=slot.spec.max_line_bytes)
    )
    return LogLines(
        process=slot.name, stream=stream, lines=tuple(got[len(got) - n :]), capped=len(got) > n
    )


@dataclass(frozen=True, slots=True)
class LogMarks:
    """Where a process's two logs ended at one moment (None: no file yet)."""

    stdout: LogMark | None
    stderr: LogMark | None


def log_marks(log_dir: Path, process: str) -> LogMarks:
    """Where the logs of ``process`` end now: two ``stat`` calls (fine on the event loop)."""
    out, err = log_paths(log_dir, process)
    return LogMarks(log_mark(out), log_mark(err))


def last_words(
    log_dir: Path,
    process: str,
    n: int,
    *,
    max_line_bytes: int,
    since: LogMarks | None,
    until: LogMarks,
) -> tuple[Stream, list[str]]:
    """The last ``n`` lines one run of ``process`` wrote: of stderr, or of stdout when none.

    The run wrote what its logs gained between ``since`` (its start; None:
    unknown, the whole log) and ``until`` (its exit). Blocking: call it
    through ``anyio.to_thread.run_sync``.
    """
    out, err = log_paths(log_dir, process)
    streams: tuple[tuple[Stream, Path, LogMark | None, LogMark | None], ...] = (
        ("stderr", err, since.stderr if since else None, until.stderr),
        ("stdout", out, since.stdout if since else None, until.stdout),
    )
    for stream, path, start, end in streams:
        if end is None:
            continue  # no such log yet: nothing written
        lines = tail_lines(path, n, max_line_bytes=max_line_bytes, since=start, until=end)
        if lines:
            return stream, lines
    return "stderr", []


class _EndingBuffer(FollowBuffer):
    """A follow's buffer whose iteration can end with an error: why the follow ended."""

    ended_by: Exception | None = None

    def end(self, why: Exception) -> None:
        """End the iteration with ``why`` raised to the reader."""
        self.ended_by = why
        self.close()

    async def __anext__(self) -> LogLines:
        try:
            return await super().__anext__()
        except StopAsyncIteration:
            if self.ended_by is not None:
                raise self.ended_by from None
            raise


@contextlib.asynccontextmanager
async def open_follow(
    fleet: Fleet,
    target: str,
    slots: Sequence[Slot],
    first: Sequence[LogLines],
    stream: Stream,
    *,
    poll_interval: float,
    buffer_bytes: int,
) -> AsyncIterator[LogFollow]:
    """Follow the ``stream`` logs of ``slots`` until the block exits.

    The chunks in ``first`` (each process's last lines) come first. Once no
    process followed is in the fleet any more, the follow hands over what its
    watchers read last and ends: iterating it raises ``UnknownProcess`` for
    ``target``.

    Args:
        fleet: the fleet the processes belong to.
        target: what the client asked to follow (for the final error).
        slots: the processes followed, in order.
        first: their initial lines, in the same order.
        stream: which log of each process.
        poll_interval: how often watchers and the end check look (seconds).
        buffer_bytes: the most bytes of lines held for a slow reader.
    """
    buffer = _EndingBuffer(buffer_bytes)
    try:
        async with anyio.create_task_group() as tg:
            for initial, slot in zip(first, slots, strict=True):
                if initial.lines:
                    buffer.put(initial)
                log = log_path(fleet.state.log_dir, slot, stream)
                tg.start_soon(_watch_one, log, slot, stream, buffer, poll_interval)
            names = {c.name for c in slots}
            tg.start_soon(_end_when_removed, fleet, target, names, buffer, poll_interval)
            yield LogFollow(processes=tuple(c.name for c in slots), lines=buffer)
            tg.cancel_scope.cancel("reader left")
    finally:
        buffer.close()  # releases what the consumer left unread


async def _watch_one(
    log: Path, slot: Slot, stream: Stream, buffer: FollowBuffer, poll: float
) -> None:
    """Hand over new lines of one log to ``buffer`` until cancelled; never blocks."""

    def deliver(lines: list[str], dropped: int) -> None:
        # ``dropped`` lines came before ``lines``: count them first, so that
        # put() hands them over ahead of these lines.
        buffer.drop(slot.name, stream, dropped)
        if lines:
            buffer.put(LogLines(process=slot.name, stream=stream, lines=tuple(lines)))

    await watch_log(
        log,
        deliver,
        max_line_bytes=slot.spec.max_line_bytes,
        room=buffer.room,
        poll_seconds=poll,
    )


async def _end_when_removed(
    fleet: Fleet, target: str, names: set[str], buffer: _EndingBuffer, poll: float
) -> None:
    """End the follow once none of ``names`` is in the fleet, after its last lines.

    Absent at two checks in a row, so a program a reload replaces (its
    processes removed, then added again) is still followed.
    """
    gone = 0
    while gone < 2:
        await anyio.sleep(poll)
        gone = gone + 1 if names.isdisjoint(c.name for c in fleet.processes()) else 0
    # The watchers read what the processes wrote last within one more poll;
    # the reader gets it before the end.
    await anyio.sleep(2 * poll)
    with anyio.move_on_after(_DRAIN_SECONDS):
        while buffer.buffered_bytes:  # noqa: ASYNC110 - the buffer has no "drained" event
            await anyio.sleep(poll)
    buffer.end(UnknownProcess(target, list(fleet.config.programs)))


def log_path(log_dir: Path, slot: Slot, stream: Stream) -> Path:
    """The current log file of ``slot``'s ``stream``."""
    return log_paths(log_dir, slot.name)[0 if stream == "stdout" else 1]
