"""Tests of the reaper with real process trees, real signals and a real ledger.

Each test uses a fresh instance id, so processes are told apart by the same
markers dsup uses; the ``instance`` fixture SIGKILLs whatever still bears them.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import gc
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import psutil
import pytest

from supervisor.events import OrphansCleaned
from supervisor.reaper.reaper import Reaper, _zombie_child
from supervisor.reaper.tree import Scanner, Seen, Snapshot, adopted, pipe_holders, stat_fields
from supervisor.state.ledger import Ledger
from supervisor.state.records import ProcIdent
from tests._wait import eventually, wait_for, wait_until
from worker_sdk import protocol

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from supervisor.events import Event
    from supervisor.reaper.stop import TreeOutcome

WORKERS = Path(__file__).parents[1] / "workers"
_PR_GET_CHILD_SUBREAPER = 37
_PR_SET_CHILD_SUBREAPER = 36


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _marked(instance: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.environ().get(protocol.INSTANCE) == instance:
                found.append(proc)
    return found


async def _start(
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    stdout: int | None = None,
    start_new_session: bool = False,
) -> subprocess.Popen[bytes]:
    """Start a process off the event loop (fork and exec block)."""

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            start_new_session=start_new_session,
        )

    return await anyio.to_thread.run_sync(start)


PAUSER = [sys.executable, "-c", "import signal\nwhile True: signal.pause()"]


@dataclass
class Worker:
    """A reap_tree.py worker spawned the way a run does, and watched by pidfd."""

    popen: subprocess.Popen[bytes]
    ident: ProcIdent
    run_id: str
    pids: dict[str, list[int]]
    exited: anyio.Event = field(default_factory=anyio.Event)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def all_pids(self) -> list[int]:
        return [self.pid, *(p for pids in self.pids.values() for p in pids)]

    async def watch(self) -> None:
        """Set ``exited`` when the worker exits; reaps it like a run would."""
        pidfd = os.pidfd_open(self.pid)
        try:
            await anyio.wait_readable(pidfd)
        finally:
            os.close(pidfd)
        self.popen.wait()
        self.exited.set()


async def _read_line(fd: int) -> str:
    """One line from ``fd``, read a byte at a time so the next line stays in the pipe."""
    buf = b""
    while not buf.endswith(b"\n"):
        await anyio.wait_readable(fd)
        chunk = os.read(fd, 1)
        assert chunk, f"worker closed stdout before a whole line: {buf!r}"
        buf += chunk
    return buf.decode().rstrip("\n")


async def _read_ready(fd: int) -> dict[str, list[int]]:
    return _ready_pids(await _read_line(fd))


def _ready_pids(line: str) -> dict[str, list[int]]:
    """The pids of a worker's "ready kind=pid ..." line, by kind."""
    words = line.split()
    assert words[0] == "ready", line
    pids: dict[str, list[int]] = {}
    for word in words[1:]:
        kind, pid = word.split("=")
        pids.setdefault(kind, []).append(int(pid))
    return pids


@pytest.fixture
def instance() -> Iterator[str]:
    """A fresh instance id; every process bearing it is SIGKILLed afterwards."""
    inst = uuid.uuid4().hex
    yield inst
    procs = _marked(inst)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    wait_for(lambda: not any(_alive(p.pid) for p in procs), "marked processes to die", seconds=5)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.open(tmp_path / "ledger.sqlite3") as led:
        yield led


@pytest.fixture
def subreaper() -> Iterator[None]:
    """Turn this test process into a child subreaper for one test only."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    yield
    libc.prctl(_PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
    # Reap the re-parented orphans this test left (they are ours only until now).
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error, ChildProcessError):
            if child.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(child.pid, os.WNOHANG)


@contextlib.asynccontextmanager
async def spawned(instance: str, run_id: str, *args: str) -> AsyncIterator[Worker]:
    """Spawn reap_tree.py as dsup would (own session, markers) and watch its exit."""
    env = dict(
        os.environ,
        **{protocol.INSTANCE: instance, protocol.RUN_ID: run_id, protocol.PROCESS: "w:0"},
    )
    popen = await _start(
        [sys.executable, "-u", str(WORKERS / "reap_tree.py"), *args],
        env=env,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert popen.stdout is not None
    worker: Worker | None = None
    try:
        # Identified at once, as a run does (unreaped, so never reused).
        ident = ProcIdent(popen.pid, psutil.Process(popen.pid).create_time())
        with anyio.fail_after(10):
            worker = Worker(popen, ident, run_id, await _read_ready(popen.stdout.fileno()))
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.watch)
            yield worker
            with anyio.fail_after(10):
                if popen.poll() is None:
                    popen.kill()
                await worker.exited.wait()
    finally:
        if popen.poll() is None:
            popen.kill()
            popen.wait(10)
        popen.stdout.close()
        if worker is not None:  # a failed test may leave the unmarked ones behind
            _kill_younger(worker.all_pids(), than=worker.ident.create_time)


def _kill_younger(pids: list[int], *, than: float) -> None:
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            if proc.create_time() >= than and proc.status() != psutil.STATUS_ZOMBIE:
                proc.kill()


async def _terminate(reaper: Reaper, w: Worker, *, grace: float = 10) -> TreeOutcome:
    """Stop the worker's run with SIGTERM, ``grace`` s before SIGKILL (20 s deadline)."""
    with anyio.fail_after(20):
        return await reaper.terminate_tree(
            w.ident, run_id=w.run_id, sig=signal.SIGTERM, timeout=grace, main_exited=w.exited
        )


def _record_run(led: Ledger, run_id: str, main: ProcIdent) -> None:
    """Record a run of ``w:0`` started now with this main process."""
    led.record_run_start(
        run_id=run_id,
        process="w:0",
        program="w",
        pid=main.pid,
        create_time=main.create_time,
        started_at=time.time(),
    )


async def launch_orphan(instance: str, run_id: str, *args: str) -> tuple[int, dict[str, list[int]]]:
    """Start reap_tree.py through a launcher that exits: a worker of a dead dsup."""
    popen = await _start(
        [sys.executable, "-u", str(WORKERS / "reap_launch.py"), instance, run_id, *args],
        stdout=subprocess.PIPE,
    )
    assert popen.stdout is not None
    with popen.stdout, anyio.fail_after(10):
        # Two lines, in either order: the worker may print "ready" before its
        # launcher, descheduled under load, prints "pid N".
        lines: list[str] = []
        while len(lines) < 2:
            lines.append(await _read_line(popen.stdout.fileno()))
        (pid_line,) = [line for line in lines if line.startswith("pid ")]
        (ready,) = [line for line in lines if line.startswith("ready")]
        await anyio.to_thread.run_sync(popen.wait)
    return int(pid_line.split()[1]), _ready_pids(ready)


async def test_identify_gives_pid_and_create_time(ledger: Ledger) -> None:
    reaper = Reaper(instance_id="x", ledger=ledger)
    me = await reaper.identify(os.getpid())
    assert me == ProcIdent(os.getpid(), psutil.Process().create_time())
    proc = await _start([sys.executable, "-c", "pass"])
    await anyio.to_thread.run_sync(proc.wait)
    assert await reaper.identify(proc.pid) is None


def _gone_since(pid: int, when: float) -> bool:
    """Whether the process ``pid`` was at ``when`` has exited (its pid free or reused, or a
    zombie: its children were reparented as it exited, before anyone reaped it)."""
    try:
        proc = psutil.Process(pid)
        return proc.create_time() > when or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


async def test_scan_reads_identities_parents_and_sessions_as_psutil_does(instance: str) -> None:
    """The sweep's table is read from /proc directly: identities must equal psutil's exactly.

    pid-reuse safety compares the create_time recorded at spawn (psutil's) with
    the snapshot's; a snapshot that read it otherwise would see strangers.
    """
    async with spawned(instance, "run1", "--children", "1") as w:
        snap = await Scanner(instance).snapshot()
        compared = 0
        for pid, seen in snap.items():
            try:
                proc = psutil.Process(pid)
                expected = (proc.create_time(), proc.ppid(), os.getsid(pid))
            except (psutil.Error, ProcessLookupError):
                continue  # gone meanwhile
            if expected[1] != seen.ppid and _gone_since(seen.ppid, seen.ident.create_time):
                continue  # its parent exited meanwhile: reparented, as psutil now sees
            if expected[2] == pid != seen.sid:
                continue  # it made itself a session leader meanwhile (setsid: a daemon)
            assert (seen.ident.create_time, seen.ppid, seen.sid) == expected
            compared += 1
        assert compared > 2
        assert snap[w.ident.pid].ident == w.ident
        assert snap[w.ident.pid].run_id == "run1"
        assert os.getpid() not in snap


async def test_scan_takes_the_markers_of_a_spawned_process_without_reading_them(
    instance: str,
) -> None:
    """Each sweep's first look at a fresh process read its environment: 500 reads at a time."""
    async with spawned(instance, "run1") as w:
        scanner = Scanner(instance)
        scanner.know(w.ident, "told", "w:7")
        seen = (await scanner.snapshot())[w.ident.pid]
        assert (seen.run_id, seen.process) == ("told", "w:7")  # its environ says run1, w:0


async def test_scan_shares_one_empty_pipe_set_among_processes(instance: str) -> None:
    """Each process of the host got a set of its own (216 bytes, empty), and the reaper keeps
    its last snapshot between sweeps: about 0.2 MiB at rest beside a fleet of 500."""
    async with spawned(instance, "run1"):
        snap = await Scanner(instance).snapshot()
        empty = [seen.pipes for seen in snap.values() if not seen.pipes]
        assert len(empty) > 2
        assert len({id(pipes) for pipes in empty}) == 1


async def test_scan_keeps_what_it_was_told_while_it_ran(instance: str) -> None:
    """know() on the event loop wrote the marker cache a scan thread was rewriting: a
    process spawned after the scan had listed /proc lost its markers (the next scan read
    them from its environment, which an exec may have cleared). Here the scan waits
    after its listing while the test spawns a process and tells the scanner of it."""
    listed, go = threading.Event(), threading.Event()
    gated: list[bool] = []

    def listing() -> Iterator[tuple[int, list[bytes]]]:
        yield from stat_fields()
        if not gated:  # the first scan only
            gated.append(True)
            listed.set()
            go.wait(20)

    scanner = Scanner(instance, listing=listing)
    async with anyio.create_task_group() as tg:
        tg.start_soon(scanner.snapshot)
        assert await anyio.to_thread.run_sync(listed.wait, 20)
        async with spawned(instance, "run1") as w:
            scanner.know(w.ident, "told", "w:7")
            go.set()
            # Taken after the scan under way (which never listed it) is over.
            seen = (await scanner.snapshot())[w.ident.pid]
            assert (seen.run_id, seen.process) == ("told", "w:7")  # its environ says run1


async def test_scan_is_shared_by_callers_that_asked_before_it_began(instance: str) -> None:
    """Callers waiting while a scan runs share the next one; none is kept afterwards (a
    resting node held every process of the host between its sweeps)."""
    listed, go = threading.Event(), threading.Event()
    scans: list[int] = []

    def listing() -> Iterator[tuple[int, list[bytes]]]:
        scans.append(1)
        yield from stat_fields()
        if len(scans) == 1:
            listed.set()
            go.wait(20)

    scanner = Scanner(instance, listing=listing)
    got: list[Snapshot] = []

    async def take() -> None:
        got.append(await scanner.snapshot())

    async with anyio.create_task_group() as tg:
        tg.start_soon(take)
        assert await anyio.to_thread.run_sync(listed.wait, 20)
        tg.start_soon(take)  # both ask during the first scan: they share the second
        tg.start_soon(take)
        await anyio.wait_all_tasks_blocked()
        go.set()
    assert len(scans) == 2
    assert got[1] is got[2]
    assert got[0] is not got[1]
    got.clear()
    gc.collect()
    assert not any(isinstance(o, Seen) for o in gc.get_objects())


async def test_sweep_records_no_row_for_a_run_whose_tree_is_its_main_process(
    instance: str, ledger: Ledger
) -> None:
    """The first sweep wrote each live run's main process again, in a transaction per run."""
    reaper = Reaper(instance_id=instance, ledger=ledger, spare_younger_than=0.0)
    async with spawned(instance, "run1") as w:
        ident = await reaper.identify(w.ident.pid, run_id="run1", process="w:0")
        assert ident == w.ident
        ledger.record_run_start(
            run_id="run1",
            process="w:0",
            program="w",
            pid=ident.pid,
            create_time=ident.create_time,
            started_at=time.time(),
        )
        await reaper.sweep(["run1"], owned=[ident.pid])
        assert [(lo.ident, lo.is_main) for lo in ledger.leftover_processes("run1")] == [
            (ident, True)
        ]
        # Nor is it kept in a set of its own: 216 bytes a resting process.
        assert not [o for o in gc.get_objects() if isinstance(o, frozenset) and ident in o]


async def test_terminate_tree_ends_forked_grandchildren(instance: str, ledger: Ledger) -> None:
    reaper = Reaper(instance_id=instance, ledger=ledger)
    async with spawned(instance, "run1", "--children", "2", "--bare") as w:
        out = await _terminate(reaper, w)
        assert w.exited.is_set()
        # The exit status stays with its owner: the reaper never waited for main.
        assert w.popen.returncode == -signal.SIGTERM
        assert out.killed == ()
        assert out.survivors == ()
        assert set(out.signalled) == set(w.all_pids())
        assert not any(_alive(p) for p in w.all_pids())


async def test_terminate_tree_catches_setsid_daemon_by_marker(
    instance: str, ledger: Ledger
) -> None:
    reaper = Reaper(instance_id=instance, ledger=ledger)
    async with spawned(instance, "run1", "--daemon") as w:
        (daemon,) = w.pids["daemon"]
        assert os.getsid(daemon) != w.pid  # left the session: only its marker tells
        out = await _terminate(reaper, w)
        assert daemon in out.signalled
        assert out.survivors == ()
        assert not _alive(daemon)


@pytest.mark.usefixtures("subreaper")
async def test_subreaper_adopts_and_reaps_double_forked_daemon(
    instance: str, ledger: Ledger
) -> None:
    reaper = Reaper(instance_id=instance, ledger=ledger)
    assert reaper.become_subreaper()
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    flag = ctypes.c_int(0)
    assert libc.prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0) == 0
    assert flag.value == 1
    async with spawned(instance, "run1", "--daemon") as w:
        (daemon,) = w.pids["daemon"]
        assert psutil.Process(daemon).ppid() == os.getpid()
        out = await _terminate(reaper, w)
        assert out.survivors == ()
        assert w.popen.returncode == -signal.SIGTERM
        # Killed and reaped: not even a zombie is left.
        assert not psutil.pid_exists(daemon)


async def test_terminate_tree_wakes_a_stopped_tree_to_take_the_signal(
    instance: str, ledger: Ledger
) -> None:
    """A SIGSTOPped worker must see SIGTERM, not sit out the timeout to SIGKILL."""
    reaper = Reaper(instance_id=instance, ledger=ledger)
    async with spawned(instance, "run1", "--children", "1", "--bare") as w:
        for pid in w.all_pids():
            os.kill(pid, signal.SIGSTOP)
        out = await _terminate(reaper, w, grace=15)
        assert w.popen.returncode == -signal.SIGTERM
        assert out.killed == ()
        assert not any(_alive(p) for p in w.all_pids())


async def test_terminate_tree_escalates_to_sigkill(instance: str, ledger: Ledger) -> None:
    reaper = Reaper(instance_id=instance, ledger=ledger)
    async with spawned(instance, "run1", "--children", "1", "--ignore-term") as w:
        started = anyio.current_time()
        out = await _terminate(reaper, w, grace=0.5)
        assert anyio.current_time() - started >= 0.5
        assert w.popen.returncode == -signal.SIGKILL
        assert set(out.killed) == set(w.all_pids())
        assert out.survivors == ()
        assert not any(_alive(p) for p in w.all_pids())


async def test_terminate_tree_catches_daemon_forked_during_grace(
    instance: str, ledger: Ledger
) -> None:
    reaper = Reaper(instance_id=instance, ledger=ledger)
    async with spawned(instance, "run1", "--fork-on-term") as w:
        out = await _terminate(reaper, w)
        assert w.popen.returncode == 0
        (late,) = out.killed  # the daemon born from the SIGTERM handler
        assert late != w.pid
        assert not _alive(late)
        assert _marked(instance) == []


async def test_terminate_tree_settles_the_run(instance: str, ledger: Ledger) -> None:
    reaper = Reaper(instance_id=instance, ledger=ledger)
    async with spawned(instance, "run1", "--children", "1") as w:
        _record_run(ledger, "run1", w.ident)
        await _terminate(reaper, w)
    assert ledger.open_runs() == []
    assert ledger.leftover_processes() == []


async def test_end_leftovers_after_main_exited(instance: str, ledger: Ledger) -> None:
    reaper = Reaper(instance_id=instance, ledger=ledger)
    async with spawned(instance, "run1", "--children", "2", "--bare", "--exit") as w:
        main = w.ident
        with anyio.fail_after(10):
            await w.exited.wait()
        assert w.popen.returncode == 0
        left = [*w.pids["child"], *w.pids["bare"]]
        assert all(_alive(p) for p in left)
        with anyio.fail_after(20):
            out = await reaper.end_leftovers(main, run_id="run1", sig=signal.SIGTERM, timeout=10)
        assert set(out.signalled) == set(left)  # the bare one by its session
        assert out.survivors == ()
        assert not any(_alive(p) for p in left)


@contextlib.asynccontextmanager
async def held_before_exec() -> AsyncIterator[int]:
    """A child of this process forked by ``Popen`` and held in ``preexec_fn``, before it
    closes its fds and execs, until the block ends: what each spawn is for a moment (a
    long one on a loaded machine). It holds a copy of every fd of this process; its pid."""
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    spawned: list[subprocess.Popen[bytes]] = []

    def held() -> None:  # in the child, between fork and exec
        os.write(ready_w, str(os.getpid()).encode())
        os.read(go_r, 1)

    def spawn() -> None:  # Popen returns once the child has exec'd
        spawned.append(
            subprocess.Popen(
                PAUSER, stdin=subprocess.DEVNULL, preexec_fn=held, start_new_session=True
            )
        )

    thread = threading.Thread(target=spawn)
    thread.start()
    try:
        with anyio.fail_after(10):
            await anyio.wait_readable(ready_r)
        yield int(os.read(ready_r, 32))
    finally:
        os.write(go_w, b"!")
        await anyio.to_thread.run_sync(thread.join, 10)
        for fd in (ready_r, ready_w, go_r, go_w):
            os.close(fd)
        for popen in spawned:
            popen.kill()
            popen.wait(10)


async def test_end_leftovers_spares_a_spawn_not_yet_exec(instance: str, ledger: Ledger) -> None:
    """A spawn holds a copy of every fd of dsup until it execs, the output pipes of the
    runs among them. A run's leftovers were the processes holding its pipes: when they
    were looked for while another process was being spawned (a burst of crashes and
    restarts on a loaded machine), that new run was killed at its start."""
    reaper = Reaper(instance_id=instance, ledger=ledger)
    async with spawned(instance, "run1", "--exit") as w:
        with anyio.fail_after(10):
            await w.exited.wait()
        assert w.popen.stdout is not None
        pipes = {os.fstat(w.popen.stdout.fileno()).st_ino}
        async with held_before_exec() as pid:
            with anyio.fail_after(20):
                out = await reaper.end_leftovers(
                    w.ident, run_id="run1", sig=signal.SIGTERM, timeout=10, pipes=pipes
                )
            assert out.signalled == ()
            assert _alive(pid)
            orphans = adopted(await Scanner(instance).snapshot(), owned=())
            assert pid not in {p.pid for p in orphans}


async def test_two_instances_never_touch_each_other(ledger: Ledger) -> None:
    mine, theirs = uuid.uuid4().hex, uuid.uuid4().hex
    try:
        reaper = Reaper(instance_id=mine, ledger=ledger, spare_younger_than=0)
        _, their_pids = await launch_orphan(theirs, "run1", "--children", "1")
        async with spawned(mine, "run1", "--children", "1") as w:
            main = await reaper.identify(w.pid)
            assert main is not None
            with anyio.fail_after(20):
                await reaper.terminate_tree(
                    main, run_id="run1", sig=signal.SIGTERM, timeout=10, main_exited=w.exited
                )
            with anyio.fail_after(20):
                assert await reaper.sweep(live_run_ids=()) == ()
                assert await reaper.startup_sweep() == ()
        assert len(_marked(theirs)) == 2
        assert all(_alive(p.pid) for p in _marked(theirs))
        assert all(_alive(p) for p in their_pids["child"])
    finally:
        for inst in (mine, theirs):
            for proc in _marked(inst):
                proc.kill()


async def test_startup_sweep_ends_leftovers_of_previous_life(instance: str, tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    before = time.time() - 2  # psutil's create_time may run a second ahead of time.time()
    main_pid, pids = await launch_orphan(instance, "run1", "--children", "2", "--daemon", "--bare")
    # A recorded process with no marker, outside the tree and the session.
    stray = await _start(PAUSER, env={}, start_new_session=True)
    try:
        with Ledger.open(path) as led:
            first = Reaper(instance_id=instance, ledger=led)
            main = await first.identify(main_pid)
            stray_ident = await first.identify(stray.pid)
            assert main is not None
            assert stray_ident is not None
            _record_run(led, "run1", main)
            led.record_descendants("run1", [stray_ident])
        # dsup "died" here; a new life opens the same ledger.
        with Ledger.open(path) as led:
            with anyio.fail_after(20):
                ended = await Reaper(instance_id=instance, ledger=led).startup_sweep(grace=5)
            everything = [main_pid, stray.pid, *(p for ps in pids.values() for p in ps)]
            assert set(ended) == set(everything)
            assert not any(_alive(p) for p in everything)
            assert led.open_runs() == []
            stray.wait(10)  # reaped already: as an orphan adopted by a subreaper would be
    finally:
        if stray.poll() is None:
            stray.kill()
            stray.wait(10)
        _kill_younger(pids["bare"], than=before)


async def test_startup_sweep_never_touches_a_reused_pid(instance: str, ledger: Ledger) -> None:
    decoy = await _start(PAUSER, start_new_session=True)
    try:
        real = psutil.Process(decoy.pid).create_time()
        ledger.record_run_start(
            run_id="old",
            process="w:0",
            program="w",
            pid=decoy.pid,
            create_time=real - 1000,
            started_at=time.time() - 1000,
        )
        ledger.record_descendants("old", [ProcIdent(decoy.pid, real - 500)])
        reaper = Reaper(instance_id=instance, ledger=ledger)
        with anyio.fail_after(20):
            assert await reaper.startup_sweep(grace=1) == ()
            assert await reaper.sweep(live_run_ids=(), grace=1) == ()
        assert _alive(decoy.pid)
        assert decoy.poll() is None
        assert ledger.open_runs() == []
    finally:
        decoy.kill()
        decoy.wait(10)


async def test_sweep_ends_only_runs_that_are_not_live(instance: str, ledger: Ledger) -> None:
    reaper = Reaper(instance_id=instance, ledger=ledger, spare_younger_than=0)
    live_main, live_pids = await launch_orphan(instance, "live", "--children", "1")
    ledger.record_run_start(
        run_id="live", process="w:0", program="w", pid=live_main, create_time=0, started_at=0
    )
    dead_main, dead_pids = await launch_orphan(instance, "dead", "--children", "1", "--daemon")
    with anyio.fail_after(20):
        ended = await reaper.sweep(live_run_ids={"live"})
    dead_all = [dead_main, *dead_pids["child"], *dead_pids["daemon"]]
    assert set(ended) == set(dead_all)
    assert not any(_alive(p) for p in dead_all)
    assert _alive(live_main)
    assert _alive(live_pids["child"][0])
    # The live run's tree is now recorded, for a start-up after a crash.
    recorded = {lo.ident.pid for lo in ledger.leftover_processes() if lo.run_id == "live"}
    assert recorded == {live_main, live_pids["child"][0]}


async def test_sweep_records_only_what_earlier_sweeps_did_not(
    instance: str, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tree at rest costs no ledger write per sweep; a newcomer in it is still recorded."""
    reaper = Reaper(instance_id=instance, ledger=ledger, spare_younger_than=0)
    first, _ = await launch_orphan(instance, "live")
    ledger.record_run_start(
        run_id="live", process="w:0", program="w", pid=first, create_time=0, started_at=0
    )
    written: list[set[int]] = []
    record = ledger.record_descendants

    def spy(run_id: str, procs: list[ProcIdent]) -> None:
        written.append({p.pid for p in procs})
        record(run_id, procs)

    monkeypatch.setattr(ledger, "record_descendants", spy)
    with anyio.fail_after(20):
        await reaper.sweep(live_run_ids={"live"})
        await reaper.sweep(live_run_ids={"live"})
        assert written == [{first}]
        second, _ = await launch_orphan(instance, "live")  # the same run grew
        await reaper.sweep(live_run_ids={"live"})
    assert written == [{first}, {second}]
    recorded = {lo.ident.pid for lo in ledger.leftover_processes() if lo.run_id == "live"}
    assert recorded == {first, second}


async def test_sweep_spares_processes_younger_than_the_sweep(instance: str, ledger: Ledger) -> None:
    reaper = Reaper(instance_id=instance, ledger=ledger, spare_younger_than=60)
    young_main, _ = await launch_orphan(instance, "not-yet-live")
    with anyio.fail_after(20):
        assert await reaper.sweep(live_run_ids=()) == ()
    assert _alive(young_main)


async def test_serve_emits_orphans_cleaned(instance: str, ledger: Ledger) -> None:
    reaper = Reaper(instance_id=instance, ledger=ledger, spare_younger_than=0)
    main_pid, _ = await launch_orphan(instance, "gone")
    events: list[Event] = []
    got = anyio.Event()

    def emit(event: Event) -> None:
        events.append(event)
        got.set()

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            await tg.start(
                functools.partial(
                    reaper.serve,
                    live_run_ids=set,
                    known_children=set,
                    interval=0.05,
                    emit=emit,
                )
            )
            await got.wait()
            tg.cancel_scope.cancel()
    assert events[0] == OrphansCleaned(pids=(main_pid,), reason="sweep")
    assert not _alive(main_pid)


async def test_serve_calls_after_sweep_in_a_thread_after_each_round(
    instance: str, ledger: Ledger
) -> None:
    """The fleet gives back the heap's free memory there, off the event loop."""
    reaper = Reaper(instance_id=instance, ledger=ledger, spare_younger_than=0)
    loop_thread = threading.get_ident()
    threads: list[int] = []
    rounds = anyio.Event()

    def after_sweep() -> None:
        threads.append(threading.get_ident())
        if len(threads) == 2:
            anyio.from_thread.run_sync(rounds.set)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            await tg.start(
                functools.partial(
                    reaper.serve,
                    live_run_ids=set,
                    known_children=set,
                    interval=0.05,
                    emit=lambda _: None,
                    after_sweep=after_sweep,
                )
            )
            await rounds.wait()
            tg.cancel_scope.cancel()
    assert loop_thread not in threads


@pytest.mark.usefixtures("subreaper")
async def test_serve_reaps_an_adopted_orphan_soon_after_it_dies(
    instance: str, ledger: Ledger
) -> None:
    """Not only at the next sweep, which is an hour away here."""
    reaper = Reaper(instance_id=instance, ledger=ledger, spare_younger_than=0)
    assert reaper.become_subreaper()
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            await tg.start(
                functools.partial(
                    reaper.serve, live_run_ids=set, known_children=set, interval=3600, emit=print
                )
            )
            result = await anyio.run_process(
                [sys.executable, str(WORKERS / "reap_orphan_zombie.py")]
            )
            orphan = int(result.stdout)
            await wait_until(lambda: not psutil.pid_exists(orphan), seconds=15)
            tg.cancel_scope.cancel()


async def test_reap_zombies_spares_known_children(ledger: Ledger) -> None:
    reaper = Reaper(instance_id="x", ledger=ledger, spare_younger_than=0)
    argv = ["/bin/sh", "-c", "exit 7"]
    # posix_spawn leaves no Popen object that would reap (or warn) behind our back.
    spawn = functools.partial(os.posix_spawn, argv[0], argv, dict(os.environ))
    stray = await anyio.to_thread.run_sync(spawn)
    known = await anyio.to_thread.run_sync(spawn)
    try:
        reaped: list[int] = []

        async def stray_reaped() -> bool:  # once it has become a zombie
            reaped.extend(await reaper.reap_zombies({known}))
            return stray in reaped

        await eventually(stray_reaped)
        assert known not in reaped
        assert psutil.Process(known).status() == psutil.STATUS_ZOMBIE
    finally:
        _, status = await anyio.to_thread.run_sync(os.waitpid, known, 0)
    assert os.waitstatus_to_exitcode(status) == 7  # its exit status was not stolen
    with pytest.raises(ChildProcessError):
        await anyio.to_thread.run_sync(os.waitpid, stray, os.WNOHANG)


async def test_zombie_look_sees_an_exited_child_without_reaping_it() -> None:
    """The cheap first pass of zombie reaping: live children alone answer False."""
    argv = ["/bin/sh", "-c", "read line; exit 3"]
    read_end, write_end = os.pipe()
    try:
        spawn = functools.partial(
            os.posix_spawn,
            argv[0],
            argv,
            dict(os.environ),
            file_actions=[(os.POSIX_SPAWN_DUP2, read_end, 0)],
        )
        child = await anyio.to_thread.run_sync(spawn)
    finally:
        os.close(read_end)
    try:
        assert not _zombie_child()
    finally:
        os.close(write_end)  # EOF: the child exits
    await wait_until(lambda: psutil.Process(child).status() == psutil.STATUS_ZOMBIE, seconds=10)
    assert _zombie_child()
    assert _zombie_child()  # it looked, it did not reap
    _, status = await anyio.to_thread.run_sync(os.waitpid, child, 0)
    assert os.waitstatus_to_exitcode(status) == 3


async def test_stats_sums_the_tree(instance: str, ledger: Ledger) -> None:
    reaper = Reaper(instance_id=instance, ledger=ledger)
    async with spawned(instance, "run1", "--children", "2") as w:
        stats = await reaper.stats([w.pid, 999_999_999])
        assert list(stats) == [w.pid]
        assert stats[w.pid].nprocs == 3
        assert stats[w.pid].rss > 1_000_000
        assert stats[w.pid].cpu_percent >= 0.0
        again = await reaper.stats([w.pid])
        assert again[w.pid].nprocs == 3


async def test_stats_memory_is_the_rss_of_every_process_summed(
    instance: str, ledger: Ledger
) -> None:
    """MEMORY is documented as summed RSS (shared pages once per process), not PSS."""
    reaper = Reaper(instance_id=instance, ledger=ledger)
    async with spawned(instance, "run1", "--children", "2") as w:
        tree = [psutil.Process(w.pid), *psutil.Process(w.pid).children(recursive=True)]
        assert len(tree) == 3
        low = sum(p.memory_info().rss for p in tree)
        rss = (await reaper.stats([w.pid]))[w.pid].rss
        high = sum(p.memory_info().rss for p in tree)
        pss = sum(p.memory_full_info().pss for p in tree)
        # Idle processes: the sum is steady to within a few pages either way.
        assert min(low, high) - 64 * 4096 <= rss <= max(low, high) + 64 * 4096
        assert rss > pss  # the children share their parent's pages


async def test_stats_never_shows_more_cpu_than_the_threads_can_use(
    instance: str, ledger: Ledger
) -> None:
    """A busy single-threaded worker showed 106% over a 0.1 s window."""
    reaper = Reaper(instance_id=instance, ledger=ledger)
    command = [sys.executable, "-u", str(WORKERS / "ctl_busy.py")]
    async with await anyio.open_process(command, stdin=subprocess.DEVNULL) as busy:
        try:
            await reaper.stats([busy.pid])  # the first sample: 0.0, nothing to compare with
            shown: list[float] = []
            # Until a window shows the worker busy; on a loaded machine it may never
            # get half a core, so this is a measurement window, not a deadline.
            with anyio.move_on_after(20):
                while len(shown) < 40 or max(shown) < 50.0:
                    await anyio.sleep(0.02)  # short windows: the jiffy rounding is worst
                    shown.append((await reaper.stats([busy.pid]))[busy.pid].cpu_percent)
            assert len(shown) >= 40
            assert max(shown) > 0.0  # it was seen running
            threads = psutil.Process(busy.pid).num_threads()
            assert max(shown) <= 100.0 * threads
        finally:
            busy.kill()
            await busy.wait()


def test_adopted_are_unmarked_unowned_children_with_what_they_started() -> None:
    """What a subreaper adopted that no run claims; never a process outside our tree."""
    me = os.getpid()

    def seen(pid: int, ppid: int, run_id: str | None = None, pipes: int = 0) -> Seen:
        inodes = frozenset({pipes}) if pipes else frozenset()
        return Seen(ProcIdent(pid, 1.0), ppid, pid, run_id, "", pipes=inodes)

    snap = {
        s.ident.pid: s
        for s in (
            seen(10, me, "run-a"),  # a run's main: marked
            seen(11, me),  # an unmarked main (its command cleared its env): owned
            seen(20, me, pipes=77),  # adopted, holds a pipe of run-a
            seen(21, 20),  # started by the adopted one
            seen(30, 1),  # a stranger
            seen(31, 30),
        )
    }
    assert {p.pid for p in adopted(snap, owned={11})} == {20, 21}
    assert {p.pid for p in pipe_holders(snap, {77})} == {20, 21}
    assert pipe_holders(snap, {78}) == set()
