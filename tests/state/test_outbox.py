"""Tests of the outbox table: order, retries, replay, nonces, collapsing and bounds."""

from __future__ import annotations

import logging
import sqlite3
from typing import TYPE_CHECKING

import pytest

from supervisor.state.ledger import DEFERRED_MAX, Ledger
from supervisor.state.outbox import (
    MAX_CONTENT_CHARS,
    MESSAGE_CHARS,
    Outbox,
    encode_marker,
    retry_delay,
)
from tests._ledger_full import ledger_full

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

A, B = 111, 222


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.open(tmp_path / "ledger.sqlite3") as led:
        yield led


@pytest.fixture
def outbox(ledger: Ledger) -> Outbox:
    return Outbox(ledger, max_pending_output=3)


def _send_head(outbox: Outbox, channel: int, message_id: int, now: float = 10.0) -> int:
    others = frozenset(r.channel for r in outbox.due(now=now)) - {channel}
    (row,) = outbox.claim(now=now, skip=others).rows
    outbox.mark_sent(row.id, message_id, now=now)
    return row.id


def test_outbox_sends_each_channel_in_order_written(outbox: Outbox) -> None:
    a1 = outbox.post(A, "notice", "a1", now=1.0)
    b1 = outbox.post(B, "audit", "b1", now=1.0)
    a2 = outbox.post(A, "notice", "a2", now=2.0)
    assert [r.id for r in outbox.due(now=5.0)] == [a1, b1]
    _send_head(outbox, A, 9001)
    assert [r.content for r in outbox.due(now=5.0)] == ["b1", "a2"]
    assert [r.id for r in outbox.due(now=5.0, skip=frozenset({B}))] == [a2]


def test_outbox_failed_row_waits_for_its_retry_and_holds_its_channel(outbox: Outbox) -> None:
    first = outbox.post(A, "notice", "first", now=1.0)
    outbox.post(A, "notice", "second", now=1.0)
    (claimed,) = outbox.claim(now=2.0).rows
    assert (claimed.id, claimed.attempts, claimed.first_try_at) == (first, 0, None)
    outbox.mark_failed(first, "HTTP 503", retry_at=2.0 + retry_delay(1))
    assert outbox.due(now=2.5) == []
    (row,) = outbox.claim(now=3.0).rows
    assert (row.id, row.attempts, row.first_try_at) == (first, 1, 2.0)
    (again,) = outbox.due(now=3.0)
    assert (again.attempts, again.first_try_at) == (2, 2.0)


def test_outbox_claim_says_which_channels_still_wait_and_until_when(outbox: Outbox) -> None:
    """The sender looks again only for these (or a write): no claim per send for nothing."""
    c = 333
    outbox.post(A, "notice", "a1", now=1.0)
    outbox.post(A, "notice", "a2", now=1.0)
    outbox.post(B, "notice", "b1", now=1.0)
    failed = outbox.post(c, "notice", "c1", now=1.0)
    outbox.claim(now=1.0, skip=frozenset({A, B}))
    outbox.mark_failed(failed, "HTTP 503", retry_at=9.0)
    claim = outbox.claim(now=2.0, skip=frozenset({B}))
    assert [r.content for r in claim.rows] == ["a1"]
    assert dict(claim.waiting) == {A: 0.0, B: 0.0, c: 9.0}
    assert outbox.mark_sent(claim.rows[0].id, 9001, now=2.0) == 1  # a2 left in A
    claim = outbox.claim(now=3.0, skip=frozenset({B, c}))
    assert [r.content for r in claim.rows] == ["a2"]
    assert dict(claim.waiting) == {B: 0.0, c: 9.0}  # nothing left behind a2


def test_outbox_claim_counts_the_rows_pending_per_channel(outbox: Outbox) -> None:
    """A writer that claims in its trip needs no count of its own: the rows taken count."""
    outbox.post(A, "notice", "a1", now=1.0)
    outbox.post(A, "notice", "a2", now=1.0)
    sent = outbox.post(B, "notice", "b1", now=1.0)
    outbox.mark_sent(outbox.claim(now=1.0, skip=frozenset({A})).rows[0].id, 9001, now=1.0)
    assert sent not in {r.id for r in outbox.due(now=2.0)}
    claim = outbox.claim(now=2.0)
    assert [r.content for r in claim.rows] == ["a1"]
    assert claim.pending == {A: 2}
    assert claim.pending[A] == outbox.pending(A)


def test_outbox_pending_rows_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite3"
    with Ledger.open(path) as led:
        box = Outbox(led)
        row_id = box.post(A, "result", "done", now=1.0)
        box.claim(now=2.0)
        nonce = box.nonce(row_id)
    with Ledger.open(path) as led:
        (row,) = Outbox(led).due(now=3.0)
    assert (row.id, row.content, row.attempts, row.nonce) == (row_id, "done", 1, nonce)


def test_outbox_nonce_is_stable_short_and_differs_between_ledgers(tmp_path: Path) -> None:
    with (
        Ledger.open(tmp_path / "one.sqlite3") as one,
        Ledger.open(tmp_path / "two.sqlite3") as two,
    ):
        box_one, box_two = Outbox(one), Outbox(two)
        assert box_one.nonce(1) == Outbox(one).nonce(1)
        assert box_one.nonce(1) != box_two.nonce(1)
        assert len(box_one.nonce(10**15 - 1)) <= 25


def test_outbox_marker_is_invisible_and_fits(outbox: Outbox) -> None:
    row_id = outbox.post(A, "state", "x", now=1.0)
    (row,) = outbox.due(now=1.0)
    assert row.marker == encode_marker(outbox.nonce(row_id))
    assert row.marker
    assert set(row.marker) <= {"\u2063", "\u200b", "\u200c", "\u200d", "\u2060"}
    assert not encode_marker(outbox.nonce(0x12)).endswith(encode_marker(outbox.nonce(0x2)))
    assert len(encode_marker(outbox.nonce(10**15 - 1))) + MAX_CONTENT_CHARS <= MESSAGE_CHARS


def test_outbox_edit_of_an_untried_create_changes_the_create(outbox: Outbox) -> None:
    row_id = outbox.post(A, "incident", "crashed", now=1.0)
    assert outbox.edit(row_id, "crashed 3 times", now=2.0) == row_id
    (row,) = outbox.due(now=3.0)
    assert (row.id, row.content, row.is_edit) == (row_id, "crashed 3 times", False)


def test_outbox_consecutive_edits_collapse_into_one(outbox: Outbox) -> None:
    created = outbox.post(A, "incident", "crashed", now=1.0)
    _send_head(outbox, A, 5555)
    first = outbox.edit(created, "crashed 2 times", now=2.0)
    outbox.post(A, "state", "between", now=2.5)
    assert outbox.edit(created, "crashed 3 times", now=3.0) == first
    rows = outbox.due(now=4.0)
    assert [(r.id, r.content, r.target_message_id) for r in rows] == [
        (first, "crashed 3 times", 5555)
    ]
    assert rows[0].nonce == outbox.nonce(created)


def test_outbox_edit_after_the_edit_was_sent_queues_another(outbox: Outbox) -> None:
    created = outbox.post(A, "incident", "crashed", now=1.0)
    _send_head(outbox, A, 5555)
    first = outbox.edit(created, "v2", now=2.0)
    _send_head(outbox, A, 5555)
    second = outbox.edit(created, "v3", now=3.0)
    assert second != first
    assert [r.content for r in outbox.due(now=4.0)] == ["v3"]


def test_outbox_edit_written_while_an_edit_is_in_flight_is_sent_after_it(
    outbox: Outbox,
) -> None:
    """An edit joined the pending edit the sender had claimed (request in flight): the
    confirmation of the older text marked the newer one sent, and it never went out."""
    created = outbox.post(A, "incident", "crashed", now=1.0)
    _send_head(outbox, A, 5555)
    first = outbox.edit(created, "crashed 2 times", now=2.0)
    (in_flight,) = outbox.claim(now=3.0).rows
    assert (in_flight.id, in_flight.content) == (first, "crashed 2 times")
    second = outbox.edit(created, "crashed 3 times", now=4.0)
    outbox.edit(created, "recovered", now=4.5)
    assert [r.id for r in outbox.due(now=5.0)] == [first]  # the newer text behind it
    outbox.mark_sent(first, 5555, now=5.0)
    (row,) = outbox.claim(now=6.0).rows
    assert (row.id, row.content, row.target_message_id) == (second, "recovered", 5555)
    assert second != first
    outbox.mark_sent(row.id, 5555, now=6.0)
    assert outbox.pending(A) == 0


def test_outbox_edit_of_a_pruned_row_raises(outbox: Outbox) -> None:
    with pytest.raises(LookupError, match="outbox row 42"):
        outbox.edit(42, "x", now=1.0)


def test_outbox_output_past_the_bound_is_summarised_oldest_first(outbox: Outbox) -> None:
    state = outbox.post(A, "state", "scraper:0 RUNNING", now=0.0)
    for i in range(6):
        outbox.post(A, "output", f"block {i}", now=100.0 + 60 * i, counts={"scraper:0": 10})
    outbox.post(A, "incident", "crashed", now=500.0)
    contents = []
    while rows := outbox.due(now=1000.0):
        contents.append(rows[0].content)
        _send_head(outbox, A, 1, now=1000.0)
    assert contents[0] == "scraper:0 RUNNING"
    assert contents[1] == (
        "40 lines of relay from scraper:0 dropped during a 3m00s outage (see /logs scraper)"
    )
    assert contents[2:] == ["block 4", "block 5", "crashed"]
    assert state not in [r.id for r in outbox.due(now=1000.0)]


def test_outbox_never_drops_incidents_results_or_audit(outbox: Outbox) -> None:
    for i in range(10):
        outbox.post(A, "audit", f"audit {i}", now=float(i))
        outbox.post(A, "result", f"result {i}", now=float(i))
    assert outbox.stats().pending == {A: 20}


def test_outbox_summary_merges_processes_and_earlier_summaries(outbox: Outbox) -> None:
    for i in range(8):
        outbox.post(A, "output", "x", now=float(i), counts={"a:0": 1, f"b:{i % 2}": 2})
    (row,) = outbox.due(now=10.0)
    assert row.content.splitlines() == [
        "6 lines of relay from a:0 dropped during a 5s outage (see /logs a)",
        "6 lines of relay from b:0 dropped during a 5s outage (see /logs b)",
        "6 lines of relay from b:1 dropped during a 5s outage (see /logs b)",
    ]
    assert outbox.stats().pending == {A: 3}


def test_outbox_content_too_long_is_cut_saying_so(outbox: Outbox) -> None:
    outbox.post(A, "output", "```\n" + "x" * 5000 + "\n```", now=1.0)
    (row,) = outbox.due(now=1.0)
    assert len(row.content) <= MAX_CONTENT_CHARS
    assert row.content.endswith("(cut: 5,008 characters)")
    assert row.content.count("```") == 2


def test_outbox_abandoned_row_frees_its_channel(outbox: Outbox) -> None:
    bad = outbox.post(A, "notice", "refused", now=1.0)
    outbox.post(A, "notice", "next", now=1.0)
    outbox.claim(now=1.0)
    outbox.mark_abandoned(bad, "400 Bad Request")
    assert [r.content for r in outbox.due(now=2.0)] == ["next"]
    assert outbox.stats().pending == {A: 1}


def test_outbox_pending_counts_the_rows_still_to_send_in_one_channel(outbox: Outbox) -> None:
    sent = outbox.post(A, "notice", "sent", now=1.0)
    outbox.post(A, "notice", "waits", now=1.0)
    outbox.post(B, "notice", "elsewhere", now=1.0)
    outbox.claim(now=1.0)
    outbox.mark_sent(sent, 42, now=1.0)
    assert (outbox.pending(A), outbox.pending(B), outbox.pending(333)) == (1, 1, 0)


def test_outbox_deferred_channel_holds_only_that_channel(outbox: Outbox) -> None:
    outbox.post(A, "state", "a", now=1.0)
    outbox.post(B, "state", "b", now=1.0)
    outbox.defer_channel(A, retry_at=100.0)
    assert [r.channel for r in outbox.due(now=2.0)] == [B]
    assert [r.channel for r in outbox.due(now=100.0)] == [A, B]


def test_outbox_prunes_old_sent_rows_but_keeps_edit_targets(ledger: Ledger) -> None:
    box = Outbox(ledger, keep_sent=2)
    incident = box.post(A, "incident", "open", now=1.0)
    _send_head(box, A, 77)
    box.edit(incident, "still open", now=1.0)
    _send_head(box, A, 77)
    for i in range(5):
        box.post(A, "state", str(i), now=2.0)
        _send_head(box, A, 100 + i)
    (count,) = ledger.read("SELECT count(*) AS n FROM outbox")
    assert count["n"] <= 3
    assert box.get(incident) is None
    with pytest.raises(LookupError):
        box.edit(incident, "gone", now=3.0)


def test_outbox_edit_of_a_row_pruned_after_its_check_raises(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The edit checked its target outside its transaction: a prune in between (the
    sender's thread) lost the edit silently, maybe an incident's closing one."""
    box = Outbox(ledger, keep_sent=1)
    incident = box.post(A, "incident", "open", now=1.0)
    _send_head(box, A, 77)
    later = box.post(A, "state", "later", now=2.0)
    (row,) = box.claim(now=3.0).rows
    read = ledger.read

    def read_then_prune(sql: str, args: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        rows = read(sql, args)
        monkeypatch.setattr(ledger, "read", read)
        box.mark_sent(row.id, 78, now=3.0)  # the sender's prune, right after the check
        return rows

    monkeypatch.setattr(ledger, "read", read_then_prune)
    with pytest.raises(LookupError, match=f"outbox row {incident}"):
        box.edit(incident, "recovered", now=4.0)
    assert box.get(incident) is None
    assert row.id == later


def test_outbox_crash_loop_through_an_outage_joins_its_state_rows_and_keeps_each(
    ledger: Ledger,
) -> None:
    """A crash loop relaying "all" added a state row per message for as long as
    the channel was away: never summarised, the table grew with the outage."""
    box = Outbox(ledger)
    crash = "<t:1765000000:T> `crashy:0` RUNNING → BACKOFF: restarting ({n})\n```\nerr {n}\n```"
    for n in range(1000):
        box.post(A, "state", crash.format(n=n), now=float(n), counts={"crashy:0": 1})
    (rows,) = ledger.read("SELECT count(*) FROM outbox WHERE channel = ?", (A,))
    per_row = MAX_CONTENT_CHARS // (len(crash.format(n=999)) + 1)
    assert rows[0] <= 1000 // per_row + 1
    shown = []
    for message_id in range(rows[0]):
        (row,) = box.claim(now=2000.0).rows
        assert len(row.content) <= MAX_CONTENT_CHARS
        shown.append(row.content)
        box.mark_sent(row.id, message_id, now=2000.0)
    assert "\n".join(shown) == "\n".join(crash.format(n=n) for n in range(1000))


def test_outbox_joins_only_a_state_row_not_yet_tried_right_before(outbox: Outbox) -> None:
    tried = outbox.post(A, "state", "tried", now=1.0)
    (row,) = outbox.claim(now=1.0).rows
    outbox.mark_failed(row.id, "503", retry_at=1.0)
    after_tried = outbox.post(A, "state", "after a try", now=1.0)
    outbox.post(A, "output", "lines", now=1.0)
    after_output = outbox.post(A, "state", "after output", now=1.0)
    assert outbox.post(A, "state", "joined", now=1.0) == after_output
    outbox.post(A, "reply", "an answer", now=1.0, reply_to=5)
    assert len({tried, after_tried, after_output}) == 3
    (pending,) = outbox.stats().pending.values()
    assert pending == 5


def test_outbox_meta_round_trips(outbox: Outbox) -> None:
    assert outbox.meta("audit_cursor") is None
    outbox.set_meta("audit_cursor", "12")
    outbox.set_meta("audit_cursor", "13")
    assert outbox.meta("audit_cursor") == "13"


def test_outbox_table_refuses_an_unknown_status(ledger: Ledger) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        ledger.write(
            "INSERT INTO outbox (channel, kind, content, created_at, until_at, status) "
            "VALUES (1, 'state', 'x', 0, 0, 'lost')",
            [()],
        )


def test_outbox_on_a_full_disk_keeps_its_writes_and_sends_them_once_written(
    ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    """A full disk made post, edit and the sender's marks raise: the relay lost its messages."""
    box = Outbox(ledger)
    incident = box.post(A, "incident", "crashed", now=1.0)
    _send_head(box, A, 500)
    with caplog.at_level(logging.WARNING), ledger_full(ledger):
        asked = box.post(A, "question", "Delete?", now=2.0, marker="question:7")
        assert box.edit(incident, "crashed twice", now=2.0) == incident  # edit it again
        assert box.edit(asked, "Delete? (closed)", now=3.0) == asked
        box.set_meta("audit_cursor", "42")
        assert box.meta("question:7") == str(asked)
        assert box.meta("audit_cursor") == "42"
        assert box.claim(now=5.0).rows == []  # nothing goes out before it is recorded
        assert box.claim(now=6.0).rows == []
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 2  # the ledger's and the outbox's, each said once
    (question,) = box.claim(now=7.0).rows
    assert (question.id, question.content, question.is_edit) == (asked, "Delete? (closed)", False)
    box.mark_sent(asked, 501, now=7.0)
    (edited,) = box.claim(now=8.0).rows
    assert (edited.target, edited.content, edited.target_message_id) == (
        incident,
        "crashed twice",
        500,
    )
    assert box.meta("question:7") == str(asked)
    assert box.meta("audit_cursor") == "42"


def test_outbox_edit_of_a_row_waiting_for_the_disk_collapses_into_it(ledger: Ledger) -> None:
    box = Outbox(ledger)
    with ledger_full(ledger):
        progress = box.post(A, "progress", "10%", now=1.0)
        for percent in (20, 30, 40):
            assert box.edit(progress, f"{percent}%", now=2.0) == progress
        with pytest.raises(LookupError):
            box.edit(progress + 1000, "never posted", now=2.0)
    assert [(r.id, r.content) for r in box.claim(now=3.0).rows] == [(progress, "40%")]
    (rows,) = ledger.read("SELECT count(*) FROM outbox WHERE channel = ?", (A,))
    assert rows[0] == 1


def test_outbox_prunes_markers_with_the_rows_they_mark(ledger: Ledger) -> None:
    """Markers of task replies and questions were kept forever: the table only grew."""
    box = Outbox(ledger, keep_sent=3)
    box.set_meta("audit_cursor", "7")
    for task in range(10):
        box.post(A, "reply", f"task {task} done", now=1.0, marker=f"task-answer:{task}")
        _send_head(box, A, 1000 + task)
    kept = [r["key"] for r in ledger.read("SELECT key FROM outbox_meta WHERE row_id IS NOT NULL")]
    assert kept == [f"task-answer:{task}" for task in range(7, 10)]
    assert box.meta("audit_cursor") == "7"  # settings stay
    (rows,) = ledger.read("SELECT count(*) FROM outbox")
    assert rows[0] == 3


def test_outbox_marker_of_a_message_the_ledger_dropped_says_nothing_was_queued(
    ledger: Ledger,
) -> None:
    """Past 10,000 waiting writes a message was dropped, yet its marker said it was queued."""
    box = Outbox(ledger)
    with ledger_full(ledger):
        kept = box.post(A, "reply", "kept", now=1.0, marker="task-answer:1")
        while ledger.unrecorded < DEFERRED_MAX:  # bounded: each call keeps one more
            ledger.record_audit(actor="a", source="local", command="c", target="t", outcome="ok")
        lost = box.post(A, "reply", "lost", now=2.0, marker="task-answer:2")
        box.edit(kept, "kept, edited", now=3.0, marker="task-answer:3")
        box.set_meta("cursor", "7")
        assert box.meta("task-answer:1") == str(kept)
        assert [box.meta(k) for k in ("task-answer:2", "task-answer:3", "cursor")] == [None] * 3
    assert ledger.retry_deferred()
    assert box.meta("task-answer:1") == str(kept)
    assert [box.meta(k) for k in ("task-answer:2", "task-answer:3", "cursor")] == [None] * 3
    assert box.get(lost) is None
    assert [r.content for r in box.due(now=10.0)] == ["kept"]


def test_outbox_claimed_marker_is_claimed_once_then_taken_over_by_its_row(ledger: Ledger) -> None:
    """A message delivered twice ran its command twice: only its answer's marker was
    looked for, and the first command had not answered yet."""
    box = Outbox(ledger, keep_sent=3)
    assert box.claim_marker("mention:1")
    assert not box.claim_marker("mention:1")
    answer = box.post(A, "reply", "done", now=1.0, marker="mention:1")
    assert box.meta("mention:1") == str(answer)
    assert not box.claim_marker("mention:1")
    assert box.claim_marker("mention:2")  # never answered (dsup died): pruned in time
    for n in range(5):
        box.post(A, "reply", f"answer {n}", now=2.0)
        _send_head(box, A, 1000 + n)
    _send_head(box, A, 2000)
    assert box.meta("mention:2") is None
    assert box.meta("mention:1") is None


def test_outbox_marker_claimed_on_a_full_disk_is_claimed_once(ledger: Ledger) -> None:
    box = Outbox(ledger)
    with ledger_full(ledger):
        assert box.claim_marker("mention:1")
        assert not box.claim_marker("mention:1")
    assert ledger.retry_deferred()
    assert not box.claim_marker("mention:1")
    assert box.meta("mention:1") == ""
