"""REST routes for login, the gateway URL, members, channels, messages, reactions and typing.

Every change the bot makes is stored, logged as a :class:`BotAction` and dispatched on
the gateway, as Discord does (the bot receives its own MESSAGE_CREATE).
"""

from __future__ import annotations

import re
import time
from typing import Any

from aiohttp import web

from tests.discord_fake.http_util import (
    ApiError,
    Backend,
    attachments_out,
    backend,
    invalid_form,
    json_response,
    no_content,
    read_body,
    validate_message,
)
from tests.discord_fake.models import BotAction, FakeChannel, iso_now

routes = web.RouteTableDef()
_NONCE_WINDOW_SECONDS = 120.0
SUPPRESS_EMBEDS = 1 << 2


def channel_for_bot(ctx: Backend, request: web.Request) -> FakeChannel:
    """Return the channel in the path, or raise 404 (unknown) or 403 (bot denied)."""
    try:
        channel = ctx.store.channels[int(request.match_info["channel_id"])]
    except (KeyError, ValueError):
        raise ApiError(404, 10003, "Unknown Channel") from None
    if channel.deleted:
        raise ApiError(404, 10003, "Unknown Channel")
    if channel.bot_denied:
        raise ApiError(403, 50001, "Missing Access")
    return channel


def message_in(channel: FakeChannel, raw_id: str) -> dict[str, Any]:
    """Return a stored message, or raise 404 Unknown Message."""
    try:
        return channel.messages[int(raw_id)]
    except (KeyError, ValueError):
        raise ApiError(404, 10008, "Unknown Message") from None


def gateway_message(ctx: Backend, message: dict[str, Any]) -> dict[str, Any]:
    """Return a message as the gateway sends it: with ``guild_id`` and ``member``."""
    author = ctx.store.users.get(int(message["author"]["id"]))
    data = ctx.store.message_view(message) | {"guild_id": str(ctx.store.guild_id)}
    if author is not None and message.get("webhook_id") is None:
        data["member"] = author.member_payload(with_user=False)
    return data


@routes.get("/api/v10/users/@me")
async def get_me(request: web.Request) -> web.Response:
    """Login: the bot user."""
    store = backend(request).store
    return json_response(store.bot.payload() | {"verified": True, "mfa_enabled": False})


@routes.get("/api/v10/gateway")
@routes.get("/api/v10/gateway/bot")
async def get_gateway(request: web.Request) -> web.Response:
    """The websocket URL of this fake."""
    ctx = backend(request)
    url = ctx.public_url().replace("http://", "ws://", 1) + "/gateway"
    limit = {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}
    return json_response({"url": url, "shards": 1, "session_start_limit": limit})


@routes.get("/api/v10/oauth2/applications/@me")
@routes.get("/api/v10/applications/@me")
async def get_application(request: web.Request) -> web.Response:
    """Application info, read by discord.py's login."""
    store = backend(request).store
    owner = store.owner
    return json_response(
        {
            "id": str(store.application_id),
            "name": store.bot.name,
            "description": "",
            "icon": None,
            "bot_public": False,
            "bot_require_code_grant": False,
            "owner": owner.payload(),
            "verify_key": "0" * 64,
            "flags": 0,
            "team": None,
        }
    )


@routes.get("/api/v10/guilds/{guild_id}/members/{user_id}")
async def get_member(request: web.Request) -> web.Response:
    """One member of the guild (with its roles): what a message from history lacks."""
    ctx = backend(request)
    if request.match_info["guild_id"] != str(ctx.store.guild_id):
        raise ApiError(404, 10004, "Unknown Guild")
    try:
        user = ctx.store.users[int(request.match_info["user_id"])]
    except (KeyError, ValueError):
        raise ApiError(404, 10013, "Unknown User") from None
    return json_response(user.member_payload())


@routes.get("/api/v10/channels/{channel_id}")
async def get_channel(request: web.Request) -> web.Response:
    """One channel."""
    return json_response(channel_for_bot(backend(request), request).payload())


@routes.post("/api/v10/channels/{channel_id}/messages")
async def create_message(request: web.Request) -> web.Response:
    """Send a message (JSON or multipart with files), honouring ``enforce_nonce``."""
    ctx = backend(request)
    channel = channel_for_bot(ctx, request)
    body, files = await read_body(request)
    validate_message(body, files, is_edit=False)
    body = _checked_reference(ctx, body)
    nonce = body.get("nonce")
    if nonce is not None and body.get("enforce_nonce"):
        recent = time.time() - _NONCE_WINDOW_SECONDS
        for existing in reversed(channel.messages.values()):
            is_bot = existing["author"]["id"] == str(ctx.store.bot.id)
            if is_bot and existing.get("nonce") == nonce and existing.get("_created", 0) > recent:
                return json_response(public(ctx.store.message_view(existing)))
    message = ctx.store.new_message(
        channel,
        ctx.store.bot,
        body,
        attachments=attachments_out(ctx, channel.id, body, files),
        extra={"_created": time.time(), **pings(ctx, body)},
    )
    ctx.store.store_message(channel, message)
    ctx.store.record(
        BotAction(
            kind="create",
            channel_id=channel.id,
            message_id=int(message["id"]),
            message=public(message),
        )
    )
    ctx.gateway.dispatch("MESSAGE_CREATE", public(gateway_message(ctx, message)))
    return json_response(public(ctx.store.message_view(message)))


def _checked_reference(ctx: Backend, body: dict[str, Any]) -> dict[str, Any]:
    """Refuse a reply to an unknown message, or drop the reference when it may fail."""
    reference = body.get("message_reference")
    if not reference or ctx.store.find_any_message(int(reference.get("message_id") or 0)):
        return body
    if reference.get("fail_if_not_exists", True):
        raise invalid_form(
            "message_reference", "Unknown message", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE"
        )
    return {k: v for k, v in body.items() if k != "message_reference"}


_USER_MENTION = re.compile(r"<@!?(\d+)>")


def pings(ctx: Backend, body: dict[str, Any]) -> dict[str, Any]:
    """Who a new message pings, as Discord decides from its content and ``allowed_mentions``.

    ``@everyone``/``@here`` and ``<@id>`` of a known user count (code blocks are not
    told apart: the stricter reading); ``allowed_mentions`` absent allows them all. A
    reply pings the author of the message it answers unless ``allowed_mentions`` is
    given without ``replied_user`` true.
    """
    content = str(body.get("content") or "")
    allowed = body.get("allowed_mentions")
    parse = {"everyone", "users", "roles"} if allowed is None else set(allowed.get("parse", ()))
    listed = set() if allowed is None else {int(u) for u in allowed.get("users", ())}
    everyone = "everyone" in parse and ("@everyone" in content or "@here" in content)
    pinged = [int(m) for m in _USER_MENTION.findall(content)]
    pinged = [u for u in pinged if "users" in parse or u in listed]
    reference = body.get("message_reference") or {}
    replied = ctx.store.find_any_message(int(reference.get("message_id") or 0))
    if replied is not None and (allowed is None or allowed.get("replied_user")):
        pinged.insert(0, int(replied[1]["author"]["id"]))
    users = [ctx.store.users[u].payload() for u in dict.fromkeys(pinged) if u in ctx.store.users]
    return {"mention_everyone": everyone, "mentions": users}


def public(message: dict[str, Any]) -> dict[str, Any]:
    """Drop the fake's private bookkeeping keys (``_...``) from a payload."""
    return {k: v for k, v in message.items() if not k.startswith("_")}


def apply_edit(
    ctx: Backend,
    channel: FakeChannel,
    message: dict[str, Any],
    body: dict[str, Any],
    files: list[Any],
) -> dict[str, Any]:
    """Apply an edit body to a stored message and return it."""
    validate_message(body, files, is_edit=True)
    for key in ("content", "embeds", "components"):
        if key in body:
            message[key] = body[key] if body[key] is not None else ([] if key != "content" else "")
    if "flags" in body:  # only SUPPRESS_EMBEDS may change; null clears it
        fixed = int(message.get("flags") or 0) & ~SUPPRESS_EMBEDS
        message["flags"] = fixed | (int(body["flags"] or 0) & SUPPRESS_EMBEDS)
    if "attachments" in body or files:
        wanted = {str(a.get("id")) for a in body.get("attachments") or []}
        kept = [a for a in message["attachments"] if a["id"] in wanted or "attachments" not in body]
        message["attachments"] = attachments_out(ctx, channel.id, body, files, kept)
    message["edited_timestamp"] = iso_now()
    ctx.store.notify()
    return message


@routes.patch("/api/v10/channels/{channel_id}/messages/{message_id}")
async def edit_message(request: web.Request) -> web.Response:
    """Edit one of the bot's messages."""
    ctx = backend(request)
    channel = channel_for_bot(ctx, request)
    message = message_in(channel, request.match_info["message_id"])
    if message["author"]["id"] != str(ctx.store.bot.id):
        raise ApiError(403, 50005, "Cannot edit a message authored by another user")
    body, files = await read_body(request)
    apply_edit(ctx, channel, message, body, files)
    ctx.store.record(
        BotAction(
            kind="edit",
            channel_id=channel.id,
            message_id=int(message["id"]),
            message=public(message),
        )
    )
    ctx.gateway.dispatch("MESSAGE_UPDATE", public(gateway_message(ctx, message)))
    return json_response(public(ctx.store.message_view(message)))


@routes.delete("/api/v10/channels/{channel_id}/messages/{message_id}")
async def delete_message(request: web.Request) -> web.Response:
    """Delete a message (the bot has Manage Messages)."""
    ctx = backend(request)
    channel = channel_for_bot(ctx, request)
    message = message_in(channel, request.match_info["message_id"])
    del channel.messages[int(message["id"])]
    ctx.store.record(BotAction(kind="delete", channel_id=channel.id, message_id=int(message["id"])))
    event = {
        "id": message["id"],
        "channel_id": str(channel.id),
        "guild_id": str(ctx.store.guild_id),
    }
    ctx.gateway.dispatch("MESSAGE_DELETE", event)
    return no_content()


@routes.get("/api/v10/channels/{channel_id}/messages/{message_id}")
async def get_message(request: web.Request) -> web.Response:
    """Fetch one message."""
    ctx = backend(request)
    channel = channel_for_bot(ctx, request)
    message = message_in(channel, request.match_info["message_id"])
    return json_response(public(ctx.store.message_view(message)))


@routes.get("/api/v10/channels/{channel_id}/messages")
async def get_history(request: web.Request) -> web.Response:
    """History, newest first, with ``before``/``after``/``around`` and ``limit``."""
    ctx = backend(request)
    channel = channel_for_bot(ctx, request)
    query = request.query
    try:
        limit = int(query.get("limit", "50"))
    except ValueError:
        raise invalid_form("limit", "Value is not int.", "NUMBER_TYPE_COERCE") from None
    if not 1 <= limit <= 100:
        raise invalid_form("limit", "int value should be between 1 and 100.", "NUMBER_TYPE_MAX")
    ids = sorted(channel.messages)
    if "before" in query:
        ids = [i for i in ids if i < int(query["before"])][-limit:]
    elif "after" in query:
        ids = [i for i in ids if i > int(query["after"])][:limit]
    elif "around" in query:
        around = int(query["around"])
        older = [i for i in ids if i < around][-(limit // 2) :] if limit > 1 else []
        newer = [i for i in ids if i >= around][: limit - len(older)]
        ids = older + newer
    else:
        ids = ids[-limit:]
    views = [public(ctx.store.message_view(channel.messages[i])) for i in reversed(ids)]
    return json_response(views)


@routes.put("/api/v10/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me")
async def add_reaction(request: web.Request) -> web.Response:
    """The bot reacts to a message."""
    ctx = backend(request)
    channel = channel_for_bot(ctx, request)
    message = message_in(channel, request.match_info["message_id"])
    emoji = ctx.store.reaction_key(request.match_info["emoji"])
    if ctx.store.add_reaction(int(message["id"]), emoji, ctx.store.bot.id):
        ctx.store.record(
            BotAction(
                kind="react", channel_id=channel.id, message_id=int(message["id"]), emoji=emoji
            )
        )
        ctx.gateway.dispatch("MESSAGE_REACTION_ADD", reaction_event(ctx, message, emoji, add=True))
    return no_content()


@routes.delete("/api/v10/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/{user}")
async def remove_reaction(request: web.Request) -> web.Response:
    """Remove the bot's own reaction (``@me``) or someone else's."""
    ctx = backend(request)
    channel = channel_for_bot(ctx, request)
    message = message_in(channel, request.match_info["message_id"])
    emoji, who = ctx.store.reaction_key(request.match_info["emoji"]), request.match_info["user"]
    user_id = ctx.store.bot.id if who == "@me" else int(who)
    if ctx.store.remove_reaction(int(message["id"]), emoji, user_id):
        ctx.store.record(
            BotAction(
                kind="unreact", channel_id=channel.id, message_id=int(message["id"]), emoji=emoji
            )
        )
        event = reaction_event(ctx, message, emoji, add=False, user_id=user_id)
        ctx.gateway.dispatch("MESSAGE_REACTION_REMOVE", event)
    return no_content()


def reaction_event(
    ctx: Backend, message: dict[str, Any], emoji: str, *, add: bool, user_id: int | None = None
) -> dict[str, Any]:
    """Build MESSAGE_REACTION_ADD/REMOVE data; ``emoji`` is a reaction key."""
    user = ctx.store.users[user_id or ctx.store.bot.id]
    event: dict[str, Any] = {
        "user_id": str(user.id),
        "channel_id": message["channel_id"],
        "message_id": message["id"],
        "guild_id": str(ctx.store.guild_id),
        "emoji": ctx.store.emoji_payload(emoji),
        "burst": False,
        "type": 0,
    }
    if add:
        event |= {
            "member": user.member_payload(),
            "message_author_id": message["author"]["id"],
            "burst_colors": [],
        }
    return event


@routes.post("/api/v10/channels/{channel_id}/typing")
async def typing(request: web.Request) -> web.Response:
    """The bot starts typing."""
    ctx = backend(request)
    channel = channel_for_bot(ctx, request)
    ctx.store.record(BotAction(kind="typing", channel_id=channel.id))
    return no_content()


@routes.get("/attachments/{channel_id}/{attachment_id}/{filename}")
async def get_attachment(request: web.Request) -> web.Response:
    """The CDN: bytes of an uploaded attachment."""
    store = backend(request).store
    try:
        data = store.attachments[int(request.match_info["attachment_id"])]
    except (KeyError, ValueError):
        raise web.HTTPNotFound() from None
    return web.Response(body=data, content_type="application/octet-stream")
