"""What every part of the bridge shares: the command surface, the config, the ledger.

One frozen :class:`BridgeContext` per bridge, read by the client, the board and the
interactions alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from supervisor.bridge.health import HealthRecord
    from supervisor.commands.service import CommandService
    from supervisor.config.schema import DiscordSpec
    from supervisor.state.ledger import Ledger
    from supervisor.state.outbox import Outbox


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeContext:
    """The bridge's shared, read-only surroundings.

    Attributes:
        service: the one command surface; every command goes through it.
        spec: the ``[discord]`` table (where the token is, never the token).
        node: the node name.
        ledger: the state directory's ledger (the board's message id, audit).
        health: the bridge's live health record.
        outbox: where the bridge queues what it posts (the sender's, so a row
            written wakes it).
    """

    service: CommandService
    spec: DiscordSpec
    node: str
    ledger: Ledger
    health: HealthRecord
    outbox: Outbox

    @property
    def guild_id(self) -> int:
        """The one guild this bridge serves."""
        return self.spec.guild_id
