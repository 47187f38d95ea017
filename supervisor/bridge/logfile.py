"""A log file packed to fit one Discord attachment: whole, gzipped, or its newest part.

``/logs`` sends the file itself; the note says how much was left out, and memory stays within
about twice the attachment limit.
"""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

from supervisor import humanize
from supervisor.bridge.replies import Attachment

if TYPE_CHECKING:
    from pathlib import Path

_CHUNK = 1024 * 1024
_SHRINK_STEPS = 8  # tries at a newest part that fits, each smaller than the last


@dataclass(frozen=True, slots=True, kw_only=True)
class PackedLog:
    """What goes in the reply for one log file.

    Attributes:
        attachment: the file to send, None when there is no log file yet.
        note: how it was packed ("gzip", "newest 9.5 MiB of 60 MiB, gzip"), "" when whole.
    """

    attachment: Attachment | None
    note: str = ""


def pack_log(path: Path, name: str, limit: int) -> PackedLog:
    """The log file at ``path`` as an attachment called ``name`` of at most ``limit`` bytes.

    Blocking (file reads and compression): run it in a worker thread.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return PackedLog(attachment=None, note="no log file yet")
    if size <= limit:
        return PackedLog(attachment=Attachment(name, path.read_bytes()))
    whole, ratio = _gzip_within(path, 0, limit)
    if whole is not None:
        return PackedLog(attachment=Attachment(f"{name}.gz", whole), note="gzip")
    # The part that should fit at the ratio seen so far, smaller at each miss.
    part = min(size, int(limit / max(ratio, 1e-6) * 0.9))
    for _ in range(_SHRINK_STEPS):
        packed, ratio = _gzip_within(path, size - part, limit)
        if packed is not None:
            note = f"newest {humanize.memory(part)} of {humanize.memory(size)}, gzip"
            return PackedLog(attachment=Attachment(f"{name}.gz", packed), note=note)
        part = int(part * 0.7)
    return PackedLog(attachment=None, note=f"{humanize.memory(size)}: too big to attach")


def _gzip_within(path: Path, start: int, limit: int) -> tuple[bytes | None, float]:
    """``path`` from ``start`` (moved to the next line start) gzipped, if within ``limit``.

    Returns:
        The gzip data or None when it grew past ``limit`` (compression stops
        there), and the compression ratio seen (compressed / read).
    """
    out = io.BytesIO()
    read = 0
    with (
        path.open("rb") as src,
        gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6, mtime=0) as gz,
    ):
        if start:
            src.seek(start - 1)
            src.readline()  # the rest of a line cut by the start
        while chunk := src.read(_CHUNK):
            read += len(chunk)
            gz.write(chunk)
            if out.tell() > limit:
                return None, out.tell() / read
    data = out.getvalue()
    return (data if len(data) <= limit else None), len(data) / max(read, 1)
