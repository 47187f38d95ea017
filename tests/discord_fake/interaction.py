"""Interactions a test starts as a user, and the bot's answers to them.

Builds the INTERACTION_CREATE payloads (slash command, autocomplete, component) that
discord.py 2.7 parses, and keeps one :class:`InteractionRecord` per interaction so a test
can await the callback, follow-ups and edits. The REST side of the answers lives in
``rest_interactions.py``.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from tests.discord_fake.models import BOT_PERMISSIONS, FakeChannel, FakeUser
from tests.discord_fake.options import SUB_COMMAND, SUB_COMMAND_GROUP, OptionBuilder

if TYPE_CHECKING:
    from tests.discord_fake.store import FakeStore

ReplyKind = Literal["callback", "followup", "edit", "delete"]

EPHEMERAL = 1 << 6
APPLICATION_COMMAND = 2
MESSAGE_COMPONENT = 3
AUTOCOMPLETE = 4
MODAL_SUBMIT = 5
TEXT_INPUT = 4

ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024
"""Discord's default attachment limit (boosted servers allow more)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class InteractionReply:
    """One answer of the bot to an interaction.

    Attributes:
        kind: ``callback`` (the initial response), ``followup``, ``edit`` (of the original
            or a follow-up) or ``delete``.
        type: The callback type for ``callback`` (4 message, 5 defer, 6 deferred update,
            7 update message, 8 autocomplete result, 9 modal), else ``None``.
        data: The callback's ``data``, or the message body sent.
        message: The message created or edited, if any.
    """

    kind: ReplyKind
    type: int | None
    data: dict[str, Any]
    message: dict[str, Any] | None = None

    @property
    def content(self) -> str | None:
        """Content of the resulting message, if any."""
        return None if self.message is None else str(self.message.get("content", ""))

    @property
    def choices(self) -> list[dict[str, Any]]:
        """Autocomplete choices (callback type 8)."""
        return list(self.data.get("choices", []))


@dataclass(slots=True, kw_only=True)
class InteractionRecord:
    """An interaction the fake sent to the bot, with everything the bot answered.

    Attributes:
        id: The interaction id.
        token: The interaction token (used by callback and webhook routes).
        type: 2 application command, 3 component, 4 autocomplete, 5 modal submit.
        channel_id: Where it happened.
        user: Who triggered it.
        payload: The INTERACTION_CREATE data sent to the bot.
        replies: The bot's answers, in order.
        message_id: The message a component belongs to, if any.
        original_message_id: The message the original response created or updated.
        messages: Messages created in answer (ephemeral ones included), by id.
        is_loading: The original response is a "thinking" defer not yet replaced.
        refused: Discord error codes of callbacks the fake refused (10062 too late,
            40060 already acknowledged), in order.
        created_at: ``time.monotonic()`` when it was dispatched.
    """

    id: int
    token: str
    type: int
    channel_id: int
    user: FakeUser
    payload: dict[str, Any]
    store: FakeStore
    replies: list[InteractionReply] = field(default_factory=list)
    message_id: int | None = None
    original_message_id: int | None = None
    messages: dict[int, dict[str, Any]] = field(default_factory=dict)
    is_loading: bool = False
    refused: list[int] = field(default_factory=list)
    created_at: float = field(default_factory=time.monotonic)

    @property
    def is_acknowledged(self) -> bool:
        """Whether the bot has sent the initial callback."""
        return any(r.kind == "callback" for r in self.replies)

    def refuse(self, code: int) -> None:
        """Note a refused callback and wake waiters."""
        self.refused.append(code)
        self.store.notify()

    def add_reply(self, reply: InteractionReply) -> None:
        """Record an answer and wake waiters."""
        self.replies.append(reply)
        self.store.notify()

    async def wait_reply(
        self, *, kind: ReplyKind = "callback", index: int = 0, timeout_seconds: float = 5.0
    ) -> InteractionReply:
        """Wait for the ``index``-th answer of ``kind`` and return it.

        Raises:
            TimeoutError: It did not come within ``timeout_seconds``.
        """

        def found() -> InteractionReply | None:
            matching = [r for r in self.replies if r.kind == kind]
            return matching[index] if len(matching) > index else None

        return await self.store.wait_until(found, timeout_seconds=timeout_seconds)


class InteractionBook:
    """Builds interactions and finds them again by id or token.

    Attributes:
        deadline_seconds: How long the bot has for the initial callback (Discord: 3 s).
        attachment_size_limit: The most bytes per file in answers to the interactions
            built from now on, told to the bot as ``attachment_size_limit``; a bigger
            file is refused with 413 (code 40005).
    """

    def __init__(self, store: FakeStore, *, deadline_seconds: float = 3.0) -> None:
        self.store = store
        self.deadline_seconds = deadline_seconds
        self.attachment_size_limit = ATTACHMENT_SIZE_LIMIT
        self.by_token: dict[str, InteractionRecord] = {}
        self.by_id: dict[int, InteractionRecord] = {}

    def _base(
        self, kind: int, user: FakeUser, channel: FakeChannel, data: dict[str, Any]
    ) -> InteractionRecord:
        store = self.store
        interaction_id = store.snowflakes.next()
        token = "aW50ZXJhY3Rpb24" + secrets.token_urlsafe(32)
        permissions = store.member_permissions(user)
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(store.application_id),
            "type": kind,
            "data": data,
            "guild_id": str(store.guild_id),
            "guild": {"id": str(store.guild_id), "locale": "en-US", "features": []},
            "channel_id": str(channel.id),
            "channel": channel.payload(),
            "member": user.member_payload() | {"permissions": str(permissions)},
            "token": token,
            "version": 1,
            "app_permissions": str(BOT_PERMISSIONS),
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(store.guild_id)},
            "context": 0,
            "attachment_size_limit": self.attachment_size_limit,
        }
        record = InteractionRecord(
            id=interaction_id,
            token=token,
            type=kind,
            channel_id=channel.id,
            user=user,
            payload=payload,
            store=store,
        )
        self.by_token[token] = record
        self.by_id[interaction_id] = record
        return record

    def command(
        self,
        user: FakeUser,
        channel: FakeChannel,
        name: str,
        options: dict[str, Any],
        *,
        focused: str | None = None,
    ) -> InteractionRecord:
        """Build a slash command (or, with ``focused``, an autocomplete) interaction.

        Args:
            user: Who runs it.
            channel: Where.
            name: The command, with subcommands separated by spaces (``"task add"``).
            options: Option values by name; types come from the registered command.
            focused: The option being typed, for autocomplete.

        Raises:
            LookupError: No such command, subcommand or option was registered by the bot
                (guild or global).
            OptionError: An option is missing, of the wrong type or not allowed.
        """
        top, *path = name.split()
        command = self._find_command(top)
        root, leaf, spec_options = _subcommand_path(command, path)
        builder = OptionBuilder(store=self.store, user=user, command=name, focused=focused)
        leaf.extend(builder.build(spec_options, options))
        data: dict[str, Any] = {
            "id": str(command["id"]),
            "name": top,
            "type": 1,
            "options": root,
        }
        if builder.resolved:
            data["resolved"] = builder.resolved
        if command.get("guild_id"):
            data["guild_id"] = str(command["guild_id"])
        kind = AUTOCOMPLETE if focused is not None else APPLICATION_COMMAND
        return self._base(kind, user, channel, data)

    def component(
        self,
        user: FakeUser,
        channel: FakeChannel,
        message: dict[str, Any],
        custom_id: str,
        *,
        component_type: int = 2,
        values: list[str] | None = None,
    ) -> InteractionRecord:
        """Build a component interaction (button click or select) on a bot message."""
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component_type}
        if values is not None:
            data["values"] = values
        record = self._base(MESSAGE_COMPONENT, user, channel, data)
        record.payload["message"] = self.store.message_view(message)
        record.message_id = int(message["id"])
        return record

    def modal_submit(
        self, opened_by: InteractionRecord, modal: dict[str, Any], values: dict[str, str]
    ) -> InteractionRecord:
        """Build the submit of a modal the bot opened in answer to ``opened_by``.

        The submitted components mirror the modal's (action rows or labels around text
        inputs), each text input with its ``value``; the modal's message, when it was
        opened from a component, comes along as Discord sends it.

        Raises:
            LookupError: ``values`` names a text input the modal does not have, or
                leaves out a required one.
        """
        rows: list[dict[str, Any]] = []
        seen: set[str] = set()
        name = modal.get("custom_id")
        for top in modal.get("components") or []:
            inner = top.get("components") or ([top["component"]] if "component" in top else [])
            filled = []
            for item in inner:
                if item.get("type") != TEXT_INPUT:
                    continue
                custom_id = item["custom_id"]
                seen.add(custom_id)
                if custom_id not in values and item.get("required", True):
                    raise LookupError(f"modal {name!r} needs {custom_id!r}")
                filled.append(
                    {"type": TEXT_INPUT, "custom_id": custom_id, "value": values.get(custom_id, "")}
                )
            if "component" in top:
                rows.extend({"type": top["type"], "component": f} for f in filled)
            elif filled:
                rows.append({"type": top.get("type", 1), "components": filled})
        unknown = set(values) - seen
        if unknown:
            raise LookupError(
                f"modal {modal.get('custom_id')!r} has no text input {sorted(unknown)}"
            )
        channel = self.store.channels[opened_by.channel_id]
        data = {"custom_id": modal["custom_id"], "components": rows}
        record = self._base(MODAL_SUBMIT, opened_by.user, channel, data)
        if opened_by.message_id is not None:
            found = self.find_message(opened_by.message_id)
            if found is not None:
                record.payload["message"] = self.store.message_view(found[1])
                record.message_id = opened_by.message_id
        return record

    def find_message(self, message_id: int) -> tuple[FakeChannel, dict[str, Any]] | None:
        """Return the channel and payload of a message, ephemeral ones included, or ``None``.

        Ephemeral messages live only in the interaction that created them.
        """
        found = self.store.find_any_message(message_id)
        if found is not None:
            return found
        for record in self.by_id.values():
            if message_id in record.messages:
                return self.store.channels[record.channel_id], record.messages[message_id]
        return None

    def ephemeral_recipient(self, message_id: int) -> FakeUser | None:
        """Return who alone sees an ephemeral message, or ``None`` if it is not one."""
        for record in self.by_id.values():
            message = record.messages.get(message_id)
            if message is not None and int(message.get("flags") or 0) & EPHEMERAL:
                return record.user
        return None

    def _find_command(self, name: str) -> dict[str, Any]:
        for scope in (self.store.guild_id, None):
            for command in self.store.commands.get(scope, []):
                if command["name"] == name and command.get("type", 1) == 1:
                    return command
        known = [c["name"] for cmds in self.store.commands.values() for c in cmds]
        raise LookupError(f"no slash command {name!r} registered; the bot synced {known}")


def _subcommand_path(
    command: dict[str, Any], path: list[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Walk ``path`` (subcommand names) down a registered command.

    Returns:
        The top-level option list, the innermost one (where the values go), and the
        registered options of the innermost subcommand.

    Raises:
        LookupError: A name is not a subcommand, or a subcommand is missing.
    """
    spec_options: list[dict[str, Any]] = command.get("options") or []
    leaf: list[dict[str, Any]] = []
    root = leaf
    for part in path:
        spec = next((o for o in spec_options if o["name"] == part), None)
        if spec is None or spec["type"] not in (SUB_COMMAND, SUB_COMMAND_GROUP):
            raise LookupError(f"command {command['name']!r} has no subcommand {part!r}")
        inner: list[dict[str, Any]] = []
        leaf.append({"name": part, "type": spec["type"], "options": inner})
        leaf, spec_options = inner, spec.get("options") or []
    if any(o["type"] in (SUB_COMMAND, SUB_COMMAND_GROUP) for o in spec_options):
        names = [o["name"] for o in spec_options]
        raise LookupError(f"/{command['name']} {' '.join(path)} needs a subcommand of {names}")
    return root, leaf, spec_options


def find_component(message: dict[str, Any], custom_id: str) -> dict[str, Any] | None:
    """Return the component with ``custom_id`` in a message's action rows, or ``None``."""
    pending = list(message.get("components") or [])
    for _ in range(1000):  # bounded walk over nested rows
        if not pending:
            return None
        component = pending.pop()
        if component.get("custom_id") == custom_id:
            return dict(component)
        pending.extend(component.get("components") or [])
    return None
