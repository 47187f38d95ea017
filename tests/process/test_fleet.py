"""The fleet: target resolution and reload, on a real node with real workers."""

from __future__ import annotations

import dataclasses
import functools
import gc
import os
import signal
import time
import types
from typing import TYPE_CHECKING

import anyio
import psutil
import pytest

from supervisor.config.schema import TASK_KEYS, ProgramSpec, load_config
from supervisor.errors import InvalidArgument, UnknownProcess
from supervisor.events import Event, ProcessState, StateChanged
from supervisor.output.pump import DropTally
from supervisor.process import fleet as fleet_module
from supervisor.process import slot as slot_module
from supervisor.process.fleet import PROCESS_KEYS, Fleet
from supervisor.process.run import Run
from tests._control import program, running_node, write_config
from tests._pump import Recorder
from tests._wait import wait_until

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.timeout(60)


def _names(fleet: Fleet, target: str) -> list[str]:
    return [slot.name for slot in fleet.resolve(target)]


def _pids(fleet: Fleet) -> dict[str, int | None]:
    return {slot.name: slot.status().pid for slot in fleet.processes()}


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
        with pytest.raises(UnknownProcess):
            fleet.resolve("nothing*")


@pytest.mark.parametrize("target", ["[" * 60_000, "", "a b", "ingest;rm -rf /", "x" * 81])
async def test_fleet_refuses_what_is_no_target_before_matching(tmp_path: Path, target: str) -> None:
    """A 60,000-character glob froze the node for a minute in fnmatch."""
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
    """A numprocs-only change restarts nothing, so the answer says ``updated``, not
    ``changed``: ``changed`` means "restarted"."""
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
        assert (result.changed, result.updated) == ((), ("pool",))
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
        result = await fleet.reload(load_config(config))
        assert (result.changed, result.updated) == ((), ("pool",))
        assert _pids(fleet) == {"pool:0": before["pool:0"], "other:0": before["other:0"]}
        # The stop says why, rather than "supervision ended".
        assert dropped.status().state.value == "STOPPED"
        assert dropped.status().reason == "removed by reload: numprocs 3 -> 1"

        # With a change the process sees, the kept processes restart: ``changed``.
        write_config(
            tmp_path,
            program("pool", "ctl_ticker.py", numprocs=2)
            + 'env = { POOL = "2" }\n'
            + program("other", "ctl_ticker.py"),
        )
        result = await fleet.reload(load_config(config))
        assert (result.changed, result.updated) == (("pool",), ())


async def test_fleet_reload_keeps_a_stopped_process_down_with_its_new_settings(
    tmp_path: Path,
) -> None:
    """An operator's stop survives a reload of a changed program, and so
    do its LAST EXIT and INFO."""
    config = write_config(tmp_path, program("keep", "ctl_ticker.py"))
    async with running_node(config) as node:
        fleet = node.fleet
        await wait_until(lambda: _all_running(fleet))
        (slot,) = fleet.resolve("keep")
        stopped = await slot.stop(reason="stopped by root")
        assert stopped.last_exit_code == 0  # the ticker exits 0 on SIGTERM

        write_config(tmp_path, program("keep", "ctl_ticker.py", "0.5", stop_timeout_seconds=4.0))
        result = await fleet.reload(load_config(config))
        assert result.changed == ("keep",)
        (same,) = fleet.resolve("keep")
        status = same.status()
        assert (status.state.value, status.last_exit_code) == ("STOPPED", 0)
        assert status.reason == "stopped by root"
        assert same.spec.command[-1] == "0.5"
        # The new settings apply at the next start.
        assert (await same.start()).state.value == "RUNNING"


async def test_fleet_reload_replaces_changed_programs_in_parallel(tmp_path: Path) -> None:
    """A program slow to stop must not hold back the start of another."""
    slow = program("slow", "ctl_ticker.py", "--ignore-term", stop_timeout_seconds=30.0)
    config = write_config(tmp_path, slow, program("quick", "ctl_ticker.py"))
    async with running_node(config) as node:
        fleet = node.fleet
        await wait_until(lambda: _all_running(fleet))
        write_config(
            tmp_path,
            # The new slow stops at once: only the old one sits out its timeout.
            program("slow", "ctl_ticker.py", "0.5", stop_timeout_seconds=30.0),
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


class _Recorder:
    """An event sink that keeps every event."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def deliver(self, event: Event) -> None:
        self.events.append(event)

    def starts(self) -> dict[str, list[str]]:
        """The reasons of every STARTING, by process."""
        found: dict[str, list[str]] = {}
        for e in self.events:
            if isinstance(e, StateChanged) and e.new.value == "STARTING":
                found.setdefault(e.process, []).append(e.reason)
        return found


# Every setting but what the process sees, each different from program()'s value.
_DSUP_ONLY: dict[str, object] = {
    "relay": "none",
    "stop_signal": "INT",
    "stop_timeout_seconds": 20.0,
    "log_max_bytes": 4096,
    "log_backups": 2,
    "max_line_bytes": 1024,
    "start_seconds": 0.2,
    "start_retries": 5,
    "backoff_seconds": 0.1,
    "backoff_max_seconds": 0.2,
    "restart": "always",
    "keep_descendants": True,
    "autostart": False,
}


async def test_fleet_reload_applies_dsup_only_settings_to_the_running_process(
    tmp_path: Path,
) -> None:
    """A relay or stop_timeout change restarted a 15-minute job."""
    every = {f.name for f in dataclasses.fields(ProgramSpec)}
    # The task keys are refused on a plain program (tests/tasks covers them).
    assert set(_DSUP_ONLY) == every - set(PROCESS_KEYS) - {"name", "numprocs", *TASK_KEYS}
    argv = ("ctl_ticker.py", "0.002", "--ignore-term")
    first = program("job", *argv, stop_timeout_seconds=30.0, log_max_bytes=10**6, log_backups=1)
    config = write_config(tmp_path, first)
    async with running_node(config) as node:
        fleet = node.fleet
        await wait_until(lambda: _all_running(fleet))
        (slot,) = fleet.resolve("job")
        before = slot.status().pid

        write_config(tmp_path, program("job", "ctl_ticker.py", *argv[1:], **_DSUP_ONLY))
        result = await fleet.reload(load_config(config))
        assert (result.updated, result.changed, result.unchanged) == (("job",), (), ())
        assert fleet.resolve("job") == [slot]
        assert slot.status().pid == before
        assert slot.spec.stop_signal is signal.SIGINT
        # The running process's log now rotates at the new size.
        log = node.state.log_dir / "job-0.out.log"
        await wait_until(lambda: log.with_name("job-0.out.log.1").exists())
        assert log.with_name("job-0.out.log.1").stat().st_size <= 4096
        # And it stops with the new signal: SIGTERM would take 20 s, then SIGKILL.
        with anyio.fail_after(10):
            stopped = await slot.stop()
        assert stopped.last_exit_signal == signal.SIGINT


async def test_fleet_reload_lengthens_the_stop_of_the_running_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A longer stop_timeout_seconds applied in place also bounds the running stop."""
    monkeypatch.setattr(slot_module, "STOP_MARGIN_SECONDS", 0.2)
    slow = ("fleet_slow_term.py", "1.0")
    config = write_config(tmp_path, program("slow", *slow, stop_timeout_seconds=0.1))
    async with running_node(config) as node:
        fleet = node.fleet
        log = node.state.log_dir / "slow-0.out.log"
        await wait_until(lambda: log.exists() and "ready" in log.read_text())

        write_config(tmp_path, program("slow", *slow, stop_timeout_seconds=10.0))
        assert (await fleet.reload(load_config(config))).updated == ("slow",)
        (slot,) = fleet.resolve("slow")
        with anyio.fail_after(10):
            stopped = await slot.stop()
        # It finished its clean stop (1 s) instead of being cut off at 0.1 + 0.2 s.
        assert (stopped.last_exit_code, stopped.last_exit_signal) == (0, None)


async def test_fleet_reload_cancels_a_restart_the_new_policy_does_not_want(
    tmp_path: Path,
) -> None:
    """restart = "never" by reload, yet the pending restart came, "by policy (never)"."""
    keys = {"start_seconds": 0.0, "backoff_seconds": 30.0, "backoff_max_seconds": 60.0}
    config = write_config(tmp_path, program("once", "child_exit.py", "0", restart="always", **keys))
    async with running_node(config) as node:
        (slot,) = node.fleet.resolve("once")
        await wait_until(lambda: slot.status().next_start_at is not None)  # the restart waits
        st = slot.status()
        assert st.state.value == "EXITED"
        assert st.pid is None

        write_config(tmp_path, program("once", "child_exit.py", "0", restart="never", **keys))
        assert (await node.fleet.reload(load_config(config))).updated == ("once",)
        await wait_until(lambda: "cancelled" in slot.status().reason)
        st = slot.status()
        assert (st.state.value, st.next_start_at) == ("EXITED", None)
        assert st.reason == "restart cancelled by reload: restart = never now"
        assert st.restarts == 0  # and no run was started


async def test_fleet_reload_starts_and_restarts_saying_it_was_the_reload(
    tmp_path: Path,
) -> None:
    """Processes a reload starts said "autostart"; a restart says what changed."""
    missing = str(tmp_path / "no-such-worker")
    config = write_config(
        tmp_path,
        program("web", "ctl_ticker.py"),
        program("pool", "ctl_ticker.py"),
        program("lazy", "ctl_ticker.py", autostart=False),
        f'[programs.broken]\ncommand = ["{missing}"]\nstart_retries = 1\n',
    )
    recorder = _Recorder()
    async with running_node(config, sinks=[recorder]) as node:
        fleet = node.fleet
        await wait_until(lambda: fleet.resolve("broken")[0].status().state.value == "FATAL")
        await wait_until(
            lambda: all(c.status().state.value == "RUNNING" for c in fleet.resolve("web"))
        )
        recorder.events.clear()

        write_config(
            tmp_path,
            program("web", "ctl_ticker.py") + 'env = { WEB_MODE = "fast" }\n',
            program("pool", "ctl_ticker.py", numprocs=2),
            program("lazy", "ctl_ticker.py"),
            program("broken", "ctl_ticker.py"),
            program("fresh", "ctl_ticker.py"),
        )
        result = await fleet.reload(load_config(config))
        assert result.changed == ("web", "broken")
        assert (result.updated, result.added) == (("pool", "lazy"), ("fresh",))
        await wait_until(lambda: _all_running(fleet))
        assert recorder.starts() == {
            "web:0": ["restarted by reload: env changed"],
            "pool:1": ["started by reload"],
            "lazy:0": ["started by reload: autostart turned on"],
            "broken:0": ["restarted by reload: command changed"],
            "fresh:0": ["started by reload"],
        }


async def test_fleet_at_rest_holds_no_task_per_process(tmp_path: Path) -> None:
    """Each slot held a task, its cancel scopes and its coroutines for as long as its
    process ran: about 8 KB a process at rest. A run's exit still wakes its slot."""
    config = write_config(tmp_path, program("pool", "ctl_ticker.py", "0.2", restart="always"))
    async with running_node(config) as node:
        fleet = node.fleet
        await wait_until(lambda: _all_running(fleet))
        await anyio.wait_all_tasks_blocked()
        one = len(anyio.get_running_tasks())
        write_config(
            tmp_path, program("pool", "ctl_ticker.py", "0.2", restart="always", numprocs=4)
        )
        await fleet.reload(load_config(config))
        await wait_until(lambda: len(fleet.processes()) == 4 and _all_running(fleet))
        await anyio.wait_all_tasks_blocked()
        assert len(anyio.get_running_tasks()) == one

        (slot,) = fleet.resolve("pool:2")
        pid = slot.status().pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # its exit wakes the slot: restarted by policy
        await wait_until(lambda: slot.status().restarts == 1 and _all_running(fleet))
        assert slot.status().last_exit_signal == signal.SIGKILL
        await anyio.wait_all_tasks_blocked()
        assert len(anyio.get_running_tasks()) == one


async def test_fleet_starting_holds_no_task_per_process(tmp_path: Path) -> None:
    """Each slot held a task through its start_seconds: 500 starts left that memory as holes
    between the processes' objects. A timer makes a run RUNNING; a stop still reaches it."""
    slow = program("slow", "ctl_ticker.py", "0.2", start_seconds=60.0)
    config = write_config(tmp_path, slow, program("quick", "ctl_ticker.py", "0.2"))
    async with running_node(config) as node:
        fleet = node.fleet
        (quick,) = fleet.resolve("quick")
        await wait_until(lambda: quick.status().state.value == "RUNNING")
        await wait_until(lambda: fleet.resolve("slow")[0].status().state.value == "STARTING")
        await anyio.wait_all_tasks_blocked()
        one = len(anyio.get_running_tasks())
        write_config(tmp_path, slow.replace("\n", "\nnumprocs = 4\n", 1))
        await fleet.reload(load_config(config))
        slow_slots = fleet.resolve("slow")
        assert len(slow_slots) == 4
        await wait_until(lambda: all(s.status().state.value == "STARTING" for s in slow_slots))
        await anyio.wait_all_tasks_blocked()
        assert len(anyio.get_running_tasks()) == one

        stopped = await slow_slots[3].stop(reason="stopped by test")
        assert stopped.state.value == "STOPPED"
        assert [s.status().state.value for s in slow_slots[:3]] == ["STARTING"] * 3


def _ours(kind: type) -> int:
    """Methods or partials of ``kind`` bound to dsup's own objects (not a thread's)."""
    return sum(isinstance(o, kind) and _bound_to_dsup(o) for o in gc.get_objects())


def _bound_to_dsup(obj: object) -> bool:
    if isinstance(obj, types.MethodType):
        owner = obj.__self__
    elif isinstance(obj, functools.partial):
        owner = getattr(obj.func, "__self__", obj.func)
    else:
        return False
    return type(owner).__module__.startswith("supervisor")


async def test_fleet_keeps_few_callables_per_resting_process(tmp_path: Path) -> None:
    """A run kept its readers' bound ``stop`` methods and a partial holding every argument
    of its worker link (about 450 bytes a process); it keeps the readers and a small maker."""
    pool = program("pool", "ctl_ticker.py", "0.2")
    config = write_config(tmp_path, pool)
    async with running_node(config) as node:
        fleet = node.fleet
        await wait_until(lambda: _all_running(fleet))
        await anyio.wait_all_tasks_blocked()
        methods, partials = _ours(types.MethodType), _ours(functools.partial)
        write_config(tmp_path, pool.replace("\n", "\nnumprocs = 5\n", 1))
        await fleet.reload(load_config(config))
        await wait_until(lambda: len(fleet.processes()) == 5 and _all_running(fleet))
        await anyio.wait_all_tasks_blocked()
        assert _ours(functools.partial) == partials
        assert (_ours(types.MethodType) - methods) // 4 <= 10  # the reload makes one of its own


async def test_fleet_runs_at_rest_hold_no_dict(tmp_path: Path) -> None:
    """A run kept its pipes and its logs in two dicts keyed by stream: 368 bytes a process."""
    config = write_config(tmp_path, program("pool", "ctl_ticker.py", "0.2", numprocs=3))
    async with running_node(config) as node:
        await wait_until(lambda: _all_running(node.fleet))
        ours = {slot.status().run_id for slot in node.fleet.processes()}
        runs = [o for o in gc.get_objects() if isinstance(o, Run) and o.run_id in ours]
        assert len(runs) == 3
        assert not [o for run in runs for o in gc.get_referents(run) if isinstance(o, dict)]


class _SpawnedAtStarting:
    """Counts the test's child processes each time one is reported STARTING."""

    def __init__(self) -> None:
        self.counts: list[int] = []
        self._me = psutil.Process()

    def deliver(self, event: Event) -> None:
        if isinstance(event, StateChanged) and event.new is ProcessState.STARTING:
            self.counts.append(len(self._me.children()))


async def test_fleet_launches_a_few_slots_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """500 slots launched at once did their start-up work together and freed it together,
    as holes between the processes' objects. At most 2 here are launched and not begun."""
    monkeypatch.setattr(fleet_module, "LAUNCHING_MAX", 2)
    sink = _SpawnedAtStarting()
    config = write_config(tmp_path, program("pool", "ctl_ticker.py", "0.2", numprocs=6))
    async with running_node(config, sinks=[sink]) as node:
        await wait_until(lambda: _all_running(node.fleet))
    # When the k-th is reported STARTING, k have begun: at most k + 2 are spawned.
    assert len(sink.counts) == 6
    assert all(spawned <= k + 2 for k, spawned in enumerate(sink.counts)), sink.counts


async def test_fleet_counts_drops_for_each_sink_while_two_take_output(tmp_path: Path) -> None:
    """A drop tally serves one sink: while two sinks take output, a full one that
    tallies gets its drops counted in chunks, as the other does."""
    count = 20_000
    config = write_config(tmp_path, program("flood", "out_lines.py", str(count)))
    tallying = Recorder(capacity=lambda: 0, tally=DropTally())
    counting = Recorder(capacity=lambda: 0)
    async with running_node(config, line_sinks=[tallying, counting]):
        await wait_until(lambda: counting.dropped == count)
    assert tallying.dropped == count
    assert tallying.tally is not None
    assert tallying.tally.size == 0


class _Asked(Recorder):
    """A full consumer that counts how often it is asked for room."""

    def __init__(self) -> None:
        super().__init__(capacity=lambda: 0)
        self.asked = 0

    def room(self, process: str) -> tuple[int, DropTally | None]:
        self.asked += 1
        return super().room(process)


async def test_fleet_asks_each_sink_for_room_once_a_read(tmp_path: Path) -> None:
    """With two sinks of output, a read asked each sink for its room twice or three
    times (the most room, then again for the drop tally): it runs at every read of a
    flood. Each full sink gets a chunk a read (its drops, counted)."""
    count = 20_000
    config = write_config(tmp_path, program("flood", "out_lines.py", str(count)))
    sinks = [_Asked(), _Asked()]
    async with running_node(config, line_sinks=sinks):
        await wait_until(lambda: all(s.dropped == count for s in sinks))
    for sink in sinks:
        # Once a read (each read of lines gives a chunk) and once at each pipe's end.
        assert sink.asked < 2 * len(sink.events) + 2, (sink.asked, len(sink.events))


class _CancelAtSecondStart:
    """Cancels ``scope`` when a second process is reported STARTING (the first one rests
    by then); keeps their pids."""

    def __init__(self, scope: anyio.CancelScope) -> None:
        self.scope = scope
        self.pids: list[int] = []

    def deliver(self, event: Event) -> None:
        if isinstance(event, StateChanged) and event.new is ProcessState.STARTING:
            if event.pid is not None:
                self.pids.append(event.pid)
            if len(self.pids) == 2:
                self.scope.cancel()


async def test_fleet_cancelled_while_it_launches_stops_what_it_launched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fleet cancelled as it starts (waiting for room to launch the next slot) left
    the slots it had launched, at rest with no task, and their processes running."""
    monkeypatch.setattr(fleet_module, "LAUNCHING_MAX", 1)
    # Prints once a minute: a broken pipe would not end it first.
    config = write_config(tmp_path, program("pool", "ctl_ticker.py", "60", numprocs=4))
    with anyio.fail_after(20), anyio.CancelScope() as scope:
        sink = _CancelAtSecondStart(scope)
        async with running_node(config, sinks=[sink]):
            await anyio.sleep_forever()
    assert len(sink.pids) == 2
    assert not [pid for pid in sink.pids if psutil.pid_exists(pid)]


async def test_fleet_reloads_one_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two reloads at once mixed their slots: one removing a program closed a process
    that the other, adding that program, had yet to launch, and the adding reload
    failed (a closed slot cannot be launched). The second now waits for the first."""
    monkeypatch.setattr(fleet_module, "LAUNCHING_MAX", 1)  # the adding reload waits for room
    plain = program("plain", "ctl_ticker.py", "60")
    config = write_config(tmp_path, plain)
    async with running_node(config) as node:
        fleet = node.fleet
        write_config(tmp_path, plain, program("pool", "ctl_ticker.py", "60", numprocs=6))
        with_pool = load_config(config)
        without = load_config(write_config(tmp_path, plain))
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(fleet.reload, with_pool)
                await wait_until(lambda: any(s.spec.name == "pool" for s in fleet.processes()))
                removed = await fleet.reload(without)
        assert removed.removed == ("pool",)
        assert _names(fleet, "all") == ["plain:0"]
