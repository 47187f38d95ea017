"""A protocol-level Discord fake: unmodified discord.py talks to it over real HTTP and
websocket on 127.0.0.1.

Layout: ``models`` (roles, users, channels, the bot's actions, emoji: records and
payload shapes), ``store`` (the guild, its messages and reactions, the action log),
``ratelimit`` (buckets, headers, injected faults), ``http_util`` (middleware, errors,
bodies, message limits), ``rest_channels`` and ``rest_interactions`` (REST under
``/api/v10``), ``gateway`` (the websocket protocol), ``gateway_session`` (numbered
events, replay and the writer), ``interaction`` and ``options`` (interactions a test
starts, their typed options), ``server`` (:class:`FakeDiscord`, the handle, and
:func:`open_fake_discord`), ``controls`` (the handle's faults, rate-limit checks and
gateway controls), ``connect`` (pointing discord.py at a base URL), ``harness``
(running a client in a test), ``pytest_plugin`` (fixtures). ``python -m
tests.discord_fake`` serves it by hand.

Known departures from Discord (deliberate; change them here when a test needs more):

- One guild, text channels only; no DMs, threads, voice, forums, stickers, polls,
  webhooks other than interaction follow-ups; audit-log reasons are ignored.
- World changes made by the test are dispatched (GUILD_ROLE_CREATE, CHANNEL_CREATE,
  CHANNEL_DELETE, MESSAGE_DELETE, and with the GUILD_MEMBERS intent GUILD_MEMBER_ADD /
  GUILD_MEMBER_UPDATE), but only messages and channels are ever deleted (a deleted
  channel answers 404 Unknown Channel), roles and channels never change, users never type (no
  TYPING_START) and there are no presences. GUILD_CREATE lists every member whatever
  the intents (Discord sends few without GUILD_MEMBERS; discord.py then caches only the
  bot anyway). Privileged intents are always granted (never a 4014 close).
- Permissions are not computed: the bot may do everything except in channels created
  with ``bot_denied`` (403 Missing Access on every route, and no message or reaction
  events from them; an interaction there still arrives, as on Discord); users' roles
  are only carried in payloads (``member.roles``, ``member.permissions``) for the bot
  to check.
- Rate limits: one fixed window per route and major parameter (channel, guild, one
  interaction for callbacks, webhook id + token for follow-ups; default 5 per 5 s for
  sending messages, 50 per 1 s elsewhere), no global limit, no shared buckets between
  routes, no sub-limits (such as deleting messages younger than 10 s). Refused
  requests (400, 403, 404) count against their bucket too.
- Markdown is not parsed. In a message the bot creates, ``mention_everyone`` and
  ``mentions`` say whom it pings: ``@everyone``/``@here`` and ``<@id>`` of known users
  as its ``allowed_mentions`` allow (all when absent; code blocks are not told apart;
  roles are never pinged). In users' messages ``mentions`` holds the bot only for
  ``post_message(mention_bot=True)`` and a reply to the bot. Message
  references are replies only (no forwards). Embeds are checked against Discord's
  length and count limits, not their URLs or image shapes; an edit may change only
  the SUPPRESS_EMBEDS flag. Attachments are stored in memory and served from the fake
  itself, not a CDN; their size is checked only in answers to interactions (against
  the ``attachment_size_limit`` the interaction told), not in channel messages.
- The gateway sends no heartbeats-missed close, ignores PRESENCE_UPDATE and voice,
  sends RECONNECT or INVALID_SESSION only when a test asks, delivers an event twice
  only when a test asks (``replay_message``), and supports
  ``zlib-stream`` or uncompressed frames (not ``zstd-stream``, not ETF). A session
  keeps every event not yet written plus the last 1000 written ones for RESUME; a
  client 100,000 events behind loses its session (closed with 4000, its RESUME
  refused), where Discord's exact bounds are unpublished.
- Interactions: responses are type 20 messages for slash commands and type 0
  otherwise; attachment options (type 11) and context-menu commands cannot be invoked;
  modals are accepted but cannot be submitted; interaction tokens never expire (only
  the 3 s deadline for the initial callback is enforced).
"""

from __future__ import annotations

from tests.discord_fake.connect import DiscordEndpoints, pointed_at, use_discord_api
from tests.discord_fake.harness import GUILD_READY_TIMEOUT, intents_for_tests, run_client
from tests.discord_fake.interaction import InteractionRecord, InteractionReply
from tests.discord_fake.models import BotAction, FakeChannel, FakeRole, FakeUser
from tests.discord_fake.options import OptionError
from tests.discord_fake.ratelimit import BucketStats, Fault
from tests.discord_fake.server import FakeDiscord, open_fake_discord

__all__ = [
    "GUILD_READY_TIMEOUT",
    "BotAction",
    "BucketStats",
    "DiscordEndpoints",
    "FakeChannel",
    "FakeDiscord",
    "FakeRole",
    "FakeUser",
    "Fault",
    "InteractionRecord",
    "InteractionReply",
    "OptionError",
    "intents_for_tests",
    "open_fake_discord",
    "pointed_at",
    "run_client",
    "use_discord_api",
]
