"""Helpers for the console tests: a program on a real pseudo-terminal, and what it shows.

``PtyRun`` runs a command with a new pseudo-terminal as its controlling terminal
(``setsid -c``), so the keys typed on the master side (Ctrl-C, Ctrl-Z) reach it
through the terminal driver, as they do from a real keyboard. ``screen`` replays
the bytes it wrote on a terminal model that knows the few controls rich uses.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from types import TracebackType

REPO = Path(__file__).resolve().parent.parent
DEADLINE = 20.0


def screen(raw: str, height: int | None = None) -> list[str]:
    """What a terminal shows after ``raw``: the few controls rich's live display uses.

    Handles CR, LF, cursor up (``ESC[nA``), erase line (``ESC[2K``) and ignores
    other CSI sequences (colours, cursor visibility). Without ``height``,
    scrollback is unbounded, so content that scrolled instead of being redrawn
    stays visible here. With it, the screen has ``height`` rows: a line feed on
    the last row scrolls the top row away, and only the visible rows (up to
    the cursor's) are returned.
    """
    lines: list[list[str]] = [[]]
    row = col = top = 0
    for m in re.finditer(r"\x1b\[([0-9;?]*)([A-Za-z])|\r|\n|[^\x1b\r\n]", raw):
        token = m.group(0)
        if m.group(2) == "A":
            row = max(top, row - int(m.group(1) or 1))
        elif m.group(2) == "K":
            lines[row] = []
        elif m.group(2):
            continue
        elif token == "\r":
            col = 0
        elif token == "\n":
            row += 1
            if row == len(lines):
                lines.append([])
            if height is not None and row - top >= height:
                top = row - height + 1
        else:
            cur = lines[row]
            cur.extend(" " * (col - len(cur)))
            cur[col : col + 1] = [token]
            col += 1
    return ["".join(chars).rstrip() for chars in lines[top:]]


class PtyRun:
    """``argv`` on a new ``rows`` x ``columns`` pseudo-terminal, its controlling terminal.

    Everything it writes is kept in ``raw``. Leaving the context ends it
    gracefully (SIGTERM and SIGCONT, so a dsup, even a stopped one, stops its
    workers) and SIGKILLs it only if that takes longer than ``DEADLINE``.
    """

    def __init__(self, argv: Sequence[str], *, rows: int, columns: int) -> None:
        import fcntl
        import termios

        self.raw = bytearray()
        self._master, slave = os.openpty()
        try:
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
            env = {**os.environ, "TERM": "xterm-256color", "PYTHONPATH": str(REPO)}
            env.pop("NO_COLOR", None)
            # The size is the terminal's: COLUMNS and LINES (pytest-xdist's workers set
            # 80 x 24) would override it for shutil.get_terminal_size and rich.
            env.pop("COLUMNS", None)
            env.pop("LINES", None)
            self.proc = subprocess.Popen(
                ["setsid", "--ctty", *argv], stdin=slave, stdout=slave, stderr=slave, env=env
            )
        except BaseException:
            os.close(self._master)
            raise
        finally:
            os.close(slave)

    @classmethod
    def dsup(cls, config: Path, *args: str, rows: int, columns: int) -> PtyRun:
        """``dsup run ARGS CONFIG`` as the foreground job of a shell on a new terminal.

        ``proc`` is then the shell (tests/workers/console_shell.py); ``job_pid``
        is dsup's pid once the shell has said so.
        """
        shell = [sys.executable, str(Path(__file__).parent / "workers" / "console_shell.py")]
        argv = [*shell, sys.executable, "-m", "supervisor", "run", *args, str(config)]
        run = cls(argv, rows=rows, columns=columns)
        try:
            run.read_until(lambda text: "in the foreground]" in text, "the job to start")
        except BaseException:
            run.__exit__(None, None, None)
            raise
        return run

    @property
    def job_pid(self) -> int:
        """The pid of the shell's job (``dsup``), from the shell's first line."""
        found = re.search(r"\[job (\d+) in the foreground\]", self.plain)
        assert found, self.text
        return int(found[1])

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.send_signal(signal.SIGCONT)  # in case it was stopped (Ctrl-Z)
                with contextlib.suppress(AssertionError):
                    self.wait_exit()
                if self.proc.poll() is None:
                    self.proc.kill()
            self.proc.wait(timeout=DEADLINE)
        finally:
            os.close(self._master)

    @property
    def text(self) -> str:
        """What it wrote so far, decoded."""
        return self.raw.decode(errors="replace")

    @property
    def plain(self) -> str:
        """What it wrote so far without control sequences (colours, cursor moves)."""
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", self.text)

    def type(self, keys: bytes) -> None:
        """Type ``keys`` on the terminal: ``b"\\x03"`` is Ctrl-C, ``b"\\x1a"`` Ctrl-Z."""
        os.write(self._master, keys)

    def read_until(
        self, done: Callable[[str], bool], what: str, *, seconds: float = DEADLINE
    ) -> None:
        """Read until ``done(self.plain)``; AssertionError (with the screen) if it never is."""
        deadline = time.monotonic() + seconds
        while not done(self.plain):
            if time.monotonic() > deadline:
                shown = "\n".join(screen(self.text))
                raise AssertionError(f"timed out waiting for {what}; it showed:\n{shown}")
            if not self._read() and not done(self.plain):
                raise AssertionError(f"the terminal closed before {what}:\n{self.text}")

    def wait_exit(self) -> int:
        """Read everything until the terminal closes, then return the exit code."""
        deadline = time.monotonic() + DEADLINE
        while self._read():
            if time.monotonic() > deadline:
                raise AssertionError("the program never closed its terminal")
        return self.proc.wait(timeout=DEADLINE)

    def _read(self) -> bool:
        """Read what it wrote within 0.1 s; False once the terminal has no writer left."""
        ready, _, _ = select.select([self._master], [], [], 0.1)
        if not ready:
            return True
        try:
            data = os.read(self._master, 65536)
        except OSError:  # EIO: the terminal's last writer is gone
            return False
        self.raw += data
        return bool(data)
