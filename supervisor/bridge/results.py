"""A worker's result as a Discord message: its text, its data as an embed, its files attached.

Posted through the outbox, so a result reported while Discord is away goes out once it is
back; files too large for Discord are only named.
"""

from __future__ import annotations

import io
import json
import logging
import os
from typing import TYPE_CHECKING, Any

import discord

from supervisor.state.outbox import MAX_CONTENT_CHARS, fit

if TYPE_CHECKING:
    from supervisor.events import WorkerResult

logger = logging.getLogger(__name__)

FILE_BYTES = 8 * 1024 * 1024
"""The largest file attached (Discord takes 10 MiB by default; the rest is headroom)."""
FILES_BYTES = 24 * 1024 * 1024
"""The most bytes of files one message carries (Discord: 25 MiB a request)."""
MAX_FIELDS = 25
"""Discord's fields per embed; the rest of the data is counted in the footer."""
_FIELD_NAME_CHARS = 256
_FIELD_VALUE_CHARS = 1024
_DESCRIPTION_CHARS = 4096


def result_message(result: WorkerResult) -> str:
    """The content: who reported it, its text, and its files by name."""
    head = f"**{result.process}** result {result.id}"
    text = discord.utils.escape_mentions(result.text)
    lines = [f"{head}: {text}" if text else head]
    if result.files:
        names = ", ".join(f"`{os.path.basename(f)}`" for f in result.files)
        lines.append(f"files: {names}")
    return fit("\n".join(lines), MAX_CONTENT_CHARS)


def result_attach(result: WorkerResult) -> str:
    """The embed of the data and the paths of the files, for the outbox ("" for none)."""
    attach: dict[str, Any] = {}
    embed = _embed(result)
    if embed is not None:
        attach["embeds"] = [embed]
    if result.files:
        attach["files"] = list(result.files)
    return json.dumps(attach) if attach else ""


def _embed(result: WorkerResult) -> dict[str, Any] | None:
    """The data of a result as an embed's fields (values as compact JSON, cut to fit)."""
    if not result.data:
        return None
    try:
        data = json.loads(result.data)
    except ValueError:
        return None
    if not isinstance(data, dict) or not data:
        return None
    fields = []
    for key, value in list(data.items())[:MAX_FIELDS]:
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        fields.append(
            {
                "name": str(key)[:_FIELD_NAME_CHARS] or "-",
                "value": shown[:_FIELD_VALUE_CHARS] or "-",
                "inline": len(shown) <= 40,
            }
        )
    embed: dict[str, Any] = {"title": f"{result.process} result {result.id}", "fields": fields}
    if len(data) > MAX_FIELDS:
        embed["footer"] = {"text": f"{len(data) - MAX_FIELDS} more fields: dsup ctl results"}
    return embed


def attachments(attach: str) -> dict[str, Any]:
    """``send`` or ``edit`` keyword arguments for an outbox row's ``attach`` (reads files:
    call it in a thread).

    A file that is gone, unreadable or too big is left out (logged); its name is in
    the content already.
    """
    try:
        wanted = json.loads(attach)
    except ValueError:
        return {}
    kwargs: dict[str, Any] = {}
    embeds = [discord.Embed.from_dict(e) for e in wanted.get("embeds", [])[:10]]
    if embeds:
        kwargs["embeds"] = embeds
    files, total = [], 0
    for path in wanted.get("files", [])[:10]:
        try:
            size = os.path.getsize(path)
            if size > FILE_BYTES or total + size > FILES_BYTES:
                logger.info("discord: result file %s (%d bytes) is too big to attach", path, size)
                continue
            with open(path, "rb") as handle:
                data = handle.read(FILE_BYTES + 1)
        except OSError as exc:
            logger.info("discord: result file %s not attached: %s", path, exc.strerror or exc)
            continue
        total += len(data)
        files.append(discord.File(io.BytesIO(data), filename=os.path.basename(path)))
    if files:
        kwargs["files"] = files
    task = wanted.get("cancel_task")
    if isinstance(task, int):
        kwargs["view"] = cancel_view(task)
    if "buttons" in wanted:
        kwargs["view"] = _view(wanted["buttons"])
    elif "view" in wanted and wanted["view"] is None:
        kwargs["view"] = None  # an edit that removes the buttons
    return kwargs


def button(
    label: str,
    custom_id: str,
    *,
    style: discord.ButtonStyle = discord.ButtonStyle.secondary,
    row: int | None = None,
    disabled: bool = False,
) -> dict[str, Any]:
    """A button as an outbox row's ``attach`` keeps it (``{"buttons": [...]}``)."""
    return {
        "label": label,
        "custom_id": custom_id,
        "style": style.value,
        "row": row,
        "disabled": disabled,
    }


def _view(buttons: list[dict[str, Any]]) -> discord.ui.View:
    """The persistent view of buttons kept by :func:`button` (their dynamic items answer)."""
    view = discord.ui.View(timeout=None)
    for kept in buttons[:25]:
        view.add_item(
            discord.ui.Button(
                label=str(kept["label"]),
                custom_id=str(kept["custom_id"]),
                style=discord.ButtonStyle(int(kept["style"])),
                row=kept.get("row"),
                disabled=bool(kept.get("disabled")),
            )
        )
    return view


def cancel_item(task_id: int) -> discord.ui.Button[Any]:
    """The Cancel button of task ``task_id`` (``task-cancel:ID``, a persistent custom id)."""
    return discord.ui.Button(
        label="Cancel", style=discord.ButtonStyle.danger, custom_id=f"task-cancel:{task_id}"
    )


def cancel_view(task_id: int) -> discord.ui.View:
    """A view of the Cancel button of task ``task_id``: its persistent dynamic item answers."""
    view = discord.ui.View(timeout=None)
    view.add_item(cancel_item(task_id))
    return view
