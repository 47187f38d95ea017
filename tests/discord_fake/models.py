"""The fake's records and the payload shapes discord.py parses: roles, users and their
membership, channels, the bot's actions, emoji, snowflakes and permission bits.

Plain data with no behaviour beyond building payloads; ``store.py`` owns the world
that holds them and the messages.
"""

from __future__ import annotations

import datetime
import itertools
import re
import time
from dataclasses import dataclass, field
from typing import Any, Literal

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
    """A guild text channel. ``bot_denied`` hides it from the bot (403 on every route);
    a ``deleted`` one is kept for the test's counts but unknown to the bot (404)."""

    id: int
    name: str
    position: int
    guild_id: int
    bot_id: int
    bot_denied: bool = False
    deleted: bool = False
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
