"""The fake's world: one guild, its roles, members and channels, and every message.

This module owns the data: the guild payload, messages as the bot sees them,
reactions, and the log of what the bot did (:class:`BotAction`), with a way to wait for
changes. It knows nothing about HTTP or websockets: the REST routes and the gateway
read and change it. The records and their payload shapes are in ``models.py``; rate
limits and fault injection are in ``ratelimit.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from tests.discord_fake.models import (
    BOT_PERMISSIONS,
    EVERYONE_PERMISSIONS,
    REPLY,
    BotAction,
    FakeChannel,
    FakeRole,
    FakeUser,
    SnowflakeSource,
    iso_now,
    parse_emoji,
)

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")


class FakeStore:
    """The single guild the fake serves, with its members, channels and messages.

    Args:
        bot_name: The bot user's name.
        token: The bot token the fake accepts.
    """

    def __init__(self, *, bot_name: str = "dsup-bot", token: str = "fake-token") -> None:
        self.snowflakes = SnowflakeSource()
        self.token = token
        self.application_id = self.snowflakes.next()
        self.guild_id = self.snowflakes.next()
        self.guild_name = "dsup-test"
        self.bot = FakeUser(id=self.application_id, name=bot_name, is_bot=True)
        self.roles: dict[int, FakeRole] = {}
        self.owner = FakeUser(id=self.snowflakes.next(), name="guild-owner")
        self.users: dict[int, FakeUser] = {self.bot.id: self.bot, self.owner.id: self.owner}
        self.channels: dict[int, FakeChannel] = {}
        self.actions: list[BotAction] = []
        self.attachments: dict[int, bytes] = {}
        self.commands: dict[int | None, list[dict[str, Any]]] = {}
        self.command_creations: list[str] = []  # names created by bulk overwrites, in order
        self.command_overwrites = 0
        self.reactions: dict[int, dict[str, list[int]]] = {}
        self._emojis: dict[str, dict[str, Any]] = {}
        self._changed = anyio.Event()
        self.add_role("@everyone", EVERYONE_PERMISSIONS, role_id=self.guild_id)
        bot_role = self.add_role(bot_name, BOT_PERMISSIONS)
        self.bot.role_ids.append(bot_role.id)

    # --- world building -------------------------------------------------------------

    def add_role(self, name: str, permissions: int, *, role_id: int | None = None) -> FakeRole:
        """Create a role and return it."""
        role = FakeRole(
            id=role_id or self.snowflakes.next(),
            name=name,
            permissions=permissions,
            position=len(self.roles),
        )
        self.roles[role.id] = role
        return role

    def role_named(self, name: str) -> FakeRole:
        """Return the role called ``name``; raise ``LookupError`` if there is none."""
        for role in self.roles.values():
            if role.name == name:
                return role
        raise LookupError(f"no role named {name!r}; known: {[r.name for r in self.roles.values()]}")

    def member_permissions(self, user: FakeUser) -> int:
        """Return the guild-level permission bits of ``user`` (@everyone plus roles)."""
        permissions = 0
        for role_id in [self.guild_id, *user.role_ids]:
            permissions |= self.roles[role_id].permissions
        return permissions

    def add_user(self, name: str, *, role_ids: list[int] | None = None) -> FakeUser:
        """Create a guild member with the given (existing) roles."""
        user = FakeUser(id=self.snowflakes.next(), name=name, role_ids=list(role_ids or []))
        self.users[user.id] = user
        self.notify()
        return user

    def add_channel(self, name: str, *, bot_denied: bool = False) -> FakeChannel:
        """Create a text channel and return it."""
        channel = FakeChannel(
            id=self.snowflakes.next(),
            name=name,
            position=len(self.channels),
            guild_id=self.guild_id,
            bot_id=self.bot.id,
            bot_denied=bot_denied,
        )
        self.channels[channel.id] = channel
        return channel

    def channel(self, ref: int | str) -> FakeChannel:
        """Return a channel by id or name; raise ``LookupError`` if unknown."""
        if isinstance(ref, int):
            return self.channels[ref]
        for channel in self.channels.values():
            if channel.name == ref:
                return channel
        raise LookupError(f"no channel named {ref!r}")

    def guild_payload(self) -> dict[str, Any]:
        """Return the full GUILD_CREATE payload: roles, members and text channels."""
        return {
            "id": str(self.guild_id),
            "name": self.guild_name,
            "icon": None,
            "owner_id": str(self.owner.id),
            "unavailable": False,
            "large": False,
            "member_count": len(self.users),
            "joined_at": self.bot.joined_at,
            "roles": [r.payload() for r in self.roles.values()],
            "members": [u.member_payload() for u in self.users.values()],
            "channels": [
                {k: v for k, v in c.payload().items() if k != "guild_id"}
                for c in self.channels.values()
                if not c.deleted
            ],
            "threads": [],
            "emojis": [],
            "stickers": [],
            "features": [],
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "system_channel_id": None,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
        }

    # --- messages -------------------------------------------------------------------

    def new_message(
        self,
        channel: FakeChannel,
        author: FakeUser,
        body: dict[str, Any],
        *,
        attachments: list[dict[str, Any]] | None = None,
        message_type: int = 0,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Build a message payload from a create body; the caller decides whether to store it.

        Args:
            channel: Where it is posted.
            author: Who posts it.
            body: The create body (``content``, ``embeds``, ``components``, ``flags``...).
            attachments: The stored attachment objects (the body only describes uploads).
            message_type: Discord's message type (0 default, 19 reply, 20 command).
            extra: Further keys, set last.
        """
        message: dict[str, Any] = {
            "id": str(self.snowflakes.next()),
            "channel_id": str(channel.id),
            "author": author.payload(),
            "content": body.get("content") or "",
            "timestamp": iso_now(),
            "edited_timestamp": None,
            "tts": bool(body.get("tts", False)),
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": list(attachments or []),
            "embeds": body.get("embeds") or [],
            "components": body.get("components") or [],
            "reactions": [],
            "pinned": False,
            "type": message_type,
            "flags": int(body.get("flags") or 0),
        }
        if body.get("nonce") is not None:
            message["nonce"] = body["nonce"]
        reference = body.get("message_reference")
        if reference:
            # Discord answers with snowflakes as strings, whatever the bot sent.
            message["message_reference"] = {
                k: str(v) if k.endswith("_id") and v is not None else v
                for k, v in reference.items()
            }
            if message_type == 0 and reference.get("type", 0) == 0:
                message["type"] = REPLY
        message.update(extra or {})
        return message

    def store_message(self, channel: FakeChannel, message: dict[str, Any]) -> None:
        """Add a message to the channel's history."""
        channel.messages[int(message["id"])] = message
        self.notify()

    def find_message(self, channel: FakeChannel, message_id: int) -> dict[str, Any] | None:
        """Return a stored message, or ``None``."""
        return channel.messages.get(message_id)

    def find_any_message(self, message_id: int) -> tuple[FakeChannel, dict[str, Any]] | None:
        """Return the channel and payload of a message in any channel, or ``None``."""
        for channel in self.channels.values():
            if message_id in channel.messages:
                return channel, channel.messages[message_id]
        return None

    def message_view(self, message: dict[str, Any], *, nested: bool = False) -> dict[str, Any]:
        """Return a message as the bot sees it now: ``reactions`` (``me`` is the bot) and,
        for a reply, ``referenced_message`` (``None`` once that message is deleted).

        Keys starting with ``_`` are the fake's bookkeeping and are left out. ``nested``
        views (the referenced message itself) carry no ``referenced_message``, as on
        Discord.
        """
        view = {k: v for k, v in message.items() if not k.startswith("_")}
        if message.get("type") == REPLY and not nested:
            found = self.find_any_message(int(message["message_reference"]["message_id"]))
            view["referenced_message"] = (
                None if found is None else self.message_view(found[1], nested=True)
            )
        view["reactions"] = [
            {
                "emoji": self.emoji_payload(key),
                "count": len(users),
                "count_details": {"burst": 0, "normal": len(users)},
                "me": self.bot.id in users,
                "me_burst": False,
                "burst_me": False,
                "burst_colors": [],
                "burst_count": 0,
            }
            for key, users in self.reactions.get(int(message["id"]), {}).items()
            if users
        ]
        return view

    def reaction_key(self, raw: str) -> str:
        """Return the key of an emoji as the bot or a test names it; remember its shape.

        Custom emoji are keyed ``name:id`` whatever form named them; one named with the
        ``a:`` prefix is remembered as animated.
        """
        key, payload = parse_emoji(raw)
        if key not in self._emojis or payload.get("animated"):
            self._emojis[key] = payload
        return key

    def emoji_payload(self, key: str) -> dict[str, Any]:
        """Return the partial emoji object of a reaction key."""
        return dict(self._emojis.get(key) or parse_emoji(key)[1])

    def add_reaction(self, message_id: int, key: str, user_id: int) -> bool:
        """Add a reaction (``key`` from :meth:`reaction_key`); ``False`` if already there."""
        users = self.reactions.setdefault(message_id, {}).setdefault(key, [])
        if user_id in users:
            return False
        users.append(user_id)
        return True

    def remove_reaction(self, message_id: int, key: str, user_id: int) -> bool:
        """Remove a reaction; return ``False`` if that user did not have it."""
        users = self.reactions.get(message_id, {}).get(key, [])
        if user_id not in users:
            return False
        users.remove(user_id)
        return True

    # --- the bot's action log and waiting ----------------------------------------------

    def record(self, action: BotAction) -> None:
        """Append to the bot's action log and wake waiters."""
        self.actions.append(action)
        self.notify()

    def notify(self) -> None:
        """Wake every :meth:`wait_until` so it re-checks its predicate."""
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_until(self, predicate: Callable[[], T | None], *, timeout_seconds: float) -> T:
        """Wait until ``predicate()`` returns something truthy, and return it.

        Args:
            predicate: Checked now and after every change to the store.
            timeout_seconds: Seconds before ``TimeoutError``.

        Raises:
            TimeoutError: The predicate stayed falsy for ``timeout_seconds``.
        """
        with anyio.fail_after(timeout_seconds):
            while True:
                result = predicate()
                if result:
                    return result
                await self._changed.wait()
