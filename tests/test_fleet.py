"""The fleet: target resolution and reload, on a real node with real workers."""

from __future__ import annotations

import os
import signal
import time
from typing import TYPE_CHECKING

import anyio
import pytest

from supervisor.config import load_config
from supervisor.errors import InvalidArgument, UnknownWorker
from tests._control import program, running_node, write_config
from tests._wait import wait_until

if TYPE_CHECKING:
    from pathlib import Path

    from supervisor.fleet import Fleet

pytestmark = pytest.mark.timeout(60)


def _names(fleet: Fleet, target: str) -> list[str]:
    return [child.name for child in fleet.resolve(target)]


def _pids(fleet: Fleet) -> dict[str, int | None]:
    return {child.name: child.status().pid for child in fleet.processes()}


def _all_running(fleet: Fleet) -> bool:
    return all(c.status().state.value == "RUNNING" for c in fleet.processes())


async def test_fleet_resolves_programs_processes_globs_and_all(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        program("scrape_a", "ctl_ticker.py", numprocs=2, autostart=False),
        program("scrape_b", "ctl_ticker.py", autostart=False),
        program("ingest", "ctl_ticker.py", autostart=False),
    )
    async with running_node(config) as node:
        fleet = node.fleet
        assert _names(fleet, "all") == ["scrape_a:0", "scrape_a:1", "scrape_b:0", "ingest:0"]
        assert _names(fleet, "scrape_a") == ["scrape_a:0", "scrape_a:1"]
        assert _names(fleet, "scrape_a:1") == ["scrape_a:1"]
        assert _names(fleet, "scrape*") == ["scrape_a:0", "scrape_a:1", "scrape_b:0"]
        assert _names(fleet, "*:0") == ["scrape_a:0", "scrape_b:0", "ingest:0"]
        assert _names(fleet, "scrape_[!a]") == ["scrape_b:0"]
        with pytest.raises(UnknownWorker):
            fleet.resolve("nothing*")


@pytest.mark.parametrize("target", ["[" * 60_000, "", "a b", "ingest;rm -rf /", "x" * 81])
async def test_fleet_refuses_what_is_no_target_before_matching(tmp_path: Path, target: str) -> None:
    """A 60,000-character glob froze the node for a minute in fnmatch (QA #2)."""
    config = write_config(tmp_path, program("ingest", "ctl_ticker.py", autostart=False))
    async with running_node(config) as node:
        began = time.process_time()
        with pytest.raises(InvalidArgument):
            node.fleet.resolve(target)
        # Not a timing target: a refusal must cost no pattern work at all.
        assert time.process_time() - began < 1.0


async def test_fleet_reload_scales_numprocs_without_touching_kept_processes(
    tmp_path: Path,
) -> None:
    first = program("pool", "ctl_ticker.py", numprocs=2) + program("other", "ctl_ticker.py")
    config = write_config(tmp_path, first)
    async with running_node(config) as node:
        fleet = node.fleet
        await wait_until(lambda: _all_running(fleet))
        before = _pids(fleet)

        write_config(
            tmp_path,
            program("pool", "ctl_ticker.py", numprocs=3) + program("other", "ctl_ticker.py"),
        )
        result = await fleet.reload(load_config(config))
        assert result.changed == ("pool",)
        # The order of processes still follows the config, the new one in place.
        assert [c.name for c in fleet.processes()] == ["pool:0", "pool:1", "pool:2", "other:0"]
        await wait_until(lambda: _all_running(fleet))
        after = _pids(fleet)
        assert {k: after[k] for k in before} == before

        write_config(
            tmp_path,
            program("pool", "ctl_ticker.py", numprocs=1) + program("other", "ctl_ticker.py"),
        )
        (dropped,) = fleet.resolve("pool:2")
        await fleet.reload(load_config(config))
        assert _pids(fleet) == {"pool:0": before["pool:0"], "other:0": before["other:0"]}
        # The stop says why (QA #22), rather than "supervision ended".
        assert dropped.status().state.value == "STOPPED"
        assert dropped.status().reason == "config changed by reload"


async def test_fleet_reload_keeps_a_stopped_process_down_with_its_new_settings(
    tmp_path: Path,
) -> None:
    """An operator's stop survives a reload of a changed program (QA2 #4)."""
    config = write_config(tmp_path, program("keep", "ctl_ticker.py"))
    async with running_node(config) as node:
        fleet = node.fleet
        await wait_until(lambda: _all_running(fleet))
        (child,) = fleet.resolve("keep")
        await child.stop()

        write_config(tmp_path, program("keep", "ctl_ticker.py", "0.5"))
        result = await fleet.reload(load_config(config))
        assert result.changed == ("keep",)
        (fresh,) = fleet.resolve("keep")
        assert fresh is not child
        assert fresh.status().state.value == "STOPPED"
        assert fresh.spec.command[-1] == "0.5"
        # The new settings apply at the next start.
        assert (await fresh.start()).state.value == "RUNNING"


async def test_fleet_reload_replaces_changed_programs_in_parallel(tmp_path: Path) -> None:
    """A program slow to stop must not hold back the start of another (QA2 #4)."""
    slow = program("slow", "ctl_ticker.py", "--ignore-term", stop_timeout_seconds=30.0)
    config = write_config(tmp_path, slow, program("quick", "ctl_ticker.py"))
    async with running_node(config) as node:
        fleet = node.fleet
        await wait_until(lambda: _all_running(fleet))
        write_config(
            tmp_path,
            program("slow", "ctl_ticker.py", "0.5", "--ignore-term", stop_timeout_seconds=30.0),
            program("quick", "ctl_ticker.py", "0.5"),
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(fleet.reload, load_config(config))
            # quick is replaced and running again while slow still sits out its timeout.
            await wait_until(
                lambda: any(
                    c.spec.command[-1] == "0.5" and c.status().state.value == "RUNNING"
                    for c in fleet.resolve("quick")
                ),
                seconds=15,
            )
            assert any(c.status().state.value == "STOPPING" for c in fleet.resolve("slow"))
            # Let the slow stop end now rather than after its 30 s.
            for c in fleet.resolve("slow"):
                pid = c.status().pid
                if pid is not None:
                    os.killpg(pid, signal.SIGKILL)
