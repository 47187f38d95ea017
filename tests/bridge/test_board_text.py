"""What the board says, at any fleet size: pure rendering, no Discord."""

from __future__ import annotations

import pytest

from supervisor.bridge.board_text import BODY_CHARS, render_board
from supervisor.commands.health import BridgeHealth
from supervisor.events import ProcessState
from supervisor.process.status import ProcessStatus

HEALTH = BridgeHealth(state="connected", since=1_700_000_000.0, user="dsup-bot", guild="g")


def _fleet(states: list[ProcessState], *, programs: int = 4) -> list[ProcessStatus]:
    return [
        ProcessStatus(
            process=f"worker{i % programs}:{i}",
            program=f"worker{i % programs}",
            index=i,
            state=state,
            pid=10_000 + i if state.is_alive else None,
            run_id=None,
            started_at=1_700_000_000.0 + i,
            state_since=1_700_000_000.0 + i,
            restarts=i % 3,
            last_exit_code=1 if state == ProcessState.FATAL else None,
            last_exit_signal=None,
            last_error="",
        )
        for i, state in enumerate(states)
    ]


def test_small_board_has_a_line_per_process_worst_first() -> None:
    fleet = _fleet([ProcessState.RUNNING, ProcessState.FATAL, ProcessState.STOPPED])
    body = render_board(fleet, node="n", health=HEALTH).body
    lines = body.splitlines()
    assert lines[0] == "**n** · 3 processes: 🔴 1 FATAL · ⚪ 1 STOPPED · 🟢 1 RUNNING"
    assert lines[1].startswith("🟢 Discord: connected as dsup-bot since <t:")
    assert lines[3].startswith("🔴 FATAL `worker1:1` · since <t:1700000001:R>")
    assert lines[3].endswith("1 restart · last exit code 1")
    assert lines[4].startswith("⚪ STOPPED `worker2:2`")
    assert lines[5].startswith("🟢 RUNNING `worker0:0` · pid 10000 · since <t:")


def test_every_time_is_a_discord_timestamp() -> None:
    """Readers' apps render them and keep them current: time passing costs no edit."""
    fleet = _fleet([ProcessState.RUNNING] * 20)
    body = render_board(fleet, node="n", health=HEALTH).body
    assert body.count(":R>") == 21  # each process's "since", and the connection's
    assert render_board(fleet, node="n", health=HEALTH).body == body


def test_500_processes_fit_with_every_unhealthy_line() -> None:
    states = [ProcessState.FATAL] * 20 + [ProcessState.RUNNING] * 480
    body = render_board(_fleet(states), node="n", health=HEALTH).body
    assert len(body) <= BODY_CHARS
    assert all(f"`worker{i % 4}:{i}`" in body for i in range(20))
    assert "🟢 `worker0` x 120 RUNNING" in body


@pytest.mark.parametrize("bad", [100, 500])
def test_hundreds_of_unhealthy_processes_still_fit(bad: int) -> None:
    states = [ProcessState.FATAL] * bad + [ProcessState.RUNNING] * (500 - bad)
    body = render_board(_fleet(states), node="n", health=HEALTH).body
    assert len(body) <= BODY_CHARS
    named = sum(f"`worker{i % 4}:{i}`" in body for i in range(bad))
    summarised = sum(
        int(line.split(" x ")[1].split()[0])
        for line in body.splitlines()
        if " x " in line and "FATAL" in line
    )
    assert named + summarised == bad  # every unhealthy process is named or counted
    assert named > 50


def test_a_stopped_node_says_so_instead_of_the_health() -> None:
    fleet = _fleet([ProcessState.STOPPED])
    body = render_board(fleet, node="n", health=HEALTH, stopped_at=5.0).body
    assert body.splitlines()[1].startswith("⚫ dsup stopped <t:5:R>")
