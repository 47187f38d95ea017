"""REST routes for application commands, interaction callbacks and follow-up webhooks.

Faithful points a bridge depends on: a callback later than the interaction deadline
(3 s by default) is ``404 Unknown interaction`` (10062); a second callback is ``400``
(40060); the first follow-up after a "thinking" defer replaces the loading message;
ephemeral messages (flag 64) never reach the channel or the gateway.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from tests.discord_fake.http_util import (
    ApiError,
    Backend,
    UploadedFile,
    attachments_out,
    backend,
    invalid_form,
    json_response,
    no_content,
    read_body,
    validate_message,
)
from tests.discord_fake.interaction import (
    AUTOCOMPLETE,
    EPHEMERAL,
    MODAL_SUBMIT,
    InteractionRecord,
    InteractionReply,
)
from tests.discord_fake.models import BotAction
from tests.discord_fake.rest_channels import apply_edit, gateway_message

routes = web.RouteTableDef()

LOADING = 1 << 7
_MESSAGE, _DEFER, _DEFER_UPDATE, _UPDATE, _AUTOCOMPLETE, _MODAL = 4, 5, 6, 7, 8, 9


def _check_application(ctx: Backend, request: web.Request) -> None:
    if request.match_info["application_id"] != str(ctx.store.application_id):
        raise ApiError(403, 50001, "Missing Access")


def _scope(ctx: Backend, request: web.Request) -> int | None:
    raw = request.match_info.get("guild_id")
    if raw is None:
        return None
    if raw != str(ctx.store.guild_id):
        raise ApiError(404, 10004, "Unknown Guild")
    return ctx.store.guild_id


@routes.get("/api/v10/applications/{application_id}/commands")
@routes.get("/api/v10/applications/{application_id}/guilds/{guild_id}/commands")
async def get_commands(request: web.Request) -> web.Response:
    """The registered global or guild commands."""
    ctx = backend(request)
    _check_application(ctx, request)
    return json_response(ctx.store.commands.get(_scope(ctx, request), []))


@routes.put("/api/v10/applications/{application_id}/commands")
@routes.put("/api/v10/applications/{application_id}/guilds/{guild_id}/commands")
async def overwrite_commands(request: web.Request) -> web.Response:
    """Bulk overwrite; commands keep their id when name and type match."""
    ctx = backend(request)
    _check_application(ctx, request)
    scope = _scope(ctx, request)
    specs: list[dict[str, Any]] = await request.json()
    existing = {(c["name"], c.get("type", 1)): c for c in ctx.store.commands.get(scope, [])}
    out = []
    for i, spec in enumerate(specs):
        name, kind = str(spec.get("name", "")), int(spec.get("type", 1))
        if not 1 <= len(name) <= 32 or (kind == 1 and name != name.lower()):
            raise invalid_form(
                f"{i}.name", "Command name is invalid", "APPLICATION_COMMAND_INVALID_NAME"
            )
        if kind == 1 and not 1 <= len(str(spec.get("description", ""))) <= 100:
            raise invalid_form(f"{i}.description", "Must be between 1 and 100 in length.")
        old = existing.get((name, kind))
        command: dict[str, Any] = {
            "type": 1,
            "description": "",
            "options": [],
            "default_member_permissions": None,
            "dm_permission": True,
            "nsfw": False,
            "contexts": None,
            "integration_types": [0],
        }
        command |= spec
        command |= {
            "id": old["id"] if old else str(ctx.store.snowflakes.next()),
            "application_id": str(ctx.store.application_id),
            "version": str(ctx.store.snowflakes.next()),
        }
        if scope is not None:
            command["guild_id"] = str(scope)
        out.append(command)
    ctx.store.commands[scope] = out
    ctx.store.command_overwrites += 1
    ctx.store.command_creations.extend(
        c["name"] for c in out if (c["name"], c["type"]) not in existing
    )
    ctx.store.notify()
    return json_response(out)


def _check_sizes(record: InteractionRecord, files: list[UploadedFile]) -> None:
    """Refuse a file over the interaction's ``attachment_size_limit`` (413, code 40005)."""
    limit = int(record.payload["attachment_size_limit"])
    if any(len(f.data) > limit for f in files):
        raise ApiError(413, 40005, "Request entity too large")


def _create_message(
    ctx: Backend, record: InteractionRecord, body: dict[str, Any], files: list[UploadedFile]
) -> dict[str, Any]:
    """Create a message answering an interaction; ephemeral ones stay private."""
    _check_sizes(record, files)
    store = ctx.store
    channel = store.channels[record.channel_id]
    command_name = record.payload["data"].get("name")
    metadata: dict[str, Any] = {
        "id": str(record.id),
        "type": record.type,
        "user": record.user.payload(),
        "authorizing_integration_owners": {"0": str(store.guild_id)},
    }
    extra: dict[str, Any] = {
        "webhook_id": str(store.application_id),
        "application_id": str(store.application_id),
        "interaction_metadata": metadata,
    }
    if command_name:
        metadata["name"] = command_name
        extra["interaction"] = {
            "id": str(record.id),
            "type": record.type,
            "name": command_name,
            "user": record.user.payload(),
        }
    message_type = 20 if record.type == 2 else 0
    message = store.new_message(
        channel,
        store.bot,
        body,
        attachments=attachments_out(ctx, channel.id, body, files),
        message_type=message_type,
        extra=extra,
    )
    record.messages[int(message["id"])] = message
    if not message["flags"] & EPHEMERAL:
        store.store_message(channel, message)
        store.record(
            BotAction(
                kind="create",
                channel_id=channel.id,
                message_id=int(message["id"]),
                message=store.message_view(message),
                interaction_id=record.id,
            )
        )
        ctx.gateway.dispatch("MESSAGE_CREATE", gateway_message(ctx, message))
    return message


def _edit_message(
    ctx: Backend,
    record: InteractionRecord,
    message: dict[str, Any],
    body: dict[str, Any],
    files: list[UploadedFile],
) -> dict[str, Any]:
    _check_sizes(record, files)
    store = ctx.store
    channel = store.channels[int(message["channel_id"])]
    apply_edit(ctx, channel, message, body, files)
    message["flags"] = int(message.get("flags") or 0) & ~LOADING
    if not message["flags"] & EPHEMERAL:
        store.record(
            BotAction(
                kind="edit",
                channel_id=channel.id,
                message_id=int(message["id"]),
                message=store.message_view(message),
                interaction_id=record.id,
            )
        )
        ctx.gateway.dispatch("MESSAGE_UPDATE", gateway_message(ctx, message))
    return message


@routes.post("/api/v10/interactions/{interaction_id}/{interaction_token}/callback")
async def callback(request: web.Request) -> web.Response:
    """The initial response: message, defer, update, autocomplete result or modal."""
    ctx = backend(request)
    info = request.match_info
    record = ctx.interactions.by_id.get(int(info["interaction_id"]))
    if record is None or record.token != info["interaction_token"]:
        raise ApiError(404, 10062, "Unknown interaction")
    if record.is_acknowledged:
        record.refuse(40060)
        raise ApiError(400, 40060, "Interaction has already been acknowledged.")
    if time.monotonic() - record.created_at > ctx.interactions.deadline_seconds:
        record.refuse(10062)
        raise ApiError(404, 10062, "Unknown interaction")
    body, files = await read_body(request)
    kind, data = int(body.get("type", 0)), dict(body.get("data") or {})
    message = _respond(ctx, record, kind, data, files)
    view = None if message is None else ctx.store.message_view(message)
    record.add_reply(InteractionReply(kind="callback", type=kind, data=data, message=view))
    if request.query.get("with_response") not in ("1", "true", "True"):
        return no_content()
    flags = 0 if message is None else int(message.get("flags") or 0)
    answer: dict[str, Any] = {
        "interaction": {
            "id": str(record.id),
            "type": record.type,
            "response_message_id": None if message is None else message["id"],
            "response_message_loading": kind == _DEFER,
            "response_message_ephemeral": bool(flags & EPHEMERAL),
        },
        "resource": {"type": kind},
    }
    if view is not None:
        answer["resource"]["message"] = view
    return json_response(answer)


def _respond(
    ctx: Backend,
    record: InteractionRecord,
    kind: int,
    data: dict[str, Any],
    files: list[UploadedFile],
) -> dict[str, Any] | None:
    """Carry out a callback of type ``kind``; return the message it made or changed."""
    if (kind == _AUTOCOMPLETE) != (record.type == AUTOCOMPLETE):
        raise ApiError(400, 50035, "Invalid interaction response type for this interaction")
    message: dict[str, Any] | None = None
    if kind == _MESSAGE:
        validate_message(data, files, is_edit=False)
        message = _create_message(ctx, record, data, files)
        record.original_message_id = int(message["id"])
    elif kind == _DEFER:
        flags = int(data.get("flags") or 0) & EPHEMERAL
        message = _create_message(ctx, record, {"content": "", "flags": flags | LOADING}, [])
        record.original_message_id = int(message["id"])
        record.is_loading = True
    elif kind in (_DEFER_UPDATE, _UPDATE) and record.message_id is not None:
        record.original_message_id = record.message_id
        found = ctx.interactions.find_message(record.message_id)
        if found is None:
            raise ApiError(404, 10008, "Unknown Message")
        message = found[1]
        if kind == _UPDATE:
            _edit_message(ctx, record, message, data, files)
    elif kind == _AUTOCOMPLETE:
        if len(data.get("choices") or []) > 25:
            raise invalid_form("data.choices", "Must be 25 or fewer in length.")
    elif kind == _MODAL:
        _check_modal(record, data)
    else:
        raise invalid_form(
            "type", f"Value {kind} is not a valid interaction response type", "INVALID"
        )
    return message


def _check_modal(record: InteractionRecord, data: dict[str, Any]) -> None:
    """A modal as Discord takes it: never in answer to a modal, titled, 1 to 5 components."""
    if record.type in (AUTOCOMPLETE, MODAL_SUBMIT):
        raise ApiError(400, 50035, "Invalid interaction response type for this interaction")
    title = str(data.get("title") or "")
    if not 1 <= len(title) <= 45:
        raise invalid_form("data.title", "Must be between 1 and 45 in length.")
    if not 1 <= len(data.get("components") or []) <= 5:
        raise invalid_form("data.components", "Must be between 1 and 5 in length.")
    if not data.get("custom_id"):
        raise invalid_form("data.custom_id", "This field is required")


def _record_for(ctx: Backend, request: web.Request) -> InteractionRecord:
    info = request.match_info
    record = ctx.interactions.by_token.get(info["webhook_token"])
    if record is None or info["webhook_id"] != str(ctx.store.application_id):
        raise ApiError(404, 10015, "Unknown Webhook")
    return record


@routes.post("/api/v10/webhooks/{webhook_id}/{webhook_token}")
async def followup(request: web.Request) -> web.Response:
    """A follow-up message; the first one after a thinking defer replaces it."""
    ctx = backend(request)
    record = _record_for(ctx, request)
    if not record.is_acknowledged:
        raise ApiError(404, 10015, "Unknown Webhook")
    body, files = await read_body(request)
    validate_message(body, files, is_edit=False)
    original = record.messages.get(record.original_message_id or 0)
    if record.is_loading and original is not None:
        record.is_loading = False
        message = _edit_message(ctx, record, original, body, files)
    else:
        message = _create_message(ctx, record, body, files)
    view = ctx.store.message_view(message)
    record.add_reply(InteractionReply(kind="followup", type=None, data=body, message=view))
    if request.query.get("wait") in ("1", "true", "True"):
        return json_response(view)
    return no_content()


def _target(ctx: Backend, request: web.Request, record: InteractionRecord) -> dict[str, Any]:
    raw = request.match_info["message_id"]
    message_id = record.original_message_id if raw == "@original" else int(raw)
    if message_id is not None and message_id in record.messages:
        return record.messages[message_id]
    found = None if message_id is None else ctx.interactions.find_message(message_id)
    if found is None or message_id != record.original_message_id:
        raise ApiError(404, 10008, "Unknown Message")
    return found[1]


@routes.get("/api/v10/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}")
async def get_response(request: web.Request) -> web.Response:
    """Fetch the original response or a follow-up."""
    ctx = backend(request)
    record = _record_for(ctx, request)
    return json_response(ctx.store.message_view(_target(ctx, request, record)))


@routes.patch("/api/v10/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}")
async def edit_response(request: web.Request) -> web.Response:
    """Edit the original response or a follow-up."""
    ctx = backend(request)
    record = _record_for(ctx, request)
    message = _target(ctx, request, record)
    body, files = await read_body(request)
    if message["id"] == str(record.original_message_id):
        record.is_loading = False
    _edit_message(ctx, record, message, body, files)
    view = ctx.store.message_view(message)
    record.add_reply(InteractionReply(kind="edit", type=None, data=body, message=view))
    return json_response(view)


@routes.delete("/api/v10/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}")
async def delete_response(request: web.Request) -> web.Response:
    """Delete the original response or a follow-up."""
    ctx = backend(request)
    record = _record_for(ctx, request)
    message = _target(ctx, request, record)
    channel = ctx.store.channels[int(message["channel_id"])]
    message_id = int(message["id"])
    record.messages.pop(message_id, None)
    if channel.messages.pop(message_id, None) is not None:
        ctx.store.record(
            BotAction(
                kind="delete",
                channel_id=channel.id,
                message_id=message_id,
                interaction_id=record.id,
            )
        )
        event = {
            "id": str(message_id),
            "channel_id": str(channel.id),
            "guild_id": str(ctx.store.guild_id),
        }
        ctx.gateway.dispatch("MESSAGE_DELETE", event)
    record.add_reply(InteractionReply(kind="delete", type=None, data={}, message=None))
    return no_content()
