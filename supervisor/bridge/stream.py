"""Output of processes coalesced into chat messages: bounded, fair, fenced (no discord).

Each process gets a fair share of a message, in code blocks; output past the bound becomes one
"... 1.2 MiB of x omitted" note, so a flood costs a sum of sizes, never a count or a queue.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from supervisor.humanize import memory, printable
from supervisor.state.outbox import MAX_CONTENT_CHARS

if TYPE_CHECKING:
    from collections.abc import Mapping

MAX_LINE_CHARS = 300
"""A longer line is cut, saying so: a message shows many lines, not one."""
BUFFER_MESSAGES = 4
"""Messages' worth of lines that may wait before lines are omitted (shared by processes)."""
_FENCE_BREAK = re.compile(r"`(?=`)")
_BLOCK_OVERHEAD = len("▸ ``\n```\n\n```\n")


def neutralise(line: str, *, max_chars: int = MAX_LINE_CHARS) -> str:
    """``line`` safe inside a code block: printable, no run of backticks, cut if long."""
    text = printable(line[:max_chars])
    if len(line) > max_chars:
        text = f"{text}... (line cut: {len(line):,} characters)"
    return _FENCE_BREAK.sub("`\u200b", text)


def omitted_note(process: str, size: int) -> str:
    """The line that stands for output a message could not hold, by its size in bytes.

    Bytes, not lines: counting the lines of a flood would cost a pass over every
    byte omitted, while its size is known for free.
    """
    program = process.rpartition(":")[0] or process
    return f"... {memory(size)} of {process} omitted (see /logs {program})"


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
class _Waiting:
    """The lines of one process not yet in a message; ints are bytes omitted."""

    entries: deque[str | int] = field(default_factory=deque)
    chars: int = 0

    def omit(self, count: int) -> None:
        if self.entries and isinstance(self.entries[-1], int):
            self.entries[-1] += count
        else:
            self.entries.append(count)


class OutputStream:
    """Coalesces the output and state notes of one channel into messages.

    Args:
        max_chars: the content limit of one message.
        buffer_chars: characters that may wait, shared equally by the processes
            with lines waiting (lines beyond a share are counted as omitted).
        max_line_chars: longer lines are cut.
    """

    def __init__(
        self,
        *,
        max_chars: int = MAX_CONTENT_CHARS,
        buffer_chars: int = BUFFER_MESSAGES * MAX_CONTENT_CHARS,
        max_line_chars: int = MAX_LINE_CHARS,
    ) -> None:
        self.max_chars = max_chars
        self.buffer_chars = buffer_chars
        self.max_line_chars = max_line_chars
        self._waiting: dict[str, _Waiting] = {}
        self._notes: deque[str] = deque()
        self._is_full = False

    @property
    def waiting_chars(self) -> int:
        """Characters waiting, notes included (an estimate of the next messages)."""
        return sum(w.chars for w in self._waiting.values()) + sum(len(n) for n in self._notes)

    @property
    def is_full(self) -> bool:
        """True once lines were omitted for want of room, until the next message."""
        return self._is_full

    @property
    def has_notes(self) -> bool:
        """True when state notes wait (they go out without waiting for a full message)."""
        return bool(self._notes)

    def add(self, process: str, data: bytes, omitted: int = 0) -> None:
        """Take whole lines of ``process`` (raw bytes); past its share they are only sized.

        Each process with lines waiting holds at most an equal share of
        ``buffer_chars`` (a process joining trims the others' newest lines), so the
        stream stays bounded and close behind the output, however many flood it.
        Only the lines taken are decoded; what is left costs nothing but its size.

        Args:
            process: the process that wrote them.
            data: whole lines, each ending with a newline.
            omitted: bytes of output lost right after ``data``.
        """
        waiting = self._waiting.get(process)
        if waiting is None:
            waiting = self._waiting[process] = _Waiting()
            share = self.buffer_chars // len(self._waiting)
            for other in self._waiting.values():
                self._trim(other, share)
        share = self.buffer_chars // len(self._waiting)
        at = 0
        while at < len(data) and waiting.chars < share:  # bounded: a line each, up to a share
            end = data.find(b"\n", at)
            line = str(data[at:end], "utf-8", "replace")
            cost = self._cost(line)
            if waiting.chars + cost > share:
                break
            waiting.entries.append(line)
            waiting.chars += cost
            at = end + 1
        if at < len(data) or omitted:
            waiting.omit(len(data) - at + omitted)
            self._is_full = True

    def _trim(self, waiting: _Waiting, share: int) -> None:
        """Count the newest lines of ``waiting`` past ``share`` as omitted (a process joined)."""
        cut = 0
        while waiting.chars > share and waiting.entries:
            entry = waiting.entries.pop()
            if isinstance(entry, int):
                cut += entry
            else:
                waiting.chars -= self._cost(entry)
                cut += len(entry.encode()) + 1
        if cut:
            waiting.omit(cut)

    def _cost(self, line: str) -> int:
        """What a waiting line counts against the bound (a long one is cut when shown)."""
        return min(len(line), self.max_line_chars + 40) + 1

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
        """The next message: notes first, then each process's block, fairly; None if empty."""
        budget = self.max_chars
        parts: list[str] = []
        notes = bool(self._notes)
        self._is_full = False
        while self._notes and len(self._notes[0]) + 1 <= budget:
            note = self._notes.popleft()
            parts.append(note)
            budget -= len(note) + 1
        counts: dict[str, int] = {}
        order = [p for p, w in self._waiting.items() if w.entries]
        for left, process in zip(range(len(order), 0, -1), order, strict=True):
            share = budget // left
            block, shown = self._block(process, share, budget)
            if block:
                parts.append(block)
                budget -= len(block) + 1
                counts[process] = shown
        for process in order:
            # The next message starts with another process: fair when the budget is short.
            waiting = self._waiting.pop(process)
            if waiting.entries:
                self._waiting[process] = waiting
        if not parts:
            return None
        return Excerpt(content="\n".join(parts), counts=counts, has_notes=notes)

    def _block(self, process: str, share: int, budget: int) -> tuple[str, int]:
        """The code block of ``process`` within ``share`` (or its first line within ``budget``)."""
        waiting = self._waiting[process]
        room = share - _BLOCK_OVERHEAD - len(process)
        whole = budget - _BLOCK_OVERHEAD - len(process)
        taken: list[str] = []
        shown = 0
        while waiting.entries:
            entry = waiting.entries[0]
            if isinstance(entry, int):
                text = omitted_note(process, entry)
            else:
                text = neutralise(entry, max_chars=self.max_line_chars)
            cost = len(text) + 1
            if cost > (room if taken else whole):
                break
            waiting.entries.popleft()
            if isinstance(entry, str):
                waiting.chars -= self._cost(entry)
                shown += 1
            taken.append(text)
            room -= cost
        if not taken:
            return "", 0
        body = "\n".join(taken)
        return f"▸ `{process}`\n```\n{body}\n```", shown
