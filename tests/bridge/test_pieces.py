"""Tests of the bridge's pure pieces: access levels, autocomplete, replies, log packing."""

from __future__ import annotations

import gzip
import random
from typing import TYPE_CHECKING

import pytest

from supervisor.bridge.access import level_of
from supervisor.bridge.complete import MAX_CHOICES, rank_targets
from supervisor.bridge.logfile import pack_log
from supervisor.bridge.replies import MESSAGE_LIMIT, failure, fitted, refusal, render
from supervisor.bridge.views import board_view, program_selects
from supervisor.commands.access import AccessLevel, Command
from supervisor.commands.reports import (
    ActionReport,
    LogLines,
    ProcessInfo,
    ProcessResult,
    StatusReport,
    TailReport,
)
from supervisor.config.schema import AccessSpec
from supervisor.errors import AccessDenied, UnknownProcess
from supervisor.events import ProcessState
from supervisor.process.status import ProcessStatus
from supervisor.state.command_sync import CommandSyncStore
from supervisor.state.ledger import Ledger

if TYPE_CHECKING:
    from pathlib import Path

ACCESS = AccessSpec(viewer=(10, 11), operator=(20,), admin=(30, 99))


# -- access ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "roles", "level"),
    [
        (1, (), AccessLevel.NONE),
        (1, (10,), AccessLevel.VIEWER),
        (1, (10, 20), AccessLevel.OPERATOR),
        (1, (11, 30, 20), AccessLevel.ADMIN),
        (99, (), AccessLevel.ADMIN),  # a user id listed, no role
        (20, (10,), AccessLevel.OPERATOR),  # the highest of user and roles
    ],
)
def test_level_of_is_the_highest_granted(
    user: int, roles: tuple[int, ...], level: AccessLevel
) -> None:
    assert level_of(ACCESS, user, roles) is level


def test_level_of_with_nobody_listed_is_nobody() -> None:
    assert level_of(AccessSpec(), 1, (10, 20, 30)) is AccessLevel.NONE


# -- autocomplete ------------------------------------------------------------------

PROGRAMS = ["scraper", "scrubber", "web", "db-backup"]
PROCESSES = ["scraper:0", "scraper:1", "scrubber:0", "web:0", "db-backup:0"]


def test_rank_targets_offers_all_and_programs_first_when_nothing_is_typed() -> None:
    assert rank_targets("", PROGRAMS, PROCESSES)[:5] == ["all", *PROGRAMS]


def test_rank_targets_puts_exact_then_prefix_then_word_then_fuzzy() -> None:
    got = rank_targets("scraper", PROGRAMS, PROCESSES)
    assert got[:3] == ["scraper", "scraper:0", "scraper:1"]
    assert rank_targets("backup", PROGRAMS, PROCESSES)[:2] == ["db-backup", "db-backup:0"]
    assert rank_targets("sr0", PROGRAMS, PROCESSES) == ["scraper:0", "scrubber:0"]
    assert rank_targets("zzz", PROGRAMS, PROCESSES) == []


def test_rank_targets_offers_a_prefix_glob_and_a_typed_glob_that_matches() -> None:
    assert "scr*" in rank_targets("scr", PROGRAMS, PROCESSES)
    assert rank_targets("web", PROGRAMS, PROCESSES)[0] == "web"
    assert "web*" not in rank_targets("web", PROGRAMS, PROCESSES)
    assert rank_targets("s*:1", PROGRAMS, PROCESSES)[0] == "s*:1"
    assert "q*" not in rank_targets("q*", PROGRAMS, PROCESSES)


def test_rank_targets_gives_at_most_25() -> None:
    programs = [f"worker{i}" for i in range(40)]
    processes = [f"worker{i}:0" for i in range(40)]
    got = rank_targets("work", programs, processes)
    assert len(got) == MAX_CHOICES
    assert got[0] == "work*"
    assert got[1:3] == ["worker0", "worker1"]


# -- replies -----------------------------------------------------------------------


def _status(name: str, state: ProcessState, pid: int | None = None) -> ProcessStatus:
    return ProcessStatus(
        process=name,
        program=name.split(":")[0],
        index=0,
        state=state,
        pid=pid,
        run_id=None,
        started_at=100.0 if pid else None,
        state_since=100.0,
        restarts=0,
        last_exit_code=None,
        last_exit_signal=None,
        last_error="",
        reason="gave up after 3 tries" if state is ProcessState.FATAL else "",
    )


def test_an_action_reply_says_what_happened_to_each_process_as_ctl_does() -> None:
    report = ActionReport(
        command=Command.RESTART,
        target="web",
        processes=(
            ProcessResult(process="web:0", outcome="ok", state=ProcessState.RUNNING, pid=42),
            ProcessResult(
                process="web:1", outcome="failed", state=ProcessState.FATAL, message="boom"
            ),
        ),
    )
    reply = render(report, title="/restart web")
    assert reply.content.startswith("/restart web: 2 processes, 1 ok, 1 failed\n```")
    assert "web:0: ok, RUNNING (pid 42)\nweb:1: failed, FATAL: boom" in reply.content
    assert reply.files == ()


def test_a_long_answer_goes_whole_as_an_attachment_never_cut() -> None:
    rows = tuple(
        ProcessInfo(status=_status(f"worker{i}:0", ProcessState.RUNNING, pid=1000 + i))
        for i in range(200)
    )
    reply = render(StatusReport(node="n", at=160.0, processes=rows), title="/status")
    assert len(reply.content) <= MESSAGE_LIMIT
    assert "200 RUNNING" in reply.content
    (file,) = reply.files
    text = file.data.decode()
    assert all(f"worker{i}:0" in text for i in range(200))
    assert "1m" in text  # uptime 60 s


def test_worker_output_cannot_close_the_code_block_nor_control_the_client() -> None:
    log = LogLines(process="w:0", stream="stdout", lines=("```", "\x1b]0;title\x07hi\rx"))
    reply = render(TailReport(logs=(log,)), title="/tail w")
    body = reply.content.split("```\n", 1)[1].rsplit("\n```", 1)[0]
    assert "```" not in body
    assert "\x1b" not in body
    assert "\r" not in body


def test_refusal_names_the_level_needed_and_is_private() -> None:
    reply = refusal(AccessDenied("bob (1)", "restart", "OPERATOR", "VIEWER"))
    assert reply.ephemeral
    assert "restart needs operator access; you have viewer access" in reply.content
    nobody = refusal(AccessDenied("bob (1)", "status", "VIEWER", "NONE"))
    assert "[discord.access]" in nobody.content


def test_failure_tells_our_errors_and_hides_others() -> None:
    unknown = failure(UnknownProcess("nope", ["web"]), title="/stop nope")
    assert "no program or process matches 'nope'" in unknown.content
    internal = failure(RuntimeError("secret token abc"), title="/stop web")
    assert "abc" not in internal.content
    assert "internal error" in internal.content


def test_fitted_keeps_short_answers_inline() -> None:
    assert fitted("head", ["a", "b"], "x").content == "head\n```\na\nb\n```"
    assert fitted("head", [], "x").content == "head"


# -- log files ---------------------------------------------------------------------


def test_pack_log_sends_a_small_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "w.log"
    path.write_bytes(b"line\n" * 10)
    packed = pack_log(path, "w.log", 1000)
    assert packed.attachment is not None
    assert (packed.attachment.name, packed.attachment.data, packed.note) == (
        "w.log",
        b"line\n" * 10,
        "",
    )


def test_pack_log_gzips_a_file_over_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "w.log"
    data = b"".join(b"line %d of a fairly repetitive log\n" % i for i in range(20_000))
    path.write_bytes(data)
    packed = pack_log(path, "w.log", len(data) // 2)
    assert packed.attachment is not None
    assert packed.attachment.name == "w.log.gz"
    assert packed.note == "gzip"
    assert gzip.decompress(packed.attachment.data) == data


def test_pack_log_sends_the_newest_part_when_even_gzip_is_too_big(tmp_path: Path) -> None:
    path = tmp_path / "w.log"
    rnd = random.Random(1)
    lines = [rnd.randbytes(40).hex() for _ in range(20_000)]
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(data)
    limit = 100_000
    packed = pack_log(path, "w.log", limit)
    assert packed.attachment is not None
    assert len(packed.attachment.data) <= limit
    part = gzip.decompress(packed.attachment.data)
    assert data.endswith(part)
    assert part.split(b"\n")[0].decode() in lines  # starts at a whole line
    assert packed.note.startswith("newest ")


def test_pack_log_without_a_file(tmp_path: Path) -> None:
    packed = pack_log(tmp_path / "none.log", "none.log", 100)
    assert packed.attachment is None
    assert packed.note == "no log file yet"


# -- sync digest store ---------------------------------------------------------------


def test_command_sync_store_remembers_the_last_digest_per_guild(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.sqlite3") as ledger:
        store = CommandSyncStore(ledger)
        assert store.digest(5) is None
        store.record(5, "abc")
        store.record(5, "def")
        store.record(6, "xyz")
    with Ledger.open(tmp_path / "l.sqlite3") as ledger:
        assert CommandSyncStore(ledger).digest(5) == "def"
        assert CommandSyncStore(ledger).digest(6) == "xyz"


# -- views ---------------------------------------------------------------------------


async def test_program_menus_hold_25_programs_each_and_at_most_four() -> None:
    assert [m.placeholder for m in program_selects(["a", "b"])] == ["Pick a program to act on it"]
    menus = program_selects([f"p{i}" for i in range(130)])
    assert [m.custom_id for m in menus] == [f"dsup:programs:{i}" for i in range(4)]
    assert [len(m.options) for m in menus] == [25, 25, 25, 25]
    assert menus[0].placeholder == "Programs 1-25"
    assert menus[3].placeholder == "Programs 76-100 (/status name for the others)"
    assert len(board_view(["a"]).children) == 1
