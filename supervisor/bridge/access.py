"""Who a Discord member is to dsup: the access level ``[discord.access]`` grants them.

The highest level any of the member's role or user ids is listed in, else ``NONE``; it becomes
the command surface's :class:`Actor`, so Discord and ``dsup ctl`` are checked alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord

from supervisor.commands.access import AccessLevel, Actor

if TYPE_CHECKING:
    from collections.abc import Iterable

    from supervisor.config.schema import AccessSpec


def level_of(access: AccessSpec, user_id: int, role_ids: Iterable[int]) -> AccessLevel:
    """The highest level ``access`` grants the user or any of their roles."""
    ids = {user_id, *role_ids}
    for level, listed in (
        (AccessLevel.ADMIN, access.admin),
        (AccessLevel.OPERATOR, access.operator),
        (AccessLevel.VIEWER, access.viewer),
    ):
        if ids.intersection(listed):
            return level
    return AccessLevel.NONE


def actor_of(access: AccessSpec, user: discord.User | discord.Member) -> Actor:
    """The actor a Discord user is, with the level their id and roles grant.

    A :class:`discord.User` (no guild, so no roles) is judged by its id alone.
    The guild's ``@everyone`` role has the guild's id: listing it grants a
    level to every member.
    """
    roles = [r.id for r in user.roles] if isinstance(user, discord.Member) else []
    return Actor(
        name=f"{user.name} ({user.id})",
        source="discord",
        level=level_of(access, user.id, roles),
    )
