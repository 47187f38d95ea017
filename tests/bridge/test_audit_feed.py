"""What the audit channel leaves out: read-only commands that succeeded, and nothing else."""

from __future__ import annotations

import pytest

from supervisor.bridge.audit_feed import is_shown
from supervisor.commands.access import AccessLevel, Command
from supervisor.state.records import AuditRecord


def _row(command: Command, outcome: str) -> AuditRecord:
    return AuditRecord(
        id=1,
        at=0.0,
        actor="cron",
        source="local",
        command=command.value,
        target="",
        outcome=outcome,
        detail="",
    )


@pytest.mark.parametrize("command", list(Command), ids=str)
def test_audit_feed_leaves_out_only_looks_that_succeeded(command: Command) -> None:
    """A script polling `dsup ctl tasks` (or asks, results) filled the audit channel."""
    looks = command.required_level is AccessLevel.VIEWER
    assert is_shown(_row(command, "ok")) is not looks
    assert is_shown(_row(command, "refused"))
    assert is_shown(_row(command, "failed"))
