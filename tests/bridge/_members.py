"""Members at each access level, and running a slash command to its final answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio

from supervisor.commands.access import AccessLevel
from tests.bridge._bridge import bridged_node

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager
    from pathlib import Path

    from supervisor.state.ledger import Ledger
    from supervisor.state.records import AuditRecord
    from tests.bridge._bridge import Bridged
    from tests.discord_fake import FakeDiscord, FakeUser, InteractionRecord, InteractionReply

EPHEMERAL = 64
DEFERRED = 5


@dataclass(frozen=True)
class Members:
    """One member per access level, and the ``[discord.access]`` lists granting them."""

    nobody: FakeUser
    viewer: FakeUser
    operator: FakeUser
    admin: FakeUser
    access: dict[str, list[int]]

    def at(self, level: AccessLevel) -> FakeUser:
        return {
            AccessLevel.NONE: self.nobody,
            AccessLevel.VIEWER: self.viewer,
            AccessLevel.OPERATOR: self.operator,
            AccessLevel.ADMIN: self.admin,
        }[level]


def members(fake: FakeDiscord) -> Members:
    """Roles ``watchers`` and ``ops`` grant viewer and operator; the admin is listed by id."""
    viewer = fake.add_user("vera", roles=("watchers",))
    operator = fake.add_user("otto", roles=("ops", "watchers"))
    admin = fake.add_user("ada")
    nobody = fake.add_user("nora", roles=("guests",))
    access = {
        "viewer": [fake.store.role_named("watchers").id],
        "operator": [fake.store.role_named("ops").id],
        "admin": [admin.id],
    }
    return Members(nobody=nobody, viewer=viewer, operator=operator, admin=admin, access=access)


def served(
    tmp_path: Path, fake: FakeDiscord, team: Members, *programs: str
) -> AbstractAsyncContextManager[Bridged]:
    """A node of ``programs`` with its bridge, granting ``team`` their levels."""
    return bridged_node(
        tmp_path,
        fake,
        *programs,
        viewer=team.access["viewer"],
        operator=team.access["operator"],
        admin=team.access["admin"],
    )


async def final_answer(record: InteractionRecord) -> InteractionReply:
    """The answer that says what happened: the follow-up after a defer, else the callback."""
    first = await record.wait_reply(timeout_seconds=10)
    if first.type == DEFERRED:
        return await record.wait_reply(kind="followup", timeout_seconds=20)
    return first


async def last_audit(ledger: Ledger) -> AuditRecord:
    """The newest audit row."""
    (row,) = await anyio.to_thread.run_sync(lambda: ledger.audit_rows(1))
    return row


def is_private(reply: InteractionReply) -> bool:
    """Whether only the member who asked sees the answer."""
    return reply.message is not None and bool(int(reply.message.get("flags") or 0) & EPHEMERAL)


def attached(fake: FakeDiscord, reply: InteractionReply) -> dict[str, bytes]:
    """The files of an answer, by name."""
    files = [] if reply.message is None else reply.message.get("attachments") or []
    return {a["filename"]: fake.store.attachments[int(a["id"])] for a in files}
