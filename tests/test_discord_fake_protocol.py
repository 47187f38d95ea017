"""The fake's wire details, checked with a raw aiohttp client (no discord.py)."""

from __future__ import annotations

import json
import zlib
from typing import Any

import aiohttp
import anyio

from tests.discord_fake import FakeDiscord, open_fake_discord


async def _get(fake: FakeDiscord, path: str, *, token: str | None) -> tuple[int, Any, Any]:
    headers = {} if token is None else {"Authorization": f"Bot {token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(fake.api_base + path, headers=headers) as response,
    ):
        return response.status, response.headers.copy(), await response.read()


async def test_rest_answers_use_discord_transport_details() -> None:
    async with open_fake_discord() as fake:
        status, headers, body = await _get(fake, "/users/@me", token=fake.token)
        no_token = await _get(fake, "/users/@me", token=None)
        unknown = await _get(fake, "/nowhere", token=fake.token)
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert headers["Via"]
    assert {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset-After"} <= set(headers)
    assert json.loads(body)["id"] == str(fake.application_id)
    assert no_token[0] == 401
    assert json.loads(no_token[2]) == {"message": "401: Unauthorized", "code": 0}
    assert unknown[0] == 404


async def _next(ws: aiohttp.ClientWebSocketResponse, inflate: Any | None) -> dict[str, Any]:
    msg = await ws.receive()
    if inflate is None:
        assert msg.type is aiohttp.WSMsgType.TEXT
        data: dict[str, Any] = json.loads(msg.data)
    else:
        assert msg.type is aiohttp.WSMsgType.BINARY
        assert msg.data.endswith(b"\x00\x00\xff\xff")
        data = json.loads(inflate.decompress(msg.data))
    return data


async def _identify(fake: FakeDiscord, *, intents: int, compress: bool) -> list[dict[str, Any]]:
    """Identify, let a user post a message, and return the frames received."""
    user = fake.add_user("raw")
    query = "?v=10&encoding=json" + ("&compress=zlib-stream" if compress else "")
    inflate = zlib.decompressobj() if compress else None
    frames = []
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(fake.gateway_url + query) as ws,
    ):
        with anyio.fail_after(5):
            frames.append(await _next(ws, inflate))
            await ws.send_json({"op": 1, "d": None})
            frames.append(await _next(ws, inflate))
            identify = {"token": fake.token, "intents": intents, "properties": {}}
            await ws.send_json({"op": 2, "d": identify})
            frames.append(await _next(ws, inflate))
            frames.append(await _next(ws, inflate))
            fake.post_message(user, "general", "secret words")
            frames.append(await _next(ws, inflate))
    return frames


async def test_gateway_handshake_plain_text() -> None:
    guilds, guild_messages = 1 << 0, 1 << 9
    async with open_fake_discord() as fake:
        hello, ack, ready, guild, message = await _identify(
            fake, intents=guilds | guild_messages, compress=False
        )
    assert hello["op"] == 10
    assert hello["d"]["heartbeat_interval"] > 0
    assert ack == {"op": 11}
    assert (ready["t"], ready["s"]) == ("READY", 1)
    assert ready["d"]["resume_gateway_url"] == fake.gateway_url
    assert (guild["t"], guild["s"]) == ("GUILD_CREATE", 2)
    assert all(isinstance(r, str) for m in guild["d"]["members"] for r in m["roles"])
    # Without the MESSAGE_CONTENT intent, content is blanked, as Discord does.
    assert (message["t"], message["s"]) == ("MESSAGE_CREATE", 3)
    assert message["d"]["content"] == ""


async def test_gateway_zlib_stream_and_message_content_intent() -> None:
    intents = (1 << 0) | (1 << 9) | (1 << 15)
    async with open_fake_discord() as fake:
        *_, message = await _identify(fake, intents=intents, compress=True)
    assert message["d"]["content"] == "secret words"
    assert message["d"]["member"]["roles"] == []


async def test_gateway_rejects_a_wrong_token() -> None:
    async with (
        open_fake_discord() as fake,
        aiohttp.ClientSession() as session,
        session.ws_connect(fake.gateway_url + "?v=10&encoding=json") as ws,
    ):
        with anyio.fail_after(5):
            await ws.receive()  # HELLO
            await ws.send_json({"op": 2, "d": {"token": "wrong", "intents": 1, "properties": {}}})
            closing = await ws.receive()
    assert closing.type is aiohttp.WSMsgType.CLOSE
    assert closing.data == 4004
    assert fake.identify_count == 0


async def _authenticated(
    fake: FakeDiscord, session: aiohttp.ClientSession
) -> aiohttp.ClientWebSocketResponse:
    ws = await session.ws_connect(fake.gateway_url + "?v=10&encoding=json")
    assert (await _next(ws, None))["op"] == 10
    await ws.send_json({"op": 2, "d": {"token": fake.token, "intents": 1, "properties": {}}})
    assert (await _next(ws, None))["t"] == "READY"
    assert (await _next(ws, None))["t"] == "GUILD_CREATE"
    return ws


async def test_gateway_heartbeats_after_identify_and_refuses_a_second_one() -> None:
    """Regression (audit 11): a second IDENTIFY was ignored instead of closed with 4005."""
    async with open_fake_discord() as fake, aiohttp.ClientSession() as session:
        with anyio.fail_after(5):
            ws = await _authenticated(fake, session)
            acks = []
            for beat in (2, 2):
                await ws.send_json({"op": 1, "d": beat})
                acks.append(await _next(ws, None))
            await ws.send_json({"op": 2, "d": {"token": fake.token, "intents": 1}})
            closing = await ws.receive()
            await ws.close()
    assert acks == [{"op": 11}, {"op": 11}]
    assert (closing.type, closing.data) == (aiohttp.WSMsgType.CLOSE, 4005)
    assert fake.identify_count == 1


async def test_edit_with_null_flags_keeps_an_integer() -> None:
    """Regression (audit 12): ``flags: null`` in an edit stored ``[]`` as the flags."""
    async with open_fake_discord() as fake, aiohttp.ClientSession() as session:
        headers = {"Authorization": f"Bot {fake.token}"}
        url = f"{fake.api_base}/channels/{fake.channel('general').id}/messages"
        async with session.post(url, json={"content": "v1"}, headers=headers) as created:
            message_id = json.loads(await created.read())["id"]
        edit = {"content": "v2", "flags": None}
        async with session.patch(f"{url}/{message_id}", json=edit, headers=headers) as edited:
            status, body = edited.status, json.loads(await edited.read())
    assert status == 200
    assert (body["content"], body["flags"]) == ("v2", 0)
