"""What every REST route shares: errors, JSON, auth, faults, rate limits, bodies.

The middleware is where the fake is strict about transport: ``Content-Type`` exactly
``application/json``, a ``Via`` header on every answer (discord.py takes a 429 without
one for a Cloudflare ban), 401 without the bot token, and the ``X-RateLimit-*`` headers.
Route handlers raise :class:`ApiError`; they never build error responses themselves.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
from aiohttp import BodyPartReader, web

if TYPE_CHECKING:
    from tests.discord_fake.gateway import Gateway
    from tests.discord_fake.interaction import InteractionBook
    from tests.discord_fake.ratelimit import RateLimiter
    from tests.discord_fake.store import FakeStore

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v10"
CDN_PREFIX = "/attachments"
"""Where the files of messages are served (Discord's CDN), outside the API."""
MAX_CONTENT = 2000
_UNAUTHENTICATED = ("/interactions/", "/webhooks/")
_EMBED_TEXT_LIMITS = (
    (("title",), 256),
    (("description",), 4096),
    (("footer", "text"), 2048),
    (("author", "name"), 256),
)
_FIELD_LIMITS = (("name", 256), ("value", 1024))
_MAX_FIELDS = 25
_MAX_EMBEDS = 10
_EMBED_TOTAL = 6000

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Backend:
    """Everything a route handler may touch."""

    store: FakeStore
    gateway: Gateway
    limiter: RateLimiter
    interactions: InteractionBook
    public_url: Callable[[], str]


BACKEND_KEY = web.AppKey("backend", Backend)


class ApiError(Exception):
    """A Discord API error: HTTP status, JSON error code and message."""

    def __init__(
        self, status: int, code: int, message: str, *, errors: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{status} {message} (code {code})")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors

    def body(self) -> dict[str, Any]:
        """Return Discord's error JSON."""
        body: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors is not None:
            body["errors"] = self.errors
        return body


def invalid_form(field: str, message: str, error_code: str = "BASE_TYPE_MAX_LENGTH") -> ApiError:
    """Return the 400 ``Invalid Form Body`` error for one field.

    Args:
        field: Dotted path, nested in ``errors`` as Discord does (``embeds.0.title``).
        message: The human-readable problem.
        error_code: Discord's error code string.
    """
    errors: dict[str, Any] = {"_errors": [{"code": error_code, "message": message}]}
    for part in reversed(field.split(".")):
        errors = {part: errors}
    return ApiError(400, 50035, "Invalid Form Body", errors=errors)


def json_response(
    data: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """Return JSON with ``Content-Type`` exactly ``application/json`` (no charset)."""
    all_headers = {"Content-Type": "application/json", "Via": "1.1 google"}
    all_headers.update(headers or {})
    return web.Response(body=json.dumps(data).encode(), status=status, headers=all_headers)


def no_content() -> web.Response:
    """Return Discord's 204 answer."""
    return web.Response(status=204, headers={"Via": "1.1 google"})


def backend(request: web.Request) -> Backend:
    """Return the fake's state for a request."""
    return request.app[BACKEND_KEY]


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Apply auth, injected faults and rate limits to every ``/api/v10`` route, and the
    faults alone to the CDN's (``/attachments/...``, as its template names it)."""
    is_api = request.path.startswith(API_PREFIX + "/")
    if not is_api and not request.path.startswith(CDN_PREFIX + "/"):
        return await handler(request)
    resource = request.match_info.route.resource
    if resource is None:
        return json_response({"message": "404: Not Found", "code": 0}, status=404)
    template = resource.canonical.removeprefix(API_PREFIX)
    ctx = backend(request)
    is_authorized = request.headers.get("Authorization") == f"Bot {ctx.store.token}"
    if is_api and not template.startswith(_UNAUTHENTICATED) and not is_authorized:
        return json_response({"message": "401: Unauthorized", "code": 0}, status=401)
    fault = ctx.limiter.fault_for(request.method, template)
    if fault is not None:
        if fault.delay_seconds:
            await anyio.sleep(fault.delay_seconds)
        if fault.status == 429:
            body = {
                "message": fault.message or "You are being rate limited.",
                "retry_after": fault.retry_after,
                "global": False,
            }
            if fault.code:
                body["code"] = fault.code
            return json_response(body, status=429)
        if fault.status is not None:
            body = {
                "message": fault.message or f"{fault.status}: injected fault",
                "code": fault.code,
            }
            return json_response(body, status=fault.status)
    headers: dict[str, str] = {}
    if is_api:
        decision = ctx.limiter.check(request.method, template, _major_parameter(request))
        if decision.retry_after is not None:
            body = {"message": "You are being rate limited.", "retry_after": decision.retry_after}
            return json_response(body | {"global": False}, status=429, headers=decision.headers)
        headers = decision.headers
    try:
        response = await handler(request)
        if fault is not None and fault.held is not None:
            await fault.held.wait()  # done; the answer waits for the test
        if fault is not None and fault.is_lost and request.transport is not None:
            # Done, and the answer never arrives: the client sees the server disconnect.
            request.transport.abort()
    except ApiError as exc:
        response = json_response(exc.body(), status=exc.status)
    except (ValueError, KeyError, TypeError) as exc:
        # A bug in the fake or a malformed request: answer 400 rather than 500, because
        # discord.py retries a 500 for seconds and the test would fail slowly and vaguely.
        logger.exception("fake Discord could not handle %s %s", request.method, template)
        response = json_response({"message": f"fake: {exc!r}", "code": 50035}, status=400)
    response.headers.update(headers)
    return response


def _major_parameter(request: web.Request) -> str:
    """The part of the path that splits a route into buckets, as Discord does.

    Channel, guild, one interaction (callbacks), or a webhook with its token
    (interaction follow-ups: each interaction token is its own bucket).
    """
    info = request.match_info
    if "webhook_id" in info:
        return f"{info['webhook_id']}/{info['webhook_token']}"
    return info.get("channel_id") or info.get("guild_id") or info.get("interaction_id") or ""


@dataclass(frozen=True, slots=True, kw_only=True)
class UploadedFile:
    """A file part of a multipart message body (``files[n]``)."""

    index: int
    filename: str
    data: bytes
    content_type: str


async def read_body(request: web.Request) -> tuple[dict[str, Any], list[UploadedFile]]:
    """Read a JSON or multipart (``payload_json`` + ``files[n]``) message body."""
    if not request.content_type.startswith("multipart/"):
        if not request.can_read_body:
            return {}, []
        body: dict[str, Any] = await request.json()
        return body, []
    reader = await request.multipart()
    body, files = {}, []
    for _ in range(100):  # Discord allows 10 files; the bound only stops a runaway body
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, BodyPartReader):
            raise invalid_form("files", "nested multipart is not supported", "INVALID")
        if part.name == "payload_json":
            body = json.loads(await part.text())
        elif part.name and part.name.startswith("files["):
            index = int(part.name.removeprefix("files[").removesuffix("]"))
            content_type = part.headers.get("Content-Type", "application/octet-stream")
            data = bytes(await part.read())
            files.append(
                UploadedFile(
                    index=index,
                    filename=part.filename or "file",
                    data=data,
                    content_type=content_type,
                )
            )
    return body, files


def validate_message(body: dict[str, Any], files: list[UploadedFile], *, is_edit: bool) -> None:
    """Enforce Discord's message limits.

    Raises:
        ApiError: 400 with code 50035 for a field over its limit, 50006 for an empty
            message.
    """
    content = body.get("content")
    if content is not None and len(str(content)) > MAX_CONTENT:
        raise invalid_form("content", _too_long(MAX_CONTENT))
    embeds = body.get("embeds") or []
    if len(embeds) > _MAX_EMBEDS:
        raise invalid_form("embeds", _too_long(_MAX_EMBEDS))
    total = sum(_checked_embed_size(i, embed) for i, embed in enumerate(embeds))
    if total > _EMBED_TOTAL:
        raise invalid_form("embeds", f"Embed size exceeds maximum size of {_EMBED_TOTAL}")
    if is_edit:
        return
    if not (content or embeds or files or body.get("components") or body.get("sticker_ids")):
        raise ApiError(400, 50006, "Cannot send an empty message")


def _checked_embed_size(index: int, embed: dict[str, Any]) -> int:
    """Check one embed's limits and return its size (the characters Discord counts).

    Raises:
        ApiError: 400 Invalid Form Body naming the first field over its limit.
    """
    size = 0
    for path, limit in _EMBED_TEXT_LIMITS:
        value: Any = embed
        for key in path:
            value = (value or {}).get(key)
        text = str(value or "")
        if len(text) > limit:
            raise invalid_form(f"embeds.{index}.{'.'.join(path)}", _too_long(limit))
        size += len(text)
    fields = embed.get("fields") or []
    if len(fields) > _MAX_FIELDS:
        raise invalid_form(f"embeds.{index}.fields", _too_long(_MAX_FIELDS))
    for j, fld in enumerate(fields):
        for key, limit in _FIELD_LIMITS:
            text = str(fld.get(key) or "")
            if len(text) > limit:
                raise invalid_form(f"embeds.{index}.fields.{j}.{key}", _too_long(limit))
            size += len(text)
    return size


def _too_long(limit: int) -> str:
    return f"Must be {limit} or fewer in length."


def attachments_out(
    ctx: Backend,
    channel_id: int,
    body: dict[str, Any],
    files: list[UploadedFile],
    kept: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Store uploaded files and return the message's attachment objects."""
    described = {str(a.get("id")): a for a in body.get("attachments") or []}
    out = list(kept or [])
    for upload in files:
        attachment_id = ctx.store.snowflakes.next()
        ctx.store.attachments[attachment_id] = upload.data
        plain = re.sub(r"[^A-Za-z0-9._-]", "_", upload.filename)  # as Discord's CDN names it
        url = f"{ctx.public_url()}/attachments/{channel_id}/{attachment_id}/{plain}"
        meta = described.get(str(upload.index), {})
        out.append(
            {
                "id": str(attachment_id),
                "filename": meta.get("filename") or upload.filename,
                "description": meta.get("description"),
                "content_type": upload.content_type,
                "size": len(upload.data),
                "url": url,
                "proxy_url": url,
            }
        )
    return out
