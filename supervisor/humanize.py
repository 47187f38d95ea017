"""Short human forms of durations, sizes and CPU shares, and output lines made safe to show.

``dsup ctl``, the console and the bridge spell values alike; standard library only, so
``dsup ctl`` starts fast.
"""

from __future__ import annotations

import re

_CONTROL = r"\x00-\x08\x0a-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069"
"""C0 controls except tab, DEL, the C1 controls and the bidi controls (marks,
embeddings, overrides, isolates: the "Trojan Source" characters that make a
terminal show the rest of a line reversed). A regex character-class body."""

_UNSAFE = re.compile(f"[{_CONTROL}]")
_TOKEN = re.compile(
    r"(?P<sgr>\x1b\[[0-9;:]*m)"  # SGR: colours and text attributes
    r"|\x1b\[[0-?]*[ -/]*[@-~]"  # any other CSI: cursor moves, erase, modes
    r"|\x1b[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC, DCS, SOS, PM, APC strings
    r"|\x1b[ -/]*[0-~]"  # any other escape (or an unfinished one's introducer)
    f"|(?P<control>[{_CONTROL}])"
)


def printable(line: str, *, keep_color: bool = False) -> str:
    """A worker's output line made safe to write to a terminal.

    Colour (SGR) sequences are removed, or kept with ``keep_color``. Every other
    escape sequence (cursor moves, OSC titles and clipboard writes, DCS, ...) is
    removed. Any control character left (C0 except tab, DEL, C1) is shown as
    ``\\xNN``, so ``\\r`` reads ``\\x0d`` and a lone ESC ``\\x1b``; a bidi control
    as ``\\uNNNN`` (U+202E reads ``\\u202e``). One ``\\r`` at
    the end (a CRLF line ending) is dropped. A line with no control character
    is returned as is, without a regex pass.

    Args:
        line: one line of output, without its newline.
        keep_color: keep SGR sequences (for a view that renders them).

    Returns:
        The line with nothing a terminal would act on except tabs (and SGR).
    """
    if line.isprintable() or _UNSAFE.search(line) is None:
        return line
    if line.endswith("\r"):
        line = line[:-1]
    return _TOKEN.sub(_keep_sgr if keep_color else _drop_sgr, line)


ASCII_CONTROLS = bytes([*range(0x09), *range(0x0B, 0x20), 0x7F])
"""The ASCII bytes of ``_CONTROL``: every control byte except tab and newline."""
_ASCII_CONTROLS = [bytes([c]) for c in ASCII_CONTROLS]


def is_safe_bytes(data: bytes) -> bool:
    """Whether ASCII bytes hold no control byte but tabs and newlines (``printable`` keeps them).

    Each control byte is looked for with ``memchr`` (31 passes in C beat one
    ``translate``: about 3 times faster), so a batch of lines is checked
    without a call per line; False only means "look at each line with
    ``printable``".
    """
    return not any(control in data for control in _ASCII_CONTROLS)


def _drop_sgr(match: re.Match[str]) -> str:
    char = match["control"]
    if char is None:
        return ""
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _keep_sgr(match: re.Match[str]) -> str:
    return match["sgr"] or _drop_sgr(match)


def plural(count: int, noun: str) -> str:
    """``1 line``, ``2 lines``, ``3 processes``: a count with its noun (English -s/-es)."""
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {noun}es" if noun.endswith(("s", "x", "ch", "sh")) else f"{count} {noun}s"


def short_name(name: str, width: int) -> str:
    """``name`` in at most ``width`` cells, cut in the middle, keeping a ``:N`` suffix.

    Two processes of one long-named program stay apart (``cccc…cccc:0``,
    ``cccc…cccc:1``), and a program's head and tail both stay readable. A
    width too small for one character on each side of ``…`` and the suffix
    keeps what it can of the start.
    """
    if len(name) <= width:
        return name
    base, colon, index = name.rpartition(":")
    suffix = f":{index}" if colon and index.isdigit() else ""
    base = base if suffix else name
    room = width - len(suffix) - 1  # cells for the kept characters, "…" aside
    if room < 2:
        return name[: max(width - 1, 0)] + "…" if width > 0 else ""
    head = (room + 1) // 2
    return f"{base[:head]}…{base[len(base) - (room - head) :]}{suffix}"


def duration(seconds: float) -> str:
    """An uptime in its two largest units: ``59s``, ``1m05s``, ``2h03m``, ``3d04h``.

    Negative values (a clock step) show as ``0s``.
    """
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def memory(value: object) -> str:
    """A byte count in binary units (``512 B``, ``1.5 MiB``); ``-`` when not an int."""
    if not isinstance(value, int):
        return "-"
    if value < 1024:
        return f"{value} B"
    size = value / 1024
    for unit in ("KiB", "MiB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def cpu(value: object) -> str:
    """A CPU share (100 = one core) as ``12.5%``; ``-`` when not a number."""
    return f"{value:.1f}%" if isinstance(value, int | float) else "-"


def outcome(process: str, result: str, state: str, pid: object, message: str) -> str:
    """What a command did to one process: ``web:0: ok, RUNNING (pid 42)``, then why.

    ``dsup ctl`` and the Discord bridge say it alike.
    """
    shown_pid = f" (pid {pid})" if isinstance(pid, int) else ""
    why = f": {printable(message)}" if message else ""
    return f"{process}: {result}, {state}{shown_pid}{why}"


def progress_bar(fraction: float, cells: int = 10) -> str:
    """The percentage, then a bar of ``cells`` characters: `` 45% ████▌░░░░░``.

    The percentage comes first, so a cell cut short still shows it.
    """
    fraction = min(1.0, max(0.0, fraction))
    full, part = divmod(int(fraction * cells * 8), 8)  # floor: full only when done
    bar = "█" * full + ("▏▎▍▌▋▊▉"[part - 1] if part else "")
    return f"{int(fraction * 100):3d}% {bar.ljust(cells, '░')}"
