"""Tests of one process slot with real processes, pipes and signals."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import psutil
import pytest

from supervisor.config.schema import ProgramSpec, RestartPolicy
from supervisor.errors import InvalidTransition
from supervisor.events import Event, OutputChunk, ProcessState, StateChanged
from supervisor.output.framing import decode_lines
from supervisor.output.logfile import log_paths
from supervisor.process import run as spawn
from supervisor.process.slot import Slot, SlotContext
from supervisor.process.status import ProcessStatus
from supervisor.reaper.reaper import Reaper
from supervisor.state.ledger import Ledger
from tests._wait import wait_until

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

WORKERS = Path(__file__).parents[1] / "workers"
PY = sys.executable
S = ProcessState


class Recorder:
    """Collects state changes and output lines; lets a test wait for a condition."""

    def __init__(self) -> None:
        self.changes: list[StateChanged] = []
        self.lines: list[tuple[str, str, str]] = []  # (process, stream, line)
        self._poke: anyio.Event | None = None

    def emit(self, event: Event) -> None:
        assert isinstance(event, StateChanged)
        self.changes.append(event)
        self._wake()

    def room(self, process: str) -> tuple[int, None]:
        return 1 << 20, None

    def deliver(self, chunk: OutputChunk) -> None:
        lines = decode_lines(chunk.data)
        self.lines.extend((chunk.process, chunk.stream, line) for line in lines)
        self._wake()

    def _wake(self) -> None:
        if self._poke is not None:
            self._poke.set()

    async def wait_for(self, cond: Callable[[], object]) -> None:
        with anyio.fail_after(10):
            while not cond():
                self._poke = anyio.Event()
                await self._poke.wait()

    def states(self, process: str) -> list[ProcessState]:
        return [c.new for c in self.changes if c.process == process]

    def line_starting(self, prefix: str, stream: str = "stdout") -> str | None:
        return next((ln for _, s, ln in self.lines if s == stream and ln.startswith(prefix)), None)


@dataclass
class Harness:
    ctx: SlotContext
    rec: Recorder
    ledger: Ledger
    tmp: Path

    def slot(self, *argv: str, index: int = 0, **kw: object) -> Slot:
        base = ProgramSpec(
            name="w",
            command=(PY, *argv),
            cwd=self.tmp,
            autostart=False,
            start_seconds=0.2,
            start_retries=3,
            backoff_seconds=0.01,
            backoff_max_seconds=0.05,
            stop_timeout_seconds=2.0,
        )
        spec = dataclasses.replace(base, **kw)  # type: ignore[arg-type]
        return Slot(spec, index, self.ctx)


@pytest.fixture(autouse=True)
def _no_leaks() -> Iterator[None]:
    """Every test ends with no child process and no fd of ours left open."""
    me = psutil.Process()
    children = {p.pid for p in me.children(recursive=True)}
    fds = set(os.listdir("/proc/self/fd"))
    yield
    assert {p.pid for p in me.children(recursive=True)} <= children
    assert set(os.listdir("/proc/self/fd")) <= fds


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        rec = Recorder()
        instance = uuid.uuid4().hex
        ctx = SlotContext(
            node="testnode",
            instance_id=instance,
            log_dir=tmp_path / "logs",
            ledger=ledger,
            reaper=Reaper(instance_id=instance, ledger=ledger),
            emit=rec.emit,
            lines=rec,
        )
        yield Harness(ctx, rec, ledger, tmp_path)


@contextlib.asynccontextmanager
async def supervised(slot: Slot) -> AsyncIterator[Slot]:
    """Run the slot's task for the block; cancelling it afterwards stops the process."""
    async with anyio.create_task_group() as tg:
        await tg.start(slot.run)
        yield slot
        tg.cancel_scope.cancel()


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def _wait_gone(pid: int) -> None:
    """Poll (no event exists for a stranger's death) up to 5 s for ``pid`` to vanish."""
    await wait_until(lambda: _gone(pid), seconds=5)


def _worker(name: str) -> str:
    return str(WORKERS / name)


# -- exits and restart policy --------------------------------------------------------


async def test_slot_exit_zero_on_failure_stays_exited(h: Harness) -> None:
    slot = h.slot(_worker("child_exit.py"), "0", "0.3")
    async with supervised(slot):
        st = await slot.start()
        assert st.state is S.RUNNING
        pid = st.pid
        assert pid is not None
        await h.rec.wait_for(lambda: slot.status().state is S.EXITED)
        st = slot.status()
        assert (st.last_exit_code, st.last_exit_signal, st.pid, st.restarts) == (0, None, None, 0)
    assert h.rec.states("w:0") == [S.STARTING, S.RUNNING, S.EXITED]
    exited = h.rec.changes[-1]
    assert exited.exit_code == 0
    assert exited.pid == pid
    assert "not restarted" in exited.reason
    run = h.ledger.recent_runs("w:0")[0]
    assert (run.pid, run.exit_code, run.run_id) == (pid, 0, exited.run_id)
    assert run.ended_at is not None


def _has_lines(rec: Recorder, count: int) -> bool:
    return len(rec.lines) == count


def _counting_lines_at(
    h: Harness, state: ProcessState, spec: ProgramSpec
) -> tuple[Slot, list[int]]:
    """A slot of ``spec`` and the count of lines received each time it enters ``state``."""
    counts: list[int] = []

    def emit(event: Event) -> None:
        if isinstance(event, StateChanged) and event.new is state:
            counts.append(len(h.rec.lines))
        h.rec.emit(event)

    return Slot(spec, 0, dataclasses.replace(h.ctx, emit=emit)), counts


async def test_slot_reports_starting_before_any_line_of_the_run(h: Harness) -> None:
    """A run's first line reached the console before its STARTING."""
    quick = ("/bin/sh", "-c", "echo one; echo two >&2; exec sleep 1000")  # no Python start-up
    spec = dataclasses.replace(h.slot().spec, command=quick)
    slot, lines_at_starting = _counting_lines_at(h, S.STARTING, spec)
    async with supervised(slot):
        for run in range(1, 4):  # the first lines come at once: a race each time
            await slot.restart()
            await h.rec.wait_for(functools.partial(_has_lines, h.rec, 2 * run))
    assert lines_at_starting == [0, 2, 4]  # each run's two lines came after its STARTING


async def test_slot_hands_over_a_crash_s_last_lines_before_its_exit(h: Harness) -> None:
    """A crash's traceback was printed after the state change that reports the crash."""
    crash = ("/bin/sh", "-c", "echo last; echo words >&2; exit 3")
    spec = dataclasses.replace(
        h.slot().spec, command=crash, start_seconds=0.0, restart=RestartPolicy.NEVER
    )
    slot, lines_at_exit = _counting_lines_at(h, S.EXITED, spec)
    async with supervised(slot):
        for run in range(1, 6):  # the exit and the pipes race each time
            await slot.start()
            await h.rec.wait_for(lambda: slot.status().state is S.EXITED)
            await h.rec.wait_for(functools.partial(_has_lines, h.rec, 2 * run))
    assert lines_at_exit == [2, 4, 6, 8, 10]


async def test_slot_crash_immediately_backoff_then_fatal(h: Harness) -> None:
    slot = h.slot(_worker("child_exit.py"), "3")
    async with supervised(slot):
        st = await slot.start()
        assert st.state is S.BACKOFF
        await h.rec.wait_for(lambda: slot.status().state is S.FATAL)
        st = slot.status()
    assert st.restarts == 2  # start_retries = 3 failed starts: the first try and two more
    assert st.last_exit_code == 3
    assert h.rec.states("w:0") == [S.STARTING, S.BACKOFF] * 2 + [S.STARTING, S.FATAL]
    fatal = h.rec.changes[-1]
    assert "too quickly" in fatal.reason
    assert fatal.exit_code == 3
    assert len(h.ledger.recent_runs("w:0")) == 3


async def test_slot_crash_after_a_while_within_start_seconds_is_failed_start(
    h: Harness,
) -> None:
    slot = h.slot(_worker("child_exit.py"), "1", "0.3", start_seconds=5.0, start_retries=2)
    async with supervised(slot):
        await slot.start()
        await h.rec.wait_for(lambda: slot.status().state is S.FATAL)
    assert h.rec.states("w:0") == [S.STARTING, S.BACKOFF, S.STARTING, S.FATAL]
    assert slot.status().restarts == 1


async def test_slot_crash_after_running_restarts_with_on_failure(h: Harness) -> None:
    slot = h.slot(_worker("child_exit.py"), "2", "0.25", start_seconds=0.1)
    async with supervised(slot):
        await slot.start()
        await h.rec.wait_for(lambda: slot.status().restarts >= 2)
        st = await slot.stop()
    assert st.state is S.STOPPED
    assert h.rec.states("w:0")[:6] == [S.STARTING, S.RUNNING, S.EXITED] * 2
    assert h.rec.changes[2].reason == "restarting"  # the exit code is beside it, not in it
    assert h.rec.changes[2].exit_code == 2
    # Each change carries the restarts so far: the incidents say them.
    assert [c.restarts for c in h.rec.changes[:6]] == [0, 0, 0, 1, 1, 1]
    # Read in the console as "(restarted: restart = on-failure)": no nested parentheses.
    assert h.rec.changes[3].reason == "restarted: restart = on-failure"


async def test_slot_always_restarts_exit_zero(h: Harness) -> None:
    slot = h.slot(_worker("child_exit.py"), "0", start_seconds=0.0, restart=RestartPolicy.ALWAYS)
    async with supervised(slot):
        await slot.start()
        await h.rec.wait_for(lambda: slot.status().restarts >= 2)
        await slot.stop()
    assert h.rec.states("w:0")[:6] == [S.STARTING, S.RUNNING, S.EXITED] * 2


async def test_slot_never_does_not_restart_a_crash(h: Harness) -> None:
    slot = h.slot(_worker("child_exit.py"), "5", start_seconds=0.0, restart=RestartPolicy.NEVER)
    async with supervised(slot):
        st = await slot.start()
        await h.rec.wait_for(lambda: slot.status().state is S.EXITED)
        assert st.state in (S.RUNNING, S.EXITED)
    assert h.rec.states("w:0") == [S.STARTING, S.RUNNING, S.EXITED]
    assert slot.status().last_exit_code == 5
    assert slot.status().restarts == 0


async def test_slot_killed_by_signal_counts_as_failure(h: Harness) -> None:
    slot = h.slot(_worker("child_ready.py"), start_seconds=0.0)
    async with supervised(slot):
        st = await slot.start()
        assert st.pid is not None
        await h.rec.wait_for(lambda: h.rec.line_starting("ready"))
        slot.send_signal(signal.SIGTERM)
        await h.rec.wait_for(lambda: slot.status().restarts == 1)
        exited = next(c for c in h.rec.changes if c.new is S.EXITED)
        assert exited.exit_signal == signal.SIGTERM
        assert exited.exit_code is None
        assert slot.status().pid != st.pid


@pytest.mark.parametrize(
    ("restart", "code", "states"),
    [
        (RestartPolicy.NEVER, 0, [S.STARTING, S.EXITED]),
        (RestartPolicy.ON_FAILURE, 0, [S.STARTING, S.EXITED]),
        (RestartPolicy.NEVER, 1, [S.STARTING, S.BACKOFF] * 2 + [S.STARTING, S.FATAL]),
        (RestartPolicy.ALWAYS, 0, [S.STARTING, S.BACKOFF] * 2 + [S.STARTING, S.FATAL]),
    ],
)
async def test_slot_quick_exit_runs_once_only_when_not_restarted_anyway(
    h: Harness, restart: RestartPolicy, code: int, states: list[ProcessState]
) -> None:
    """A one-shot job that exits 0 before start_seconds is EXITED, not retried."""
    slot = h.slot(_worker("child_exit.py"), str(code), start_seconds=5.0, restart=restart)
    async with supervised(slot):
        await slot.start()
        await h.rec.wait_for(lambda: h.rec.states("w:0") == states)
    assert len(h.ledger.recent_runs("w:0")) == states.count(S.STARTING)
    st = slot.status()
    assert st.reason == h.rec.changes[-1].reason
    if states[-1] is S.EXITED:
        assert st.reason.endswith(
            f"within start_seconds = 5 s; not restarted: restart = {restart.value}"
        )
    else:
        assert st.reason.endswith("gave up after 3 failed starts in a row")


async def test_slot_restart_loop_is_throttled(h: Harness) -> None:
    """`true` under always with start_seconds = 0 is not restarted in a tight loop.

    The spacing between spawns is at least 0.8 x 0.2 s, then 0.8 x 0.4 s (the cap):
    in a 1.5 s window that is at most 6 spawns (about 50 without the guard).
    """
    slot = h.slot(
        command=("true",),
        start_seconds=0.0,
        restart=RestartPolicy.ALWAYS,
        backoff_seconds=0.2,
        backoff_max_seconds=0.4,
    )
    async with supervised(slot):
        await slot.start()
        with anyio.move_on_after(1.5):  # the measurement window, not a synchronisation
            await anyio.Event().wait()
        spawns = h.rec.states("w:0").count(S.STARTING)
        st = await slot.stop()
    assert 2 <= spawns <= 6
    # A spawn may be under way as the window closes (counted in restarts, its
    # STARTING not yet emitted): compare the counts once the stop has settled.
    assert st.restarts == h.rec.states("w:0").count(S.STARTING) - 1
    exited = [c.reason for c in h.rec.changes if c.new is S.EXITED]
    assert "short run in a row" in exited[0]
    assert "short runs in a row" in exited[-1]


async def test_slot_restarts_count_only_the_slot_s_own_restarts(h: Harness) -> None:
    """An operator's start after a stop is not a restart."""
    slot = h.slot(_worker("child_ready.py"))
    async with supervised(slot):
        for _ in range(2):
            await slot.start()
            await slot.stop()
        st = await slot.restart()
        await slot.stop()
    assert st.restarts == 0
    assert h.rec.states("w:0").count(S.STARTING) == 3


async def test_slot_exiting_at_once_is_identified(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """The create_time is read before the exit watcher can reap the process."""
    slots = [
        h.slot(command=("true",), start_seconds=0.0, restart=RestartPolicy.NEVER, index=i)
        for i in range(8)
    ]
    async with contextlib.AsyncExitStack() as stack:
        for slot in slots:
            await stack.enter_async_context(supervised(slot))
        async with anyio.create_task_group() as tg:
            for slot in slots:
                tg.start_soon(slot.start)
        await h.rec.wait_for(lambda: all(c.status().state is S.EXITED for c in slots))
    assert "no create_time" not in caplog.text
    for slot in slots:
        (run,) = h.ledger.recent_runs(slot.name)
        assert run.create_time > 0.0


# -- stop ------------------------------------------------------------------------------


async def test_slot_stop_ignoring_sigterm_is_killed_after_timeout(h: Harness) -> None:
    slot = h.slot(_worker("child_ready.py"), "ignore-term", stop_timeout_seconds=0.5)
    async with supervised(slot):
        st = await slot.start()
        await h.rec.wait_for(lambda: h.rec.line_starting("ready"))
        began = time.monotonic()
        st = await slot.stop()
        took = time.monotonic() - began
    assert st.state is S.STOPPED
    assert st.last_exit_signal == signal.SIGKILL
    assert 0.5 <= took < 3.0
    assert h.rec.states("w:0")[-2:] == [S.STOPPING, S.STOPPED]


async def test_slot_stop_is_idempotent_and_signal_needs_a_process(h: Harness) -> None:
    slot = h.slot(_worker("child_ready.py"))
    async with supervised(slot):
        st = await slot.stop()
        assert st.state is S.STOPPED
        with pytest.raises(InvalidTransition):
            slot.send_signal(signal.SIGTERM)
    assert h.rec.changes == []


async def test_slot_cancelling_run_stops_the_process(h: Harness) -> None:
    slot = h.slot(_worker("child_ready.py"), autostart=True)
    async with supervised(slot):
        await h.rec.wait_for(lambda: h.rec.line_starting("ready"))
        pid = slot.status().pid
        assert pid is not None
    assert slot.status().state is S.STOPPED
    assert _gone(pid)
    assert h.rec.states("w:0")[-2:] == [S.STOPPING, S.STOPPED]
    assert {c.reason for c in h.rec.changes[-2:]} == {"no longer supervised"}
    with pytest.raises(InvalidTransition):
        await slot.start()
    assert (await slot.stop()).state is S.STOPPED


@pytest.mark.parametrize("backoff", [False, True])
async def test_slot_close_gives_the_reason_of_the_stop(h: Harness, backoff: bool) -> None:
    """The canceller says why: "removed by reload", "dsup shutting down"."""
    argv = ("child_exit.py", "1") if backoff else ("child_ready.py",)
    slot = h.slot(_worker(argv[0]), *argv[1:], backoff_seconds=30.0, backoff_max_seconds=30.0)
    async with supervised(slot):
        st = await slot.start()
        assert st.state is (S.BACKOFF if backoff else S.RUNNING)
        slot.close("removed by reload")
        with pytest.raises(InvalidTransition):
            await slot.start()
    expected = [S.STOPPED] if backoff else [S.STOPPING, S.STOPPED]
    changes = h.rec.changes[-len(expected) :]
    assert [(c.new, c.reason) for c in changes] == [(s, "removed by reload") for s in expected]
    assert slot.status().reason == "removed by reload"


async def test_slot_close_ends_its_run_without_the_caller_cancelling(h: Harness) -> None:
    """The fleet kept a cancel scope and an event per process to end one: the slot has its own."""
    slot = h.slot(_worker("child_ready.py"))
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await tg.start(slot.run)
            pid = (await slot.start()).pid
            assert pid is not None
            slot.close("removed by reload")
            await slot.wait_ended()
            assert slot.status().state is S.STOPPED
            assert _gone(pid)
    assert slot.status().reason == "removed by reload"


async def test_slot_is_launched_once_and_never_after_its_close(h: Harness) -> None:
    """Launching a slot twice, or one closed before its launch, is refused, saying which
    (both said "run() called twice")."""
    slot = h.slot(_worker("child_ready.py"))
    closed = h.slot(_worker("child_ready.py"), index=1)
    closed.close("removed by reload")
    async with anyio.create_task_group() as tg:
        await tg.start(slot.run)
        with pytest.raises(RuntimeError, match="launched twice"):
            slot.launch(tg)
        with pytest.raises(RuntimeError, match="closed before it was launched"):
            closed.launch(tg)
        tg.cancel_scope.cancel()
    assert h.rec.changes == []


# -- tree and pipes -----------------------------------------------------------------------


@pytest.mark.parametrize("keep", [False, True])
async def test_slot_grandchild_holding_the_pipe_does_not_keep_it_running(
    h: Harness, keep: bool
) -> None:
    slot = h.slot(
        _worker("child_grandchild.py"),
        start_seconds=0.0,
        restart=RestartPolicy.NEVER,
        keep_descendants=keep,
    )
    async with supervised(slot):
        await slot.start()
        with anyio.fail_after(5):
            await h.rec.wait_for(lambda: slot.status().state is S.EXITED)
        line = h.rec.line_starting("grandchild")
        assert line is not None
        grandchild = int(line.split()[1])
        try:
            if keep:
                assert not _gone(grandchild)
            else:
                await _wait_gone(grandchild)
        finally:
            if keep:
                os.kill(grandchild, signal.SIGKILL)
    assert slot.status().state is S.EXITED
    # a kept grandchild's run stays live for the reaper's sweep
    assert slot.live_run_ids() == ({h.rec.changes[0].run_id} if keep else set())


async def test_slot_output_goes_to_logs_and_consumer(h: Harness) -> None:
    slot = h.slot(_worker("child_ready.py"))
    async with supervised(slot):
        await slot.start()
        await h.rec.wait_for(lambda: h.rec.line_starting("to stderr", "stderr"))
        await slot.stop()
    out, err = log_paths(h.ctx.log_dir, "w:0")
    assert out.read_text().startswith("ready ")
    assert err.read_text() == "to stderr\n"


@pytest.mark.parametrize("unbuffered", [True, False])
async def test_slot_unbuffered_python_output_arrives_while_running(
    h: Harness, unbuffered: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)
    slot = h.slot(_worker("child_buffered.py"), unbuffered=unbuffered)
    async with supervised(slot):
        await slot.start()
        await h.rec.wait_for(lambda: h.rec.line_starting("printed", "stderr"))
        if unbuffered:
            await h.rec.wait_for(lambda: h.rec.line_starting("buffered line"))
        else:  # stdout is still in the worker's buffer: the control case
            assert h.rec.line_starting("buffered line") is None
        assert slot.status().state.is_alive


async def test_slot_env_has_markers_and_spec_env(h: Harness) -> None:
    slot = h.slot(_worker("child_ready.py"), env={"CHILD_X": "1"}, index=3)
    async with supervised(slot):
        st = await slot.start()
        await h.rec.wait_for(lambda: h.rec.line_starting("ready"))
        line = h.rec.line_starting("ready")
        assert line is not None
        env = json.loads(line.removeprefix("ready "))
        assert env == {
            "DSUP_NODE": "testnode",
            "DSUP_INSTANCE": h.ctx.instance_id,
            "DSUP_PROGRAM": "w",
            "DSUP_PROCESS": "w:3",
            "DSUP_RUN_ID": st.run_id,
            "CHILD_X": "1",
            "PYTHONUNBUFFERED": "1",
        }
        assert h.rec.changes[0].run_id == st.run_id


# -- spawn errors ---------------------------------------------------------------------------


async def test_slot_missing_executable_is_fatal_with_reason(h: Harness) -> None:
    slot = h.slot()
    slot = Slot(dataclasses.replace(slot.spec, command=(str(h.tmp / "no-such-program"),)), 0, h.ctx)
    async with supervised(slot):
        st = await slot.start()
        assert st.state is S.BACKOFF
        await h.rec.wait_for(lambda: slot.status().state is S.FATAL)
    st = slot.status()
    assert "No such file or directory" in st.last_error
    assert "no-such-program" in st.last_error
    assert h.rec.states("w:0") == [S.BACKOFF, S.BACKOFF, S.FATAL]
    assert "cannot start" in h.rec.changes[-1].reason
    # The status says why it is FATAL
    assert st.reason == h.rec.changes[-1].reason
    assert st.reason.startswith("cannot start: No such file or directory: ")
    assert st.reason.endswith("gave up after 3 failed starts in a row")
    assert st.restarts == 0
    assert h.ledger.recent_runs("w:0") == []


async def test_slot_bad_cwd_is_a_spawn_error(h: Harness) -> None:
    slot = h.slot(_worker("child_ready.py"), cwd=h.tmp / "missing-dir", start_retries=1)
    async with supervised(slot):
        st = await slot.start()
    assert st.state is S.FATAL
    assert "missing-dir" in st.last_error


# -- commands ------------------------------------------------------------------------------


async def test_slot_start_after_fatal_resets_failures(h: Harness) -> None:
    flag = h.tmp / "flag"
    slot = h.slot(_worker("child_flaky.py"), str(flag))
    async with supervised(slot):
        await slot.start()
        await h.rec.wait_for(lambda: slot.status().state is S.FATAL)
        flag.touch()
        st = await slot.start()
        assert st.state is S.RUNNING
        assert st.restarts == 2  # the two retries; an operator's start is not counted
        with pytest.raises(InvalidTransition):
            await slot.start()
        await slot.stop()
    assert h.rec.states("w:0")[-4:] == [S.STARTING, S.RUNNING, S.STOPPING, S.STOPPED]


async def test_slot_concurrent_commands_are_serialised(h: Harness) -> None:
    slot = h.slot(_worker("child_ready.py"))
    results: list[ProcessStatus | InvalidTransition] = []

    async def call(action: Callable[[], object]) -> None:
        try:
            results.append(await action())  # type: ignore[misc]
        except InvalidTransition as exc:
            results.append(exc)

    async with supervised(slot):
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(call, slot.start)
        assert sum(isinstance(r, InvalidTransition) for r in results) == 3
        assert slot.status().state is S.RUNNING
        first = slot.status().pid
        results.clear()
        async with anyio.create_task_group() as tg:
            tg.start_soon(call, slot.stop)
            tg.start_soon(call, slot.restart)
            tg.start_soon(call, slot.stop)
            tg.start_soon(call, slot.restart)
        assert not any(isinstance(r, InvalidTransition) for r in results)
        assert slot.status().state is S.RUNNING
        assert first is not None
        assert _gone(first)
        await slot.stop()
    assert slot.status().restarts == 0  # every start came from a command
    # In queue order: stop, restart (its start is cut short by the next stop, so
    # that caller gets STOPPED), stop, restart; then the final stop.
    assert [r.state for r in results if isinstance(r, ProcessStatus)] == [
        S.STOPPED,
        S.STOPPED,
        S.STOPPED,
        S.RUNNING,
    ]
    assert h.rec.states("w:0") == [
        *(S.STARTING, S.RUNNING, S.STOPPING, S.STOPPED),
        *(S.STARTING, S.STOPPING, S.STOPPED),
        *(S.STARTING, S.RUNNING, S.STOPPING, S.STOPPED),
    ]


async def test_slot_stop_during_backoff_and_start_during_backoff(h: Harness) -> None:
    slot = h.slot(_worker("child_exit.py"), "1", backoff_seconds=30.0, backoff_max_seconds=30.0)
    async with supervised(slot):
        st = await slot.start()
        assert st.state is S.BACKOFF
        st = await slot.start()  # skips the 30 s wait
        assert st.state is S.BACKOFF
        st = await slot.stop()
        assert st.state is S.STOPPED
    assert h.rec.states("w:0") == [S.STARTING, S.BACKOFF, S.STARTING, S.BACKOFF, S.STOPPED]


async def test_slot_stop_records_the_signal_exit(h: Harness) -> None:
    slot = h.slot(_worker("child_ready.py"))
    async with supervised(slot):
        st = await slot.start()
        await h.rec.wait_for(lambda: h.rec.line_starting("ready"))
        st = await slot.stop(reason="stopped by alice")
    assert (st.state, st.last_exit_code, st.last_exit_signal) == (S.STOPPED, None, signal.SIGTERM)
    stopped = h.rec.changes[-1]
    assert (stopped.reason, stopped.exit_signal) == ("stopped by alice", signal.SIGTERM)
    run = h.ledger.recent_runs("w:0")[0]
    assert (run.exit_code, run.exit_signal) == (None, signal.SIGTERM)


async def test_slot_exit_is_seen_without_pidfd(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """The waitpid poll fallback (kernels or platforms without pidfd_open)."""
    monkeypatch.setattr(spawn, "_pidfd_open", lambda pid: None)
    slot = h.slot(_worker("child_exit.py"), "4", start_seconds=0.0)
    async with supervised(slot):
        await slot.start()
        await h.rec.wait_for(lambda: slot.status().state is S.EXITED)
    assert slot.status().last_exit_code == 4


async def test_slot_at_rest_holds_only_its_task_and_still_reaps(h: Harness) -> None:
    """A RUNNING process costs the slot's one task: no supervision, exit watcher or pump task.

    The pipes are loop readers; the exit is reaped in the slot's task itself, with its status.
    """
    slot = h.slot(_worker("child_ready.py"), start_seconds=0.1, restart=RestartPolicy.NEVER)
    async with anyio.create_task_group() as tg:
        before = len(anyio.get_running_tasks())
        await tg.start(slot.run)
        assert (await slot.start()).state is S.RUNNING
        await h.rec.wait_for(lambda: h.rec.line_starting("ready"))
        await anyio.wait_all_tasks_blocked()
        assert len(anyio.get_running_tasks()) - before == 1  # the slot's
        slot.send_signal(signal.SIGUSR1)  # not handled: the process dies of it
        await h.rec.wait_for(lambda: slot.status().state is S.EXITED)
        tg.cancel_scope.cancel()
    assert slot.status().last_exit_signal == signal.SIGUSR1
    assert h.ledger.recent_runs("w:0")[0].exit_signal == signal.SIGUSR1
