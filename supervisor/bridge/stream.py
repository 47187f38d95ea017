"""Output of processes coalesced into chat messages: bounded, fair, fenced (no discord).

Each process gets a fair share of a message, in code blocks; output past the bound becomes one
"... N lines of x omitted" note, counted while little is omitted and estimated beyond, so a
flood costs a bounded count per message, never a pass over every byte or a queue.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from supervisor.humanize import ASCII_CONTROLS, memory, printable
from supervisor.output.framing import decode_lines
from supervisor.state.outbox import MAX_CONTENT_CHARS

if TYPE_CHECKING:
    from collections.abc import Mapping

    from supervisor.events import StateChanged

MAX_LINE_CHARS = 300
"""A longer line is cut, saying so: a message shows many lines, not one."""
BUFFER_MESSAGES = 4
"""Messages' worth of lines that may wait before lines are omitted (shared by processes);
once some are omitted, one message's worth (a flood is told in one message)."""
EXACT_BYTES = 256 * 1024
"""Omitted bytes whose lines are counted per message (a count costs ~0.3 ms per MB); past
them, omitted lines are estimated from the lines seen of their process."""
SHAPE_BYTES = 1024 * 1024
"""The lines seen of a process weigh in its estimates as the newest ~this many bytes."""
_FENCE_BREAK = re.compile(r"`(?=`)")
_BLOCK_OVERHEAD = len("▸ ``\n```\n\n```\n")
_NOTE_LINES, _NOTE_BYTES = 10**10, 10**12
"""Omitted output larger than any flood between two messages: its note is the longest."""
_NEUTRALISED = ASCII_CONTROLS + b"`"
"""Bytes a plain line is shown as it is without: ``neutralise`` may change a line with one
(a control byte, a run of backticks: stricter than needed, one backtick is kept)."""


def neutralise(line: str, *, max_chars: int = MAX_LINE_CHARS) -> str:
    """``line`` safe inside a code block: printable, no run of backticks, cut if long."""
    text = printable(line[:max_chars])
    if len(line) > max_chars:
        text = f"{text}... (line cut: {len(line):,} characters)"
    return _FENCE_BREAK.sub("`\u200b", text)


def omitted_note(process: str, lines: int, size: int, *, exact: bool = True) -> str:
    """The line that stands for output a message could not hold.

    Args:
        process: whose output it was.
        lines: how many lines (0 with ``exact`` False: no estimate, told by size).
        size: how many bytes.
        exact: ``lines`` were counted; else they are an estimate, said as one
            ("about", rounded to two figures) with the exact size beside it.
    """
    program = process.rpartition(":")[0] or process
    where = f"of {process} omitted (see /logs {program})"
    if exact:
        return f"... {lines:,} line{'' if lines == 1 else 's'} {where}"
    if not lines:
        return f"... {memory(size)} {where}"
    return f"... about {_two_figures(lines):,} lines ({memory(size)}) {where}"


def _two_figures(n: int) -> int:
    """``n`` rounded to two significant figures (21,347 -> 21,000)."""
    return n if n < 100 else round(n, 2 - len(str(n)))


def state_note(event: StateChanged) -> str:
    """The line that tells a state change among the output (``relay = "all"``)."""
    reason = f": {event.reason}" if event.reason else ""
    return f"<t:{int(event.at)}:T> `{event.process}` {event.old.value} → {event.new.value}{reason}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Excerpt:
    """One message's worth of output, ready for the outbox.

    Attributes:
        content: the message text.
        counts: lines it shows, per process (for the outbox's summaries).
        has_notes: it carries state changes, which are never dropped.
    """

    content: str
    counts: Mapping[str, int]
    has_notes: bool


@dataclass(slots=True)
class _Omitted:
    """Output a message could not hold: its bytes, and its lines where they were counted."""

    size: int = 0
    lines: int = 0
    """Lines counted, in ``size - uncounted`` of the bytes."""
    uncounted: int = 0
    """Bytes whose lines were not counted (past :data:`EXACT_BYTES`)."""


@dataclass(slots=True)
class _Plain:
    """Whole lines kept as raw bytes until shown: ASCII, none long enough to be cut, so each
    costs its bytes (newline included) and a join cuts them with one search, not a pop each."""

    data: bytes
    lines: int


@dataclass(slots=True)
class _Waiting:
    """The lines of one process not yet in a message, and what was omitted among them."""

    entries: deque[str | _Plain | _Omitted] = field(default_factory=deque)
    chars: int = 0

    def omit(self, size: int, lines: int, uncounted: int) -> None:
        last = self.entries[-1] if self.entries else None
        if not isinstance(last, _Omitted):
            last = _Omitted()
            self.entries.append(last)
        last.size += size
        last.lines += lines
        last.uncounted += uncounted


@dataclass(slots=True)
class _Shape:
    """Bytes and lines seen of one process lately: its mean line length, for estimates."""

    size: int = 0
    lines: int = 0

    def add(self, size: int, lines: int) -> None:
        self.size += size
        self.lines += lines
        if self.size > SHAPE_BYTES:  # older output weighs less: halve
            self.size //= 2
            self.lines //= 2

    def estimate(self, omitted: _Omitted) -> tuple[int, bool]:
        """The lines of ``omitted`` and whether that is exact (0, False: no estimate)."""
        if not omitted.uncounted:
            return omitted.lines, True
        if not self.lines:
            return 0, False
        guess = round(omitted.uncounted * self.lines / self.size)
        return omitted.lines + max(guess, 1), False


class OutputStream:
    """Coalesces the output and state notes of one channel into messages.

    Args:
        max_chars: the content limit of one message.
        buffer_chars: characters that may wait, shared equally by the processes
            with lines waiting (lines beyond a share are counted as omitted).
        max_line_chars: longer lines are cut.
        exact_bytes: omitted bytes whose lines are counted per message; the
            lines of the rest are estimated.
    """

    def __init__(
        self,
        *,
        max_chars: int = MAX_CONTENT_CHARS,
        buffer_chars: int = BUFFER_MESSAGES * MAX_CONTENT_CHARS,
        max_line_chars: int = MAX_LINE_CHARS,
        exact_bytes: int = EXACT_BYTES,
    ) -> None:
        self.max_chars = max_chars
        self.buffer_chars = buffer_chars
        self.max_line_chars = max_line_chars
        self.exact_bytes = exact_bytes
        self._waiting: dict[str, _Waiting] = {}
        self._shapes: dict[str, _Shape] = {}
        self._block_sizes: dict[str, int] = {}  # see _block_chars
        self._notes: deque[str] = deque()
        self._uncut = max_line_chars + 40  # a longer line costs this, not its length
        self._long_line = re.compile(rb"\n[^\n]{%d}" % (self._uncut + 1))
        self._cut_line = re.compile(rb"\n[^\n]{%d}" % (max_line_chars + 1))
        self._is_full = False
        # While full: what one message leaves for lines once every block's head, fences
        # and note are counted, and the processes with lines then (see _share).
        self._flood_room = 0
        self._flood_lined = 1
        self._counted = 0  # omitted bytes counted since the last message

    @property
    def waiting_chars(self) -> int:
        """Characters waiting, notes included (an estimate of the next messages)."""
        return sum(w.chars for w in self._waiting.values()) + sum(len(n) for n in self._notes)

    @property
    def is_full(self) -> bool:
        """True once lines were omitted for want of room, until the next message."""
        return self._is_full

    @property
    def holds_a_message(self) -> bool:
        """True when the next message is as full as it gets: a message's worth waits, or
        lines were omitted (nothing more is taken until a message is)."""
        return self._is_full or self.waiting_chars >= self.max_chars

    @property
    def has_notes(self) -> bool:
        """True when state notes wait (they go out without waiting for a full message)."""
        return bool(self._notes)

    @property
    def count_budget(self) -> int:
        """Omitted bytes whose lines are still counted before the next message.

        Past ``exact_bytes`` of them since the last message, omitted output is
        only sized and its lines estimated, so a flood costs no pass over every
        byte.
        """
        return max(0, self.exact_bytes - self._counted)

    def add(
        self,
        process: str,
        data: bytes,
        omitted: int = 0,
        omitted_lines: int = 0,
        uncounted: int = 0,
    ) -> None:
        """Take whole lines of ``process`` (raw bytes); past its share they are omitted.

        Each process with lines waiting holds at most an equal share of
        ``buffer_chars`` (a process joining trims the others' newest lines), so the
        stream stays bounded and close behind the output, however many flood it.
        Lines taken that are plain (ASCII, none long) wait as bytes, decoded only
        when shown; others are decoded as they come. The lines of what is left
        are counted within :attr:`count_budget`, else only its size is noted.

        Args:
            process: the process that wrote them.
            data: whole lines, each ending with a newline.
            omitted: bytes of output lost right after ``data``.
            omitted_lines: how many lines those were, in the first
                ``omitted - uncounted`` bytes.
            uncounted: the last bytes of ``omitted``, whose lines were not counted.
        """
        waiting = self._waiting.get(process)
        if waiting is None:
            waiting = self._waiting[process] = _Waiting()
            if self._is_full:
                self._flood_room -= self._block_chars(process)
            self._trim_all()
        if self._is_full and data and not waiting.chars:  # one more to share the room with
            self._flood_lined += 1
            self._trim_all()
        share = self._share()
        at, lines = self._take_sure(waiting, data, share)
        while at < len(data) and waiting.chars < share:  # bounded: a line each, up to a share
            end = data.find(b"\n", at)
            line = str(data[at:end], "utf-8", "replace")
            cost = self._cost(line)
            if waiting.chars + cost > share:
                break
            waiting.entries.append(line)
            waiting.chars += cost
            at = end + 1
            lines += 1
        shape = self._shapes.get(process)
        if shape is None:
            shape = self._shapes[process] = _Shape()
        shape.add(at, lines)
        if at < len(data) or omitted:
            self._omit(waiting, shape, (data, at), omitted, omitted_lines, uncounted)

    def omit(self, process: str, size: int) -> None:
        """Note ``size`` more bytes of ``process`` omitted, their lines not counted (a
        flood's reads sized only): as :meth:`add` with no line and all ``uncounted``, in a
        few steps once the process waits in a full stream."""
        waiting = self._waiting.get(process)
        if waiting is None or not self._is_full:
            self.add(process, b"", size, 0, size)
            return
        self._counted = max(self._counted, self.exact_bytes)
        waiting.omit(size, 0, size)

    def _take_sure(self, waiting: _Waiting, data: bytes, share: int) -> tuple[int, int]:
        """Take the leading lines of ``data`` that fit the share whatever they hold (a line
        costs at most its bytes); where the rest of ``data`` begins, and the lines taken.

        Plain lines stay bytes, costing their size; others are decoded and costed at once.
        """
        room = share - waiting.chars
        sure = data.rfind(b"\n", 0, room) + 1 if room > 0 else 0
        if not sure:
            return 0, 0
        head = data[:sure]
        if head.isascii() and head.find(b"\n") <= self._uncut and not self._long_line.search(head):
            lines = head.count(b"\n")
            waiting.entries.append(_Plain(head, lines))
            waiting.chars += sure
            return sure, lines
        taken = decode_lines(head)
        waiting.chars += sum(map(self._cost, taken))
        waiting.entries.extend(taken)
        return sure, len(taken)

    def _omit(
        self,
        waiting: _Waiting,
        shape: _Shape,
        left: tuple[bytes, int],
        omitted: int,
        lines: int,
        uncounted: int,
    ) -> None:
        """Note the lines ``left`` (data, from where) and ``omitted`` more bytes (``lines``
        in all but the last ``uncounted`` of those)."""
        self._counted += omitted - uncounted
        if uncounted:  # the count stopped short of its budget by less than a line
            self._counted = max(self._counted, self.exact_bytes)
        data, at = left
        rest = len(data) - at
        if rest and self.count_budget:
            lines += data.count(b"\n", at)
            self._counted += rest
        else:
            uncounted += rest
        waiting.omit(rest + omitted, lines, uncounted)
        shape.add(rest + omitted - uncounted, lines)
        if not self._is_full:  # a flood: what waits is cut to one message (see _share)
            self._is_full = True
            blocks = sum(map(self._block_chars, self._waiting))
            self._flood_room = self.max_chars - self.notes_chars - blocks
            self._flood_lined = sum(1 for w in self._waiting.values() if w.chars) or 1
            self._trim_all()

    def _share(self) -> int:
        """The characters of lines each process may keep waiting.

        An equal share of ``buffer_chars``, so a burst the channel can show within a
        few messages is shown whole. Once lines were omitted since the last message
        (output comes faster than the channel shows it), an equal share of one
        message instead, among the processes with lines waiting, once every block
        and its omitted note are counted: the next message tells the whole flood,
        and the one after shows what came after it, not lines the flood printed
        seconds before.
        """
        share = self.buffer_chars // len(self._waiting)
        if not self._is_full:
            return share
        return min(share, max(0, self._flood_room // self._flood_lined))

    def _block_chars(self, process: str) -> int:
        """The most a block of ``process`` holds besides its lines: its head, its fences
        and the longest omitted note (worked out once per process)."""
        chars = self._block_sizes.get(process)
        if chars is None:
            note = omitted_note(process, _NOTE_LINES, _NOTE_BYTES, exact=False)
            chars = self._block_sizes[process] = _BLOCK_OVERHEAD + len(process) + len(note) + 1
        return chars

    def _trim_all(self) -> None:
        """Trim every process to its share (one joined, or lines began to be omitted)."""
        share = self._share()
        for waiting in self._waiting.values():
            self._trim(waiting, share)

    def _trim(self, waiting: _Waiting, share: int) -> None:
        """Count the newest lines of ``waiting`` past ``share`` as omitted (a process joined)."""
        if waiting.chars <= share:  # the usual case: nothing to cut
            return
        cut = _Omitted()
        while waiting.chars > share and waiting.entries:  # bounded: an entry each
            entry = waiting.entries.pop()
            if isinstance(entry, _Plain):
                # Its newest lines until the rest fits: one search for the last newline kept.
                keep = entry.data.rfind(b"\n", 0, len(entry.data) - waiting.chars + share) + 1
                gone = entry.data.count(b"\n", keep) if keep else entry.lines
                waiting.chars -= len(entry.data) - keep
                cut.size += len(entry.data) - keep
                cut.lines += gone
                if keep:
                    waiting.entries.append(_Plain(entry.data[:keep], entry.lines - gone))
            elif isinstance(entry, _Omitted):
                cut.size += entry.size
                cut.lines += entry.lines
                cut.uncounted += entry.uncounted
            else:
                waiting.chars -= self._cost(entry)
                cut.size += len(entry.encode()) + 1
                cut.lines += 1
        if cut.size:
            waiting.omit(cut.size, cut.lines, cut.uncounted)

    def _fitting(self, data: bytes, room: int, whole: int | None) -> int:
        """Where the leading lines of a plain chunk that fit a block end, each costing its
        bytes: within ``room``, its first within ``whole`` when given (the block's first).

        -1 when a line up to the first that does not fit may be neutralised (a control
        byte, a backtick, a line to cut): it may cost something else when shown.
        """
        first = data.find(b"\n") + 1
        end = data.rfind(b"\n", 0, max(room, 0)) + 1
        if whole is not None:
            end = max(end, first) if first <= whole else 0
        stop = data.find(b"\n", end) + 1 or len(data)  # through the first line left out
        shown = data[:stop]
        if (
            first <= self.max_line_chars + 1
            and len(shown.translate(None, _NEUTRALISED)) == len(shown)
            and not self._cut_line.search(shown)
        ):
            return end
        return -1

    def _cost(self, line: str) -> int:
        """What a waiting line counts against the bound (a long one is cut when shown)."""
        return min(len(line), self._uncut) + 1

    @property
    def notes_chars(self) -> int:
        """Characters of the state notes waiting, a newline after each."""
        return sum(len(n) + 1 for n in self._notes)

    def add_note(self, text: str) -> None:
        """Queue a line of markdown (a state change) for the next message."""
        self._notes.append(text[: self.max_chars // 2])

    def take_notes(self, max_chars: int) -> str:
        """The oldest state notes that fit ``max_chars``, one a line (for another message)."""
        taken: list[str] = []
        room = max_chars
        while self._notes and len(self._notes[0]) + 1 <= room:  # bounded: a note each
            note = self._notes.popleft()
            taken.append(note)
            room -= len(note) + 1
        return "\n".join(taken)

    def take(self) -> Excerpt | None:
        """The next message: notes first, then each process's block, fairly; None if empty.

        Each process with lines waiting gets an equal share of what the notes
        leave, in turn (what one leaves unused goes to those after it); what the
        shares leave unused then goes, in the same order, to those with more
        waiting, so no line waits for a next message while this one has room.
        """
        budget = self.max_chars
        parts: list[str] = []
        notes = bool(self._notes)
        self._is_full = False
        self._counted = 0
        while self._notes and len(self._notes[0]) + 1 <= budget:
            note = self._notes.popleft()
            parts.append(note)
            budget -= len(note) + 1
        counts: dict[str, int] = {}
        blocks: dict[str, list[str]] = {}
        order = [p for p, w in self._waiting.items() if w.entries]
        for left, process in zip(range(len(order), 0, -1), order, strict=True):
            head = _BLOCK_OVERHEAD + len(process)  # a block costs this and its lines
            taken, shown, cost = self._show(process, budget // left - head, budget - head)
            if taken:
                blocks[process] = taken
                counts[process] = shown
                budget -= head + cost - 1
        for process, taken in blocks.items():  # what the shares left, to those with more
            if budget <= 0:
                break
            more, shown, cost = self._show(process, budget, None)
            taken.extend(more)
            counts[process] += shown
            budget -= cost
        for process in order:
            # The next message starts with another process: fair when the budget is short.
            waiting = self._waiting.pop(process)
            if waiting.entries:
                self._waiting[process] = waiting
        for process, taken in blocks.items():
            body = "\n".join(taken)
            parts.append(f"▸ `{process}`\n```\n{body}\n```")
        if not parts:
            return None
        return Excerpt(content="\n".join(parts), counts=counts, has_notes=notes)

    def _show(self, process: str, room: int, whole: int | None) -> tuple[list[str], int, int]:
        """The next lines (and omitted notes) of ``process`` that fit ``room`` characters,
        the first within ``whole`` when given (a block's first); how many lines they
        are, and what they cost (each its length and a newline)."""
        waiting = self._waiting[process]
        taken: list[str] = []
        shown = spent = 0
        while waiting.entries:
            entry = waiting.entries[0]
            first = whole if not taken else None
            if isinstance(entry, _Plain):
                end = self._fitting(entry.data, room - spent, first)
                if end < 0:  # something in it to neutralise: decoded, shown line by line
                    waiting.entries.popleft()
                    waiting.entries.extendleft(reversed(decode_lines(entry.data)))
                    continue
                if not end:
                    break
                lines = entry.data.count(b"\n", 0, end)
                taken.append(str(entry.data[: end - 1], "ascii"))
                waiting.chars -= end
                spent += end
                shown += lines
                waiting.entries.popleft()
                if end < len(entry.data):  # the next line does not fit
                    waiting.entries.appendleft(_Plain(entry.data[end:], entry.lines - lines))
                    break
                continue
            if isinstance(entry, _Omitted):
                lines, exact = self._shapes[process].estimate(entry)
                text = omitted_note(process, lines, entry.size, exact=exact)
            else:
                text = neutralise(entry, max_chars=self.max_line_chars)
            cost = len(text) + 1
            if cost > (room - spent if first is None else first):
                break
            waiting.entries.popleft()
            if isinstance(entry, str):
                waiting.chars -= self._cost(entry)
                shown += 1
            taken.append(text)
            spent += cost
        return taken, shown, spent
