"""The fleet: target resolution and reload, on a real node with real workers."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

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
