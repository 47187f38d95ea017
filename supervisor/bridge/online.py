"""``dsup check --online``: log in to Discord and say what works, without starting the fleet.

It reports the bot, the guild, what the bot may do in each configured channel, and
whether the slash commands are registered, with what to do about each problem.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio
import discord

from supervisor.bridge.client import bridge_intents, no_voice
from supervisor.bridge.endpoints import point_discord_at
from supervisor.bridge.logs import quiet_discord_logs, scrub
from supervisor.errors import ConfigError

if TYPE_CHECKING:
    from supervisor.config.schema import DiscordSpec

logger = logging.getLogger(__name__)

CHANNEL_KEYS = ("status_channel", "log_channel", "results_channel", "task_channel", "audit_channel")
# What the bridge needs in a channel, and why (the docs list the same).
NEEDED = (
    ("view_channel", "view"),
    ("send_messages", "send"),
    ("embed_links", "embed"),
    ("attach_files", "attach"),
    ("add_reactions", "react"),
    ("read_message_history", "read history"),
)
INVITE_PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    embed_links=True,
    attach_files=True,
    add_reactions=True,
    read_message_history=True,
)
"""The permissions dsup's invite URL asks for."""


@dataclass(slots=True)
class OnlineReport:
    """What ``check --online`` found: lines to print, and problems with their fixes."""

    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def is_ok(self) -> bool:
        """True when nothing needs fixing."""
        return not self.problems

    def text(self) -> str:
        """The report for a terminal."""
        tail = (
            ["all well"]
            if self.is_ok
            else [f"{len(self.problems)} problem(s):", *(f"  - {p}" for p in self.problems)]
        )
        return "\n".join(self.lines + tail)


def invite_url(application_id: int) -> str:
    """The URL that adds the bot to a server with the scopes and permissions dsup needs."""
    return discord.utils.oauth_url(
        application_id,
        permissions=INVITE_PERMISSIONS,
        scopes=("bot", "applications.commands"),
    )


async def check_online(
    spec: DiscordSpec, *, timeout_seconds: float = 30.0, guild_ready_timeout: float = 2.0
) -> OnlineReport:
    """Log in with ``spec``'s token and report; never raises for Discord's answers.

    A token that cannot be read (unset variable, unsafe file) is a problem too.
    """
    report = OnlineReport()
    try:
        token = await anyio.to_thread.run_sync(spec.read_token)
    except ConfigError as exc:
        report.problems.append(str(exc))
        return report
    quiet_discord_logs(token)
    point_discord_at(spec.api_base, spec.gateway_url)
    no_voice()
    client = discord.Client(intents=bridge_intents(), guild_ready_timeout=guild_ready_timeout)
    try:
        async with client, anyio.create_task_group() as tasks:
            with anyio.move_on_after(timeout_seconds) as scope:
                failure = await _connect(client, token, tasks)
                if failure:
                    report.problems.append(scrub(failure, token))
                else:
                    await _inspect(client, spec, report)
            if scope.cancelled_caught:
                report.problems.append(
                    f"no answer from Discord within {timeout_seconds:.0f} s at {spec.api_base} "
                    f"and {spec.gateway_url}: check the network and those two keys"
                )
            tasks.cancel_scope.cancel("check done")
            with anyio.move_on_after(5, shield=True):
                await client.close()
    except (discord.DiscordException, OSError) as exc:
        report.problems.append(scrub(f"{type(exc).__name__}: {exc}", token))
    return report


async def _connect(client: discord.Client, token: str, tasks: anyio.abc.TaskGroup) -> str:
    """Log in and connect; "" when ready, else what went wrong."""
    try:
        await client.login(token)
    except discord.LoginFailure:
        return (
            "Discord rejected the bot token (401): copy a fresh one from the Developer "
            "Portal (Bot > Reset Token) to where token_env or token_file says"
        )
    except discord.HTTPException as exc:
        return f"Discord refused the login: {exc.status} {exc.text}"
    failed: list[str] = []

    async def connect() -> None:
        try:
            await client.connect(reconnect=False)
        except discord.ConnectionClosed as exc:
            failed.append(f"the gateway closed the connection (code {exc.code})")
        except (discord.DiscordException, OSError) as exc:
            failed.append(f"the gateway could not be reached: {type(exc).__name__}: {exc}")

    tasks.start_soon(connect)
    while not client.is_ready() and not failed:  # noqa: ASYNC110 - either may come first
        await anyio.sleep(0.05)
    return failed[0] if failed else ""


async def _inspect(client: discord.Client, spec: DiscordSpec, report: OnlineReport) -> None:
    user = client.user
    assert user is not None  # ready
    app_id = client.application_id or user.id
    report.lines.append(f"bot: {user} (id {user.id})")
    guild = client.get_guild(spec.guild_id)
    if not spec.guild_id:
        report.problems.append(
            "discord.guild_id is not set: turn on Developer Mode in Discord, right-click your "
            f"server > Copy Server ID; the bot joins it with {invite_url(app_id)}"
        )
        return
    if guild is None:
        report.lines.append(f"guild: {spec.guild_id}: the bot is not a member")
        report.problems.append(
            f"the bot is not in guild {spec.guild_id}: check guild_id, or invite it with "
            f"{invite_url(app_id)}"
        )
        return
    report.lines.append(f"guild: {guild.name} (id {guild.id})")
    me = guild.me
    report.lines.append("channels:")
    for key in CHANNEL_KEYS:
        channel_id = getattr(spec, key)
        if channel_id:
            _inspect_channel(guild, me, key, channel_id, report)
    if not any(getattr(spec, key) for key in CHANNEL_KEYS):
        report.lines.append("  none configured (no board, no relay)")
    try:
        commands = await client.http.get_guild_commands(app_id, guild.id)
    except discord.HTTPException as exc:
        report.problems.append(f"cannot list the slash commands: {exc.status} {exc.text}")
        return
    names = sorted(str(c["name"]) for c in commands)
    if names:
        report.lines.append(f"slash commands: {len(names)} registered: /" + ", /".join(names))
    else:
        report.lines.append("slash commands: none registered")
        report.problems.append(
            "no slash commands in the guild: `dsup run` registers them when the bridge "
            "starts (or `dsup ctl discord-sync`); if they stay missing, re-invite the bot "
            f"with the applications.commands scope: {invite_url(app_id)}"
        )


def _inspect_channel(
    guild: discord.Guild, me: discord.Member, key: str, channel_id: int, report: OnlineReport
) -> None:
    channel = guild.get_channel(channel_id)
    if not isinstance(channel, discord.TextChannel | discord.ForumChannel):
        report.lines.append(f"  {key} {channel_id}: not visible")
        report.problems.append(
            f"{key} {channel_id}: the bot cannot see it: check the id (Developer Mode, "
            "right-click the channel > Copy Channel ID) and give the bot View Channel there"
        )
        return
    permissions = channel.permissions_for(me)
    have = [word for attr, word in NEEDED if getattr(permissions, attr)]
    missing = [word for attr, word in NEEDED if not getattr(permissions, attr)]
    if not missing:
        report.lines.append(f"  {key} #{channel.name}: ok ({', '.join(have)})")
        return
    report.lines.append(f"  {key} #{channel.name}: cannot {', '.join(missing)}")
    report.problems.append(
        f"{key} #{channel.name}: the bot cannot {', '.join(missing)} there: in the channel's "
        "settings (Permissions), allow them for the bot's role"
    )


def run_check_online(spec: DiscordSpec) -> OnlineReport:
    """``check_online`` in its own event loop (for the command line)."""
    return anyio.run(check_online, spec, backend="asyncio")
