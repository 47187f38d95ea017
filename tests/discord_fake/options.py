"""Slash command options as Discord's client sends them: typed, checked and resolved.

A test names option values loosely (``lines=5`` or ``lines="5"``, a :class:`FakeUser`,
a user's id or name, a channel's name...). This module converts each value to the type
the bot registered for that option, refuses what Discord's client would never send (a
missing required option, a value outside the choices or the bounds, a value of the
wrong type) with an :class:`OptionError` that names the command, the option and the
fix, and builds ``data.resolved`` (users and members, roles, channels) from the store,
which discord.py needs to turn user, member, channel and role options into objects.

It does not own the interaction payload around the options (``interaction.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tests.discord_fake.models import FakeChannel, FakeRole, FakeUser

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.discord_fake.store import FakeStore

SUB_COMMAND, SUB_COMMAND_GROUP = 1, 2
STRING, INTEGER, BOOLEAN, USER, CHANNEL, ROLE, MENTIONABLE, NUMBER, ATTACHMENT = range(3, 12)
_TYPE_NAMES = {
    STRING: "text",
    INTEGER: "an integer",
    BOOLEAN: "a boolean",
    USER: "a user",
    CHANNEL: "a channel",
    ROLE: "a role",
    MENTIONABLE: "a user or role",
    NUMBER: "a number",
    ATTACHMENT: "an attachment",
}
_TEXT_CHANNEL = 0


class OptionError(ValueError):
    """A test invoked a slash command with options Discord's client would not send.

    Attributes:
        command: The command as invoked (``"task add"``).
        option: The option concerned.
    """

    def __init__(self, command: str, option: str, problem: str) -> None:
        super().__init__(f"/{command} option {option!r}: {problem}")
        self.command = command
        self.option = option


@dataclass(slots=True, kw_only=True)
class OptionBuilder:
    """Builds the ``options`` and ``resolved`` of one command interaction.

    Args:
        store: Where users, roles and channels are looked up.
        user: Who invokes it (their permissions go into resolved members and channels).
        command: The command as invoked, for error messages.
        focused: The option being typed, for autocomplete (``None`` for a command).
    """

    store: FakeStore
    user: FakeUser
    command: str
    focused: str | None = None
    resolved: dict[str, dict[str, Any]] = field(default_factory=dict)

    def build(self, specs: list[dict[str, Any]], values: dict[str, Any]) -> list[dict[str, Any]]:
        """Return the option objects for ``values`` against the registered ``specs``.

        Raises:
            LookupError: No registered option has one of the names.
            OptionError: A value is missing, of the wrong type, or not allowed.
        """
        by_name = {spec["name"]: spec for spec in specs}
        for name in values:
            if name not in by_name:
                raise LookupError(f"/{self.command} has no option {name!r}; it has {list(by_name)}")
        if self.focused is None:
            for spec in specs:
                if spec.get("required") and spec["name"] not in values:
                    raise OptionError(self.command, spec["name"], "is required")
        return [self._option(by_name[name], value) for name, value in values.items()]

    def _option(self, spec: dict[str, Any], value: Any) -> dict[str, Any]:
        name, kind = spec["name"], int(spec["type"])
        if name == self.focused:
            # Discord sends what the user has typed so far, whatever the option's type.
            return {"name": name, "type": kind, "value": str(value), "focused": True}
        convert = _CONVERTERS.get(kind)
        if convert is None:
            raise OptionError(self.command, name, f"the fake cannot send option type {kind}")
        try:
            sent = convert(self, value)
        except (LookupError, TypeError, ValueError) as exc:
            raise OptionError(self.command, name, f"expects {_TYPE_NAMES[kind]}: {exc}") from None
        self._check_allowed(spec, sent)
        return {"name": name, "type": kind, "value": sent}

    def _check_allowed(self, spec: dict[str, Any], sent: Any) -> None:
        name = spec["name"]
        choices = [c["value"] for c in spec.get("choices") or []]
        if choices and sent not in choices:
            raise OptionError(self.command, name, f"{sent!r} is not one of the choices {choices}")
        low, high = spec.get("min_value"), spec.get("max_value")
        if (low is not None and sent < low) or (high is not None and sent > high):
            raise OptionError(self.command, name, f"{sent!r} is outside [{low}, {high}]")
        shortest, longest = spec.get("min_length") or 0, spec.get("max_length")
        if isinstance(sent, str) and not shortest <= len(sent) <= (longest or len(sent)):
            raise OptionError(
                self.command, name, f"{sent!r} must be {shortest}..{longest} characters long"
            )
        kinds = spec.get("channel_types")
        if spec["type"] == CHANNEL and kinds and _TEXT_CHANNEL not in kinds:
            raise OptionError(self.command, name, f"accepts channel types {kinds}, not text")

    # --- resolving -------------------------------------------------------------------

    def resolve_user(self, user: FakeUser) -> str:
        """Add a user and their membership to ``resolved``; return the id to send."""
        key = str(user.id)
        self.resolved.setdefault("users", {})[key] = user.payload()
        member = user.member_payload(with_user=False)
        member["permissions"] = str(self.store.member_permissions(user))
        self.resolved.setdefault("members", {})[key] = member
        return key

    def resolve_role(self, role: FakeRole) -> str:
        """Add a role to ``resolved``; return the id to send."""
        self.resolved.setdefault("roles", {})[str(role.id)] = role.payload()
        return str(role.id)

    def resolve_channel(self, channel: FakeChannel) -> str:
        """Add a channel, with the invoking user's permissions, to ``resolved``."""
        data = channel.payload() | {"permissions": str(self.store.member_permissions(self.user))}
        self.resolved.setdefault("channels", {})[str(channel.id)] = data
        return str(channel.id)


def _string(_: OptionBuilder, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"got {value!r}; pass a str")
    return value


def _integer(_: OptionBuilder, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"got {value!r}")
    return int(value)


def _number(_: OptionBuilder, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f"got {value!r}")
    return float(value)


def _boolean(_: OptionBuilder, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise TypeError(f"got {value!r}; pass True/False or 'true'/'false'")


def _find(items: list[Any], value: Any, what: str) -> Any:
    """Return the item whose id or name is ``value`` (an object passes through)."""
    for item in items:
        if item is value or str(item.id) == str(value) or item.name == value:
            return item
    raise LookupError(f"no {what} {value!r} in the fake's guild")


def _user(builder: OptionBuilder, value: Any) -> str:
    return builder.resolve_user(_find(list(builder.store.users.values()), value, "user"))


def _role(builder: OptionBuilder, value: Any) -> str:
    return builder.resolve_role(_find(list(builder.store.roles.values()), value, "role"))


def _channel(builder: OptionBuilder, value: Any) -> str:
    channels = [c for c in builder.store.channels.values() if not c.deleted]
    return builder.resolve_channel(_find(channels, value, "channel"))


def _mentionable(builder: OptionBuilder, value: Any) -> str:
    if isinstance(value, FakeRole):
        return _role(builder, value)
    try:
        return _user(builder, value)
    except LookupError:
        return _role(builder, value)


_CONVERTERS: dict[int, Callable[[OptionBuilder, Any], Any]] = {
    STRING: _string,
    INTEGER: _integer,
    BOOLEAN: _boolean,
    NUMBER: _number,
    USER: _user,
    CHANNEL: _channel,
    ROLE: _role,
    MENTIONABLE: _mentionable,
}
