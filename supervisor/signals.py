"""Signals by name and number: one parser and one spelling for ctl, chat, config and console.

``parse`` reads every signal ``kill -l`` lists (``TERM``, ``sigterm``, ``15``,
``RTMIN+3``); ``name`` is its inverse, so what dsup prints it also reads back.
"""

from __future__ import annotations

import re
import signal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

_REAL_TIME = re.compile(r"^(?:SIG)?(?:RTMIN\+(?P<up>\d+)|RTMAX-(?P<down>\d+))$")


def parse(value: str | int) -> signal.Signals | int:
    """Turn ``TERM``, ``SIGTERM``, ``term``, ``15``, ``RTMIN+3`` or ``40`` into a signal.

    Every signal Linux has is accepted, as ``kill -l`` lists them: the named
    ones and the real-time ones, ``SIGRTMIN`` to ``SIGRTMAX`` (34-64), by
    number or as ``RTMIN+n`` / ``RTMAX-n``.

    Returns:
        The ``signal.Signals`` member, or the number of a real-time signal
        Python does not name (35-63).

    Raises:
        ValueError: not a signal of this platform; the message says what is
            (the numbers ``1-31, 34-64`` on Linux, or a name).
    """
    text = str(value).strip().upper()
    named = {s.value for s in signal.Signals}
    valid = named | set(range(signal.SIGRTMIN, signal.SIGRTMAX + 1))
    numbers = _number_ranges(sorted(valid))
    number = _number(text)
    if number in valid:
        return signal.Signals(number) if number in named else number
    if text.lstrip("-").isdigit():
        raise ValueError(f"no signal has number {int(text)} here; give one of {numbers} or a name")
    raise ValueError(f"give a name like TERM, HUP, USR1, RTMIN+3, RTMAX-1 or a number ({numbers})")


def name(number: int) -> str:
    """``SIGTERM`` for 15, ``SIGRTMIN+6`` for 40; ``signal 99`` for no signal of this platform."""
    try:
        return signal.Signals(number).name
    except ValueError:
        pass
    if signal.SIGRTMIN < number < signal.SIGRTMAX:
        return f"SIGRTMIN+{number - signal.SIGRTMIN}"
    return f"signal {number}"


def _number(text: str) -> int | None:
    """The number an upper-cased signal name or number stands for (None: no signal)."""
    if text.isdigit():
        return int(text)
    if match := _REAL_TIME.match(text):
        up, down = match["up"], match["down"]
        return signal.SIGRTMIN + int(up) if up is not None else signal.SIGRTMAX - int(down)
    try:
        return signal.Signals[text if text.startswith("SIG") else f"SIG{text}"].value
    except KeyError:
        return None


def _number_ranges(numbers: Sequence[int]) -> str:
    """``1-31, 34, 64`` for the sorted numbers 1 to 31, 34 and 64."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)
