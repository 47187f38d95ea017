"""Autocomplete for a ``name`` option: programs, processes, globs and ``all``, best first.

Discord shows at most 25 choices and gives 3 s to answer (no deferring), so ranking is
a pure function over the names the command surface lists, with no I/O.
"""

from __future__ import annotations

import fnmatch
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

MAX_CHOICES = 25
"""Discord's cap on autocomplete choices."""
MAX_VALUE_CHARS = 100
"""Discord's cap on a choice's name and value."""

_GLOB = re.compile(r"[*?\[]")
_WORD_START = re.compile(r"(?:^|[-_.:])(.)")


def rank_targets(typed: str, programs: Sequence[str], processes: Sequence[str]) -> list[str]:
    """The targets to offer for ``typed``, best first, at most MAX_CHOICES.

    Ranks, best first: the exact name, names starting with ``typed``, names
    with a word (after ``-``, ``_``, ``.`` or ``:``) starting with it, names
    containing it, names holding its letters in order. Within a rank a
    program comes before its processes and a shorter name first. A glob
    typed is offered first as it is when it matches something; ``typed*`` is
    offered when it names two programs or more. Nothing typed offers ``all``
    and the programs, then the processes.
    """
    typed = typed.strip()
    names = [("all", 0), *((p, 1) for p in programs), *((p, 2) for p in processes)]
    if not typed:
        return [n for n, _ in names if len(n) <= MAX_VALUE_CHARS][:MAX_CHOICES]
    low = typed.lower()
    scored: list[tuple[int, int, int, int, str]] = []
    for order, (name, kind) in enumerate(names):
        rank = _rank(low, name.lower())
        if rank is not None and len(name) <= MAX_VALUE_CHARS:
            scored.append((rank, kind, len(name), order, name))
    if _GLOB.search(typed):
        pattern = re.compile(fnmatch.translate(typed), re.IGNORECASE)  # as the fleet
        if any(pattern.fullmatch(n) for n, _ in names):
            scored.append((-1, 0, 0, 0, typed))
    elif sum(p.lower().startswith(low) for p in programs) >= 2:
        scored.append((1, 0, 0, 0, f"{typed}*"))
    scored.sort()
    seen: set[str] = set()
    out = []
    for *_, name in scored:
        if name not in seen:
            seen.add(name)
            out.append(name)
    return out[:MAX_CHOICES]


def _rank(typed: str, name: str) -> int | None:
    if name == typed:
        return 0
    if name.startswith(typed):
        return 1
    if any(name[m.start(1) :].startswith(typed) for m in _WORD_START.finditer(name)):
        return 2
    if typed in name:
        return 3
    rest = iter(name)
    if all(ch in rest for ch in typed):  # letters in order: "scr0" finds "scraper:0"
        return 4
    return None
