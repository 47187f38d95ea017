"""The fake's world: one guild, its roles, members and channels, and every message.

This module owns the data and the payload shapes discord.py parses. It knows nothing
about HTTP or websockets: the REST routes and the gateway read and change it, and tests
read the log of what the bot did (:class:`BotAction`). It does not own rate limits or
fault injection (see ``ratelimit.py``).
"""

from __future__ import annotations

import datetime
import itertools
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import anyio

if TYPE_CHECKING:
    from collections.abc import Callable

DISCORD_EPOCH_MS = 1_420_070_400_000
"""Milliseconds from the Unix epoch to Discord's epoch (2015-01-01)."""

VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
ADD_REACTIONS = 1 << 6
USE_APPLICATION_COMMANDS = 1 << 31
EVERYONE_PERMISSIONS = (
    VIEW_CHANNEL | SEND_MESSAGES | READ_MESSAGE_HISTORY | ADD_REACTIONS | USE_APPLICATION_COMMANDS
)
BOT_PERMISSIONS = EVERYONE_PERMISSIONS | MANAGE_MESSAGES | EMBED_LINKS | ATTACH_FILES

REPLY = 19
"""Message type of a reply (``message_reference`` to a message)."""

T = TypeVar("T")

ActionKind = Literal["create", "edit", "delete", "react", "unreact", "typing"]


_CUSTOM_EMOJI = re.compile(r"^<?(?:(?P<animated>a)?:)?(?P<name>\w+):(?P<id>\d+)>?$")
"""A custom emoji as a route key or a mention: ``name:id``, ``:name:id``, ``a:name:id``,
``<:name:id>``, ``<a:name:id>`` (discord.py strips only the angle brackets)."""


def parse_emoji(raw: str) -> tuple[str, dict[str, Any]]:
    """Return the reaction key (``"👍"`` or ``"name:id"``) and partial emoji of ``raw``."""
    found = _CUSTOM_EMOJI.match(raw)
    if found is None:
        return raw, {"id": None, "name": raw}
    payload = {"id": found["id"], "name": found["name"], "animated": bool(found["animated"])}
    return f"{found['name']}:{found['id']}", payload


class SnowflakeSource:
    """Makes strictly increasing snowflakes whose timestamp part is the current time."""

    def __init__(self) -> None:
        self._last = 0
        self._counter = itertools.count()

    def next(self) -> int:
        """Return a fresh snowflake, greater than every one returned before."""
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        candidate = (ms << 22) | (next(self._counter) & 0xFFF)
        self._last = max(candidate, self._last + 1)
        return self._last


def iso_now() -> str:
    """Return the current UTC time in Discord's ISO 8601 format."""
    return datetime.datetime.now(datetime.UTC).isoformat()


@dataclass(slots=True, kw_only=True)
class FakeRole:
    """A guild role; ``permissions`` is Discord's permission bit field."""

    id: int
    name: str
    permissions: int
    position: int

    def payload(self) -> dict[str, Any]:
        """Return the role object discord.py's ``Role`` parses."""
        return {
            "id": str(self.id),
            "name": self.name,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": self.position,
            "permissions": str(self.permissions),
            "managed": False,
            "mentionable": True,
            "flags": 0,
        }


@dataclass(slots=True, kw_only=True)
class FakeUser:
    """A user and their guild membership (the fake has exactly one guild)."""

    id: int
    name: str
    is_bot: bool = False
    role_ids: list[int] = field(default_factory=list)
    joined_at: str = field(default_factory=iso_now)

    def payload(self) -> dict[str, Any]:
        """Return the user object (``author``, ``user`` fields)."""
        return {
            "id": str(self.id),
            "username": self.name,
            "discriminator": "0",
            "global_name": self.name,
            "avatar": None,
            "bot": self.is_bot,
            "system": False,
            "public_flags": 0,
            "flags": 0,
            "banner": None,
            "accent_color": None,
        }

    def member_payload(self, *, with_user: bool = True) -> dict[str, Any]:
        """Return the guild member object; ``roles`` is a list of role ids."""
        member: dict[str, Any] = {
            "roles": [str(r) for r in self.role_ids],
            "joined_at": self.joined_at,
            "nick": None,
            "avatar": None,
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "pending": False,
            "flags": 0,
            "communication_disabled_until": None,
        }
        if with_user:
            member["user"] = self.payload()
        return member


@dataclass(slots=True, kw_only=True)
class FakeChannel:
    """A guild text channel. ``bot_denied`` hides it from the bot (403 on every route)."""

    id: int
    name: str
    position: int
    guild_id: int
    bot_id: int
    bot_denied: bool = False
    topic: str | None = None
    messages: dict[int, dict[str, Any]] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        """Return the channel object discord.py's ``TextChannel`` parses."""
        overwrites = []
        if self.bot_denied:
            deny = VIEW_CHANNEL | SEND_MESSAGES
            overwrites.append({"id": str(self.bot_id), "type": 1, "allow": "0", "deny": str(deny)})
        last = next(reversed(self.messages), None)
        return {
            "id": str(self.id),
            "type": 0,
            "guild_id": str(self.guild_id),
            "name": self.name,
            "position": self.position,
            "permission_overwrites": overwrites,
            "topic": self.topic,
            "nsfw": False,
            "last_message_id": None if last is None else str(last),
            "rate_limit_per_user": 0,
            "parent_id": None,
            "flags": 0,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class BotAction:
    """One thing the bot did in a channel, as the fake saw it.

    Attributes:
        kind: ``create``, ``edit``, ``delete``, ``react``, ``unreact`` or ``typing``.
        channel_id: The channel it happened in.
        message_id: The message concerned (``None`` for typing).
        message: A snapshot of the message payload after the action (``None`` for
            typing and delete).
        emoji: The emoji for reactions: ``"👍"``, or ``"name:id"`` for a custom one.
        interaction_id: Set when the action was an interaction response or follow-up.
    """

    kind: ActionKind
    channel_id: int
    message_id: int | None = None
    message: dict[str, Any] | None = None
    emoji: str | None = None
    interaction_id: int | None = None

    @property
    def content(self) -> str | None:
        """The message content after the action, if there is a message."""
        return None if self.message is None else str(self.message.get("content", ""))


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
            message["message_reference"] = reference
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
