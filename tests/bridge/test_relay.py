"""Tests of the relay: per-program modes, incidents, output pacing, audit batches, results."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest

from supervisor import humanize
from supervisor.bridge.relay import (
    AUDIT_BATCH_ROWS,
    AUDIT_CURSOR,
    INCIDENT_WAIT_SECONDS,
    STREAM_BYTES,
    STUCK_SECONDS,
    Relay,
    RelayChannels,
    should_emit,
)
from supervisor.bridge.stream import EXACT_BYTES, omitted_note
from supervisor.config.schema import parse_config
from supervisor.events import (
    OrphansCleaned,
    OutputChunk,
    ProcessState,
    ResultReported,
    StateChanged,
    WorkerResult,
)
from supervisor.output.logfile import log_paths
from supervisor.state.ledger import Ledger
from supervisor.state.outbox import Outbox
from tests._pump import capture
from tests._wait import wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from supervisor.events import Stream
    from supervisor.output.pump import DropTally
    from supervisor.state.records import AuditRecord

S = ProcessState
LOG, RESULTS, AUDIT = 10, 20, 30
_CONFIG = """
[supervisor]
name = "n"
state_dir = "state"

[programs.chatty]
command = ["true"]
relay = "all"

[programs.crashy]
command = ["true"]
start_seconds = 0.5

[programs.silent]
command = ["true"]
relay = "none"

[programs.worker]
command = ["true"]
relay = "results"
"""


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.open(tmp_path / "ledger.sqlite3") as led:
        yield led


@pytest.fixture
def clock() -> _Clock:
    return _Clock()


@pytest.fixture
def relay(tmp_path: Path, ledger: Ledger, clock: _Clock) -> Relay:
    config = parse_config(_CONFIG, tmp_path / "dsup.toml")
    return Relay(
        lambda: config.programs,
        Outbox(ledger),
        ledger,
        log_dir=tmp_path / "logs",
        channels=RelayChannels(log=LOG, results=RESULTS, audit=AUDIT),
        clock=clock,
        wall=lambda: 1_700_000_000.0,
        min_recover_seconds=5.0,
    )


def _relay_of_one(tmp_path: Path, ledger: Ledger) -> Relay:
    """A relay on its real clocks for one program ``w`` relaying all its output."""
    config = parse_config(
        '[supervisor]\nname = "n"\n[programs.w]\ncommand = ["true"]\nrelay = "all"\n',
        tmp_path / "dsup.toml",
    )
    return Relay(
        lambda: config.programs,
        Outbox(ledger),
        ledger,
        log_dir=tmp_path,
        channels=RelayChannels(log=LOG),
    )


def _pending(ledger: Ledger, channel: int | None = None) -> list[tuple[str, str]]:
    where = "" if channel is None else f" AND channel = {channel}"
    rows = ledger.read(
        f"SELECT kind, content FROM outbox WHERE status = 'pending'{where} ORDER BY id"
    )
    return [(row["kind"], row["content"]) for row in rows]


def _write_log(tmp_path: Path, process: str, text: str, stream: Stream = "stdout") -> None:
    """Append ``text`` to a process's log file, as its pump would."""
    path = log_paths(tmp_path / "logs", process)[stream == "stderr"]
    path.parent.mkdir(exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(text)


def _lines(process: str, *lines: str, stream: Stream = "stdout") -> OutputChunk:
    data = "".join(f"{line}\n" for line in lines).encode()
    return OutputChunk(process=process, stream=stream, data=data)


def _state(process: str, old: ProcessState, new: ProcessState, **kw: object) -> StateChanged:
    return StateChanged(
        process=process,
        program=process.split(":")[0],
        old=old,
        new=new,
        at=1_700_000_000.0,
        **kw,  # type: ignore[arg-type]
    )


def _emit(pending: int, since: float, waiting: int = 10, notes: bool = False) -> bool:
    return should_emit(
        pending_rows=pending,
        since_last=since,
        waiting_chars=waiting,
        has_notes=notes,
        interval=1.0,
        holds_a_message=waiting >= 100,
    )


def test_should_emit_paces_output_and_slows_down_behind_a_backlog() -> None:
    assert _emit(0, 1.0)
    assert not _emit(0, 0.5)
    assert not _emit(0, 5.0, waiting=0)
    assert not _emit(3, 5.0), "behind a backlog, only full messages"
    assert not _emit(3, 1.5, waiting=100)
    assert _emit(3, 2.0, waiting=100)
    assert _emit(0, 1.0, waiting=0, notes=True), "state changes go at the channel's pace"
    assert not _emit(0, 0.5, waiting=0, notes=True), "a burst of them shares a message"
    assert not _emit(1, 1.0, waiting=0, notes=True), "they ride in the message after the pending"
    assert _emit(3, 2.0, waiting=0, notes=True), "a backlog slows them, never holds them back"
    assert not should_emit(
        pending_rows=0,
        since_last=5.0,
        waiting_chars=10,
        has_notes=True,
        interval=1.0,
        holds_a_message=False,
        channel_wait=0.3,
    ), "never written ahead of the channel's turn"


async def test_relay_streams_output_only_of_programs_relaying_all(
    relay: Relay, ledger: Ledger
) -> None:
    relay.deliver(_lines("chatty:0", "hello", "@everyone"))
    relay.deliver(_lines("crashy:0", "not relayed"))
    relay.deliver(_lines("silent:0", "not relayed"))
    await relay.flush()
    assert _pending(ledger) == [("output", "▸ `chatty:0`\n```\nhello\n@everyone\n```")]


def _tally(relay: Relay, process: str) -> DropTally:
    """The drop tally the pump is given for ``process`` at a read."""
    tally = relay.room(process)[1]
    assert tally is not None, f"{process} relays its output"
    return tally


async def test_relay_keeps_what_fits_a_flood_and_estimates_the_rest(
    relay: Relay, ledger: Ledger
) -> None:
    """A flood costs the relay the lines it keeps and a bounded count; the rest is estimated."""
    flood = "".join(f"{i:08d} {'z' * 90}\n" for i in range(20_000)).encode()  # 2 MB
    relay.deliver(OutputChunk(process="chatty:0", stream="stdout", data=flood))
    tally = _tally(relay, "chatty:0")
    assert not tally.count_bytes, "past a bounded count, omitted lines are estimated"
    relay.deliver(
        OutputChunk(
            process="chatty:0",
            stream="stdout",
            data=b"",
            dropped_bytes=3 << 20,
            uncounted_bytes=3 << 20,
        )
    )
    await relay.flush(final=True)
    shown = [line for _, content in _pending(ledger) for line in content.split("\n")]
    kept = [line for line in shown if line.endswith("z" * 90)]
    assert kept
    assert [int(line[:8]) for line in kept] == list(range(len(kept)))
    omitted = len(flood) - 100 * len(kept) + (3 << 20)
    lines = 20_000 - len(kept) + (3 << 20) // 100
    note = f"... about {round(lines, -3):,} lines ({humanize.memory(omitted)}) of chatty:0 omitted"
    assert f"{note} (see /logs chatty)" in shown


async def test_relay_counts_lines_a_real_pump_omits_exactly(tmp_path: Path, ledger: Ledger) -> None:
    """A burst of a few thousand lines through a real pipe: the note counts them exactly."""
    relay = _relay_of_one(tmp_path, ledger)
    count = 3000  # lines of 51 bytes: 153 kB, under what the relay counts per message
    await capture(tmp_path, "out_lines.py", str(count), consumers=(relay, None))
    await relay.flush(final=True)
    shown = [line for _, content in _pending(ledger) for line in content.split("\n")]
    kept = [line for line in shown if line.startswith("line ")]
    assert kept == [f"line {i} ".ljust(50, ".") for i in range(len(kept))]
    assert f"... {count - len(kept):,} lines of w:0 omitted (see /logs w)" in shown


async def test_relay_sends_at_most_one_output_message_per_interval(
    relay: Relay, ledger: Ledger, clock: _Clock
) -> None:
    relay.deliver(_lines("chatty:0", "one"))
    await relay.flush()
    relay.deliver(_lines("chatty:0", "two"))
    clock.now += 0.5
    await relay.flush()
    assert len(_pending(ledger)) == 1
    clock.now += 2.0
    relay.deliver(_lines("chatty:0", "three"))
    await relay.flush()
    assert len(_pending(ledger)) == 1, "a row is pending: only a full message goes"
    await relay.flush(final=True)
    assert [c for _, c in _pending(ledger)][1] == "▸ `chatty:0`\n```\ntwo\nthree\n```"


class _CountingOutbox(Outbox):
    """An outbox that counts how often the relay asks for its counts (a look of its writer)."""

    looks = 0

    def pending(self, channel: int) -> int:
        self.looks += 1
        return super().pending(channel)


async def test_relay_writer_rests_behind_a_pending_row_until_it_is_stuck(
    tmp_path: Path, ledger: Ledger, clock: _Clock
) -> None:
    """Behind a pending row, output waits until the row is sent or stuck; the writer
    looked again and again in between (a worker thread each time) while a state change
    waited, from 2 s after the last message until the row was stuck."""
    config = parse_config(_CONFIG, tmp_path / "dsup.toml")
    outbox = _CountingOutbox(ledger)
    relay = Relay(
        lambda: config.programs,
        outbox,
        ledger,
        log_dir=tmp_path / "logs",
        channels=RelayChannels(log=LOG),
        clock=clock,
        tick_seconds=60.0,
    )
    relay.deliver(_lines("chatty:0", "one"))
    await relay.flush()
    assert len(_pending(ledger)) == 1
    clock.now += 3.0  # two intervals since that message; the row not yet stuck
    relay.deliver(_state("chatty:0", S.STARTING, S.RUNNING))
    looks = outbox.looks
    async with anyio.create_task_group() as tg:
        await tg.start(relay.run)
        with anyio.move_on_after(0.5):
            await wait_until(lambda: outbox.looks > looks + 5)
        assert outbox.looks == looks, "nothing is due before the row is stuck"
        tg.cancel_scope.cancel()
    assert len(_pending(ledger)) == 2, "written at the end"


class _Looks:
    """A wall clock that counts the writer's looks (it reads the wall clock at each)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> float:
        self.count += 1
        return 1_700_000_000.0


def _counted_relay(tmp_path: Path, ledger: Ledger, *, tick_seconds: float) -> tuple[Relay, _Looks]:
    """A relay of ``_CONFIG`` to the log channel, and the count of its writer's looks."""
    looks = _Looks()
    config = parse_config(_CONFIG, tmp_path / "dsup.toml")
    relay = Relay(
        lambda: config.programs,
        Outbox(ledger),
        ledger,
        log_dir=tmp_path / "logs",
        channels=RelayChannels(log=LOG),
        wall=looks,
        tick_seconds=tick_seconds,
    )
    return relay, looks


async def test_relay_at_rest_looks_at_nothing_until_output_comes(
    tmp_path: Path, ledger: Ledger
) -> None:
    """A relay with nothing to do looked at what was due at every tick, four times a
    second (about 1 ms of CPU a second on a node at rest); it now sleeps until something
    comes, and output that comes is written a tick later."""
    relay, looks = _counted_relay(tmp_path, ledger, tick_seconds=0.01)
    async with anyio.create_task_group() as tg:
        await tg.start(relay.run)
        with anyio.move_on_after(0.3):
            await wait_until(lambda: looks.count > 0)
        assert looks.count == 0, "nothing to look at"
        relay.deliver(_lines("chatty:0", "hello"))
        await wait_until(lambda: bool(_pending(ledger)))
        tg.cancel_scope.cancel()
    assert _pending(ledger) == [("output", "▸ `chatty:0`\n```\nhello\n```")]


async def test_relay_looks_at_nothing_once_its_last_row_is_sent(
    tmp_path: Path, ledger: Ledger
) -> None:
    """While the log channel's row is pending, the writer looks every tick (recounts,
    stuck rows); once the sender says it was sent and nothing else waits, the tick set
    while it was pending is dropped: it looked once more for nothing before (a burst's
    last message cost a wake of the writer after it)."""
    relay, looks = _counted_relay(tmp_path, ledger, tick_seconds=0.2)
    relay.deliver(_lines("chatty:0", "hello"))
    await relay.flush()
    assert len(_pending(ledger)) == 1
    async with anyio.create_task_group() as tg:
        await tg.start(relay.run)  # asleep until a tick from now: a row is pending
        relay.finished(LOG, 0)  # as the sender says once Discord confirmed it
        written = looks.count
        with anyio.move_on_after(0.6):
            await wait_until(lambda: looks.count > written)
        assert looks.count == written, "nothing to look at"
        relay.deliver(_lines("chatty:0", "again"))
        await wait_until(lambda: len(_pending(ledger)) == 2)
        tg.cancel_scope.cancel()


async def test_relay_state_changes_of_all_programs_are_never_dropped(
    relay: Relay, ledger: Ledger
) -> None:
    relay.deliver(_state("chatty:0", S.STARTING, S.RUNNING, reason="up for 1 s"))
    await relay.flush()
    ((kind, content),) = _pending(ledger)
    assert kind == "state"
    assert "`chatty:0` STARTING → RUNNING: up for 1 s" in content


async def test_relay_crash_loop_is_one_incident_then_closed(
    tmp_path: Path, relay: Relay, ledger: Ledger, clock: _Clock
) -> None:
    outbox = Outbox(ledger)
    _write_log(tmp_path, "crashy:0", "an earlier run\n", "stderr")
    relay.deliver(_state("crashy:0", S.STOPPED, S.STARTING))
    _write_log(tmp_path, "crashy:0", "boom\n", "stderr")
    relay.deliver(_state("crashy:0", S.RUNNING, S.BACKOFF, exit_code=3, reason="too quick"))
    _write_log(tmp_path, "crashy:0", "the next run\n", "stderr")
    await relay.flush()
    ((row),) = outbox.due(now=2e9)
    assert row.kind == "incident"
    assert "exit code 3" in row.content
    assert "```\nboom\n```" in row.content
    outbox.claim(now=1.0)
    outbox.mark_sent(row.id, 999, now=1.0)
    for _ in range(9):
        relay.deliver(_state("crashy:0", S.STARTING, S.RUNNING))
        relay.deliver(_state("crashy:0", S.RUNNING, S.BACKOFF, exit_code=3))
        await relay.flush()
    ((edit),) = outbox.due(now=2e9)
    assert (edit.target, edit.target_message_id) == (row.id, 999)
    assert "crashed 10 times" in edit.content
    relay.deliver(_state("crashy:0", S.STARTING, S.RUNNING))
    clock.now += 4.9
    await relay.flush()
    assert "crashed 10 times" in outbox.due(now=2e9)[0].content
    clock.now += 0.1
    await relay.flush()
    ((closed),) = outbox.due(now=2e9)
    assert closed.id == edit.id, "the pending edit took the closing words"
    assert "recovered after 10 crashes" in closed.content


async def test_relay_incident_goes_out_when_its_logs_cannot_be_read(
    tmp_path: Path, relay: Relay, ledger: Ledger
) -> None:
    err = log_paths(tmp_path / "logs", "crashy:0")[1]
    err.mkdir(parents=True)  # reading it fails (even for root)
    relay.deliver(_state("crashy:0", S.STOPPED, S.STARTING))
    relay.deliver(_state("crashy:0", S.RUNNING, S.EXITED, exit_code=1))
    await relay.flush()
    ((kind, content),) = _pending(ledger)
    assert kind == "incident"
    assert "(no output before the crash)" in content


async def test_relay_none_and_exit_zero_open_no_incident(relay: Relay, ledger: Ledger) -> None:
    relay.deliver(_state("silent:0", S.RUNNING, S.BACKOFF, exit_code=1))
    relay.deliver(_state("crashy:0", S.RUNNING, S.EXITED, exit_code=0))
    await relay.flush()
    assert _pending(ledger) == []


async def test_relay_results_go_to_their_channel_for_results_programs(
    relay: Relay, ledger: Ledger
) -> None:
    assert relay.post_result("worker:0", "42 pages", reply_to=555)
    assert not relay.post_result("crashy:0", "not relayed")
    await relay.flush()
    assert _pending(ledger, RESULTS) == [("result", "42 pages")]
    (row,) = ledger.read("SELECT reply_to FROM outbox")
    assert row["reply_to"] == 555


async def test_relay_relays_reported_results_of_results_programs(
    relay: Relay, ledger: Ledger
) -> None:
    def reported(process: str) -> ResultReported:
        result = WorkerResult(
            id=1,
            process=process,
            program=process.split(":")[0],
            run_id="r",
            text="42 pages",
            data='{"pages": 42}',
            files=("/tmp/out.csv",),
            at=1_700_000_000.0,
        )
        return ResultReported(result=result)

    relay.deliver(reported("worker:0"))
    relay.deliver(reported("crashy:0"))
    await relay.flush()
    ((kind, content),) = _pending(ledger, RESULTS)
    assert kind == "result"
    assert content.startswith("**worker:0** result 1: 42 pages")
    assert _pending(ledger) == [(kind, content)], "crashy relays errors only"


async def test_relay_audit_batches_new_rows_and_keeps_its_cursor(
    relay: Relay, ledger: Ledger, clock: _Clock
) -> None:
    ledger.record_audit(actor="old", source="local", command="stop", target="x", outcome="ok")
    await relay.prepare()
    for who in ("alice", "bob"):
        ledger.record_audit(
            actor=who, source="discord", command="restart", target="crashy", outcome="ok"
        )
    ledger.record_audit(
        actor="eve",
        source="discord",
        command="stop",
        target="all",
        outcome="refused",
        detail="viewer",
    )
    ledger.record_audit(actor="cron", source="local", command="status", target="", outcome="ok")
    relay.deliver(_state("crashy:0", S.BACKOFF, S.FATAL, reason="gave up"))
    relay.deliver(OrphansCleaned(pids=(11, 12), reason="startup"))
    await relay.flush()
    ((kind, content),) = _pending(ledger, AUDIT)
    lines = content.splitlines()
    assert kind == "audit"
    assert len(lines) == 5
    assert "⛔ `crashy:0` FATAL: gave up" in lines[0]
    assert "ended 2 orphan processes (startup): pids 11, 12" in lines[1]
    assert "`alice` (discord) `restart crashy` ok" in lines[2]
    assert "`eve` (discord) `stop all` refused: viewer" in lines[4]
    assert "old" not in content
    assert "cron" not in content
    (newest,) = ledger.audit_rows(limit=1)
    assert Outbox(ledger).meta(AUDIT_CURSOR) == str(newest.id)


class _AuditReads(Ledger):
    """A ledger counting the reads of new audit rows (each a trip to a worker thread)."""

    reads = 0

    def audit_since(self, after_id: int, limit: int = 100) -> list[AuditRecord]:
        self.reads += 1
        return super().audit_since(after_id, limit)


async def test_relay_reads_new_audit_rows_only_once_some_were_written(
    tmp_path: Path, clock: _Clock
) -> None:
    """With an audit channel, the relay read the ledger's new audit rows at every look
    past its interval: a trip to a worker thread every second on a node at rest. It now
    reads once a row was written, and again while a read left rows behind."""
    config = parse_config(_CONFIG, tmp_path / "dsup.toml")
    with _AuditReads.open(tmp_path / "ledger.sqlite3") as ledger:
        assert isinstance(ledger, _AuditReads)
        relay = Relay(
            lambda: config.programs,
            Outbox(ledger),
            ledger,
            log_dir=tmp_path / "logs",
            channels=RelayChannels(log=LOG, audit=AUDIT),
            clock=clock,
        )
        await relay.prepare()
        reads = []
        for written in (0, 0, 0, 1, 0, AUDIT_BATCH_ROWS + 50, 0, 0):
            for _ in range(written):
                ledger.record_audit(
                    actor="alice", source="discord", command="restart", target="w", outcome="ok"
                )
            clock.now += 2.0
            await relay.flush()
            reads.append(ledger.reads)
        shown = sum(c.count("`alice`") for _, c in _pending(ledger, AUDIT))
    assert reads == [1, 1, 1, 2, 2, 3, 4, 4]
    assert shown == AUDIT_BATCH_ROWS + 51


async def test_relay_capacity_is_none_when_nothing_is_relayed(
    tmp_path: Path, ledger: Ledger
) -> None:
    config = parse_config(
        '[supervisor]\nname = "n"\n[programs.a]\ncommand = ["true"]\nrelay = "none"\n',
        tmp_path / "dsup.toml",
    )
    quiet = Relay(
        lambda: config.programs,
        Outbox(ledger),
        ledger,
        log_dir=tmp_path,
        channels=RelayChannels(log=LOG),
    )
    assert quiet.room("a:0")[0] == -1


async def test_relay_capacity_omits_once_the_stream_is_full(relay: Relay) -> None:
    assert relay.room("chatty:0")[0] == STREAM_BYTES
    assert _tally(relay, "chatty:0").count_bytes, "a few omitted lines are counted"
    relay.deliver(_lines("chatty:0", *(["y" * 300] * 200)))
    assert relay.room("chatty:0")[0] == 0


async def test_relay_takes_no_lines_of_a_program_not_relaying_all(relay: Relay) -> None:
    """While one program relays its output, the others' is not framed for the relay."""
    assert relay.room("chatty:0")[0] == STREAM_BYTES
    for process in ("crashy:0", "silent:0", "worker:0", "unknown:0"):
        assert relay.room(process)[0] == -1, process


async def test_relay_holds_its_answer_to_a_flood_until_it_writes_a_message(
    relay: Relay, ledger: Ledger
) -> None:
    """Full and counting no more, the relay holds its answer (the pump adds sizes without
    asking); the message it writes lets the pump ask again, and the next read gets lines."""
    flood = "".join(f"{i:08d} {'z' * 90}\n" for i in range(20_000)).encode()
    relay.deliver(OutputChunk(process="chatty:0", stream="stdout", data=flood))
    tally = _tally(relay, "chatty:0")
    held = [tally.is_held]
    await relay.flush()
    assert _pending(ledger)
    held.append(tally.is_held)
    assert held == [True, False]
    assert relay.room("chatty:0")[0] == STREAM_BYTES


async def test_relay_lets_go_of_its_answer_to_a_flood_at_a_reload(
    tmp_path: Path, ledger: Ledger
) -> None:
    """A reload may stop a program relaying its output: the relay's next look lets the
    pumps ask again, though no message went (Discord busy), and they get -1."""
    configs = [parse_config(_CONFIG, tmp_path / "dsup.toml")]
    relay = Relay(
        lambda: configs[-1].programs,
        Outbox(ledger),
        ledger,
        log_dir=tmp_path,
        channels=RelayChannels(log=LOG),
        channel_wait=lambda channel: 60.0,  # no message may go
    )
    flood = "".join(f"{i:08d} {'z' * 90}\n" for i in range(20_000)).encode()
    relay.deliver(OutputChunk(process="chatty:0", stream="stdout", data=flood))
    tally = _tally(relay, "chatty:0")
    await relay.flush()
    held = [tally.is_held]  # no message went
    configs.append(parse_config(_CONFIG.replace('relay = "all"', ""), tmp_path / "dsup.toml"))
    await relay.flush()
    held.append(tally.is_held)
    assert held == [True, False]
    assert relay.room("chatty:0")[0] == -1


async def test_relay_tells_a_tallied_omission_before_the_lines_after_it(
    relay: Relay, ledger: Ledger
) -> None:
    """Past the bytes it counts, the pump adds omitted sizes to a tally; they are told
    where they were omitted: after the lines before, before the lines after."""
    relay.deliver(
        OutputChunk(
            process="chatty:0",
            stream="stdout",
            data=b"first\n",
            dropped_bytes=300_000,
            dropped=3000,
        )
    )
    tally = _tally(relay, "chatty:0")
    assert not tally.count_bytes, "past a bounded count, omitted lines are estimated"
    tally.size += 100_000
    relay.deliver(_lines("chatty:0", "later"))
    await relay.flush(final=True)
    ((_, content),) = _pending(ledger)
    # 3,000 lines counted in 300,000 bytes: the 100,000 tallied are about 1,000 more.
    note = omitted_note("chatty:0", 4000, 400_000, exact=False)
    assert content == f"▸ `chatty:0`\n```\nfirst\n{note}\nlater\n```"


async def test_relay_tells_the_size_a_real_pump_omits_past_its_count(
    tmp_path: Path, ledger: Ledger
) -> None:
    """A flood of 5 MB through a real pipe: counted while little is omitted, tallied by
    size beyond; the note tells the exact size and the lines about right."""
    relay = _relay_of_one(tmp_path, ledger)
    count = 100_000  # lines of 51 bytes, far past what the relay counts per message
    await capture(tmp_path, "out_lines.py", str(count), consumers=(relay, None))
    await relay.flush(final=True)
    shown = [line for _, content in _pending(ledger) for line in content.split("\n")]
    kept = [line for line in shown if line.startswith("line ")]
    assert kept == [f"line {i} ".ljust(50, ".") for i in range(len(kept))]
    omitted = count - len(kept)
    note = omitted_note("w:0", omitted, omitted * 51, exact=False)
    assert note.startswith("... about ")
    assert note in shown


class _Reads:
    """The relay as a pump's consumer, counting the times the pump asks it for room and the
    chunks it hands over."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.asked = self.chunks = 0

    def room(self, process: str) -> tuple[int, DropTally | None]:
        self.asked += 1
        return self.relay.room(process)

    def deliver(self, chunk: OutputChunk) -> None:
        self.chunks += 1
        self.relay.deliver(chunk)


@pytest.mark.xdist_group("floods")
async def test_relay_takes_no_chunk_per_read_once_its_count_is_spent(
    tmp_path: Path, ledger: Ledger
) -> None:
    """Once the lines omitted since the last message are counted up to the relay's
    budget, a flood's later reads only add their size to the tally: a count that stopped
    a fraction of a line short of the budget handed the relay a chunk on every read.
    Nor is the relay asked for its room at each of those reads: it holds its answer."""
    reads = _Reads(_relay_of_one(tmp_path, ledger))
    count = 200_000  # 10 MB: at least 10 reads of at most 1 MiB
    await capture(tmp_path, "out_lines.py", str(count), consumers=(reads, None))
    assert reads.chunks <= 2 + EXACT_BYTES // (64 * 1024), "a chunk until the count is spent"
    assert reads.asked <= reads.chunks + 2, "asked again once it held its answer"


async def test_relay_capacity_is_none_without_a_program_relaying_all(
    tmp_path: Path, ledger: Ledger
) -> None:
    """Incidents read the logs: relaying errors and results must not frame lines."""
    config = parse_config(
        '[supervisor]\nname = "n"\n[programs.a]\ncommand = ["true"]\n'
        '[programs.b]\ncommand = ["true"]\nrelay = "results"\n',
        tmp_path / "dsup.toml",
    )
    errors_only = Relay(
        lambda: config.programs,
        Outbox(ledger),
        ledger,
        log_dir=tmp_path,
        channels=RelayChannels(log=LOG, results=RESULTS),
    )
    assert errors_only.room("a:0")[0] == -1
    assert errors_only.room("b:0")[0] == -1


def _sent_all(ledger: Ledger, relay: Relay) -> None:
    """The sender's part: every pending row sent, and the relay told."""
    outbox = Outbox(ledger)
    for row in outbox.claim(now=2e9).rows:
        outbox.mark_sent(row.id, 1000 + row.id, now=2e9)
    relay.finished(LOG, 0)


async def test_relay_incidents_opening_together_take_turns_behind_no_row(
    relay: Relay, ledger: Ledger
) -> None:
    """Incidents opening together were all written at once, so the state changes after
    them waited a turn of the channel (about a second) per incident."""
    for n in range(3):
        relay.deliver(_state(f"chatty:{n}", S.STARTING, S.RUNNING))
        relay.deliver(_state(f"chatty:{n}", S.RUNNING, S.BACKOFF, exit_code=1))
    await relay.flush()
    ((kind, content),) = _pending(ledger, LOG)
    assert kind == "incident"
    assert content.index("`chatty:2` RUNNING → BACKOFF") < content.index("🔴 `chatty:0` crashed")
    relay.deliver(_state("chatty:0", S.BACKOFF, S.STARTING))
    await relay.flush()
    assert len(_pending(ledger, LOG)) == 1, "nothing queues behind the row being sent"
    _sent_all(ledger, relay)
    await relay.flush()
    ((kind, content),) = _pending(ledger, LOG)
    assert kind == "incident"
    assert content.splitlines()[0].endswith("`chatty:0` BACKOFF → STARTING")
    assert "🔴 `chatty:1` crashed" in content
    _sent_all(ledger, relay)
    relay.deliver(_lines("chatty:0", "output waits for the last incident"))
    await relay.flush()
    ((kind, content),) = _pending(ledger, LOG)
    assert content.startswith("🔴 `chatty:2` crashed")


async def test_relay_many_state_changes_go_before_a_waiting_incident_for_a_while(
    relay: Relay, ledger: Ledger, clock: _Clock
) -> None:
    relay.deliver(_state("crashy:0", S.RUNNING, S.BACKOFF, exit_code=1))
    relay.deliver(_state("crashy:1", S.RUNNING, S.BACKOFF, exit_code=1))
    for n in range(20):
        relay.deliver(_state("chatty:0", S.STARTING, S.RUNNING, reason=f"the {n}th time"))
    await relay.flush()
    ((kind, content),) = _pending(ledger, LOG)
    assert kind == "state"
    assert "the 19th time" in content
    _sent_all(ledger, relay)
    await relay.flush()
    ((kind, content),) = _pending(ledger, LOG)
    assert content.startswith("⚠️ also crashed: `crashy:1` (a message each follows)\n🔴 `crashy:0`")
    _sent_all(ledger, relay)
    for n in range(20, 40):
        relay.deliver(_state("chatty:0", S.STARTING, S.RUNNING, reason=f"the {n}th time"))
    clock.now += INCIDENT_WAIT_SECONDS
    relay.deliver(_lines("chatty:0", "output"))
    await relay.flush()
    ((kind, content),) = _pending(ledger, LOG)
    assert kind == "incident", "an incident waits for its turn only so long"
    assert content.startswith("<t:")
    assert "🔴 `crashy:1` crashed" in content
    _sent_all(ledger, relay)
    await relay.flush()
    ((kind, content),) = _pending(ledger, LOG)
    assert kind == "state"
    assert "the 39th time" in content
    assert content.endswith("output\n```")


async def test_relay_writes_every_incident_once_the_channel_is_stuck(
    relay: Relay, ledger: Ledger, clock: _Clock
) -> None:
    """Discord away: incidents wait on disk (never lost to a restart), not in memory."""
    for n in range(3):
        relay.deliver(_state(f"crashy:{n}", S.RUNNING, S.BACKOFF, exit_code=1))
    await relay.flush()
    assert len(_pending(ledger, LOG)) == 1
    clock.now += STUCK_SECONDS
    await relay.flush()
    assert [kind for kind, _ in _pending(ledger, LOG)] == ["incident"] * 3


async def test_relay_first_incident_of_a_burst_names_the_crashes_waiting(
    relay: Relay, ledger: Ledger
) -> None:
    """Relaying errors only, the crashes whose incidents wait their turn were not told
    for seconds; a program relaying all tells them among its state changes."""
    for n in range(3):
        relay.deliver(_state(f"crashy:{n}", S.RUNNING, S.BACKOFF, exit_code=1))
    relay.deliver(_state("chatty:0", S.RUNNING, S.BACKOFF, exit_code=1))
    await relay.flush()
    ((_, content),) = _pending(ledger, LOG)
    assert content.startswith("<t:")  # chatty's state change
    assert "⚠️ also crashed: `crashy:1`, `crashy:2` (a message each follows)" in content
    assert "🔴 `crashy:0` crashed" in content
    _sent_all(ledger, relay)
    await relay.flush()
    ((_, content),) = _pending(ledger, LOG)
    assert content.startswith("🔴 `crashy:1` crashed"), "told once"
