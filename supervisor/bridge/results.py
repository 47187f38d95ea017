"""A worker's result as a Discord message: its text, its data as fields, its files named.

The relay posts it to the results channel through the outbox (``post_result``), so a
result reported while Discord is away is posted once it is back. The message is
plain text within Discord's 2,000 characters: the data as ``key: value`` lines,
the files by name (they stay on the node).
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import discord

from supervisor.state.outbox import MAX_CONTENT_CHARS, fit

if TYPE_CHECKING:
    from supervisor.events import WorkerResult

_VALUE_CHARS = 200  # of one data value shown; the ledger keeps it whole


def result_message(result: WorkerResult) -> str:
    """The message of ``result``, cut (saying so) to what one message takes."""
    head = f"**{result.process}** result {result.id}"
    text = discord.utils.escape_mentions(result.text)
    lines = [f"{head}: {text}" if text else head]
    fields = _fields(result.data)
    if fields:
        lines += ["```", *fields, "```"]
    if result.files:
        names = ", ".join(f"`{os.path.basename(f)}`" for f in result.files)
        lines.append(f"files on the node: {names} (`dsup ctl results {result.process}`)")
    return fit("\n".join(lines), MAX_CONTENT_CHARS)


def _fields(data: str | None) -> list[str]:
    """``key: value`` lines of a JSON object (values as compact JSON, cut)."""
    if not data:
        return []
    try:
        value = json.loads(data)
    except ValueError:
        return [data[:_VALUE_CHARS]]
    if not isinstance(value, dict):
        return [json.dumps(value)[:_VALUE_CHARS]]
    lines = []
    for key, item in value.items():
        shown = item if isinstance(item, str) else json.dumps(item, ensure_ascii=False)
        shown = shown.replace("```", "'''")
        lines.append(f"{str(key)[:80]}: {shown[:_VALUE_CHARS]}")
    return lines
