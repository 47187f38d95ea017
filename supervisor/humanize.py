"""Short human forms of durations, sizes, CPU shares and signals for tables.

This module owns how ``dsup ctl status`` and the live console spell these
values, so both read the same. It does not own any table layout (``ctl``,
``terminal``). It imports only the standard library: ``dsup ctl`` must start
fast, so no rich here.
"""

from __future__ import annotations

import signal


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


def signal_name(number: int) -> str:
    """``SIGTERM`` for 15; ``signal 99`` for a number this platform does not name."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
