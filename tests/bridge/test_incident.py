"""Tests of incidents: opened by a crash, edited through a crash loop, closed on recovery."""

from __future__ import annotations

from typing import TYPE_CHECKING

from supervisor.bridge.incident import Incidents, also_crashed, is_crash, recover_seconds, render
from supervisor.commands.tail import LogMarks
from supervisor.events import ProcessState, StateChanged
from supervisor.state.incident_posts import OpenIncident
from supervisor.state.outbox import MAX_CONTENT_CHARS

if TYPE_CHECKING:
    from collections.abc import Sequence

S = ProcessState


def _event(
    old: ProcessState,
    new: ProcessState,
    *,
    at: float = 1000.0,
    code: int | None = None,
    sig: int | None = None,
    reason: str = "",
    restarts: int = 0,
) -> StateChanged:
    return StateChanged(
        process="scraper:0",
        program="scraper",
        old=old,
        new=new,
        exit_code=code,
        exit_signal=sig,
        reason=reason,
        restarts=restarts,
        at=at,
    )


def _incidents() -> Incidents:
    return Incidents(recover_after=lambda process: 60.0)


def _on(
    incidents: Incidents,
    event: StateChanged,
    *,
    now: float,
    tail: Sequence[str] = (),
    stream: str = "stderr",
) -> None:
    """``event``, and (for a crash) ``tail`` read from the logs at once."""
    span = (None, LogMarks(None, None))
    incidents.on_state(event, now=now, span=span)
    for incident in incidents.tails_due():
        incidents.tail_read(incident, span, stream, tail)


def test_is_crash_tells_crashes_from_normal_ends() -> None:
    assert is_crash(_event(S.RUNNING, S.EXITED, code=1))
    assert is_crash(_event(S.STARTING, S.BACKOFF, sig=9))
    assert is_crash(_event(S.BACKOFF, S.FATAL))
    assert not is_crash(_event(S.RUNNING, S.EXITED, code=0))
    assert not is_crash(_event(S.STOPPING, S.STOPPED, sig=15))
    assert not is_crash(_event(S.STARTING, S.RUNNING))


def test_recover_seconds_is_ten_start_times_at_least_the_floor() -> None:
    assert recover_seconds(1.0) == 60.0
    assert recover_seconds(30.0) == 300.0
    assert recover_seconds(0.1, minimum=0.5) == 1.0


def test_incident_crash_loop_is_one_incident_edited() -> None:
    incidents = _incidents()
    _on(
        incidents,
        _event(S.RUNNING, S.BACKOFF, code=2, reason="exited too quickly"),
        now=0.0,
        tail=["Traceback", "ValueError: bad"],
        stream="stderr",
    )
    (incident,) = incidents.changed()
    first = render(incident)
    assert "`scraper:0` crashed: exit code 2, now BACKOFF" in first  # its first run
    assert "```\nTraceback\nValueError: bad\n```" in first
    incidents.posted(incident, version=incident.version, row_id=7)
    assert incidents.changed() == []
    for i in range(13):
        _on(incidents, _event(S.STARTING, S.RUNNING, at=1001.0 + i), now=1.0)
        _on(
            incidents,
            _event(S.RUNNING, S.BACKOFF, at=1010.0 + 10 * i, code=2),
            now=2.0,
            tail=["x"],
            stream="stdout",
        )
    (again,) = incidents.changed()
    assert again is incident
    assert (again.crashes, again.row_id) == (14, 7)
    text = render(again)
    assert "crashed 14 times in 2m10s, now BACKOFF" in text
    assert "last lines of stdout:\n```\nx\n```" in text


def test_incident_says_the_restarts_of_its_process_before_the_crash() -> None:
    """The first message said "restart 1" whatever the count, even with restart = never."""
    incidents = _incidents()
    _on(incidents, _event(S.RUNNING, S.BACKOFF, code=1, reason="restarting", restarts=3), now=0.0)
    (incident,) = incidents.changed()
    assert "`scraper:0` crashed: exit code 1 after 3 restarts, now BACKOFF" in render(incident)


def test_incident_closes_after_running_long_enough() -> None:
    incidents = _incidents()
    _on(incidents, _event(S.RUNNING, S.EXITED, code=1), now=0.0)
    (incident,) = incidents.changed()
    incidents.posted(incident, version=incident.version, row_id=3)
    _on(incidents, _event(S.STARTING, S.RUNNING), now=10.0)
    incidents.tick(now=69.9, wall=2000.0)
    assert incidents.changed() == []
    incidents.tick(now=70.0, wall=2000.0)
    (closed,) = incidents.changed()
    assert render(closed).startswith("✅ `scraper:0` recovered after 1 crash")
    incidents.posted(closed, version=closed.version, row_id=3)
    assert incidents.changed() == []
    assert incidents.open_count() == 0


_LEFT = OpenIncident(
    process="scraper:0",
    row_id=7,
    content="🔴 `scraper:0` crashed 6 times in 20s, now BACKOFF",
    opened_at=900.0,
    crashes=6,
)


def test_incident_left_open_by_an_earlier_dsup_is_continued_by_a_crash() -> None:
    """A SIGKILL of dsup left the incident open and the next crash opened a second one."""
    incidents = _incidents()
    incidents.inherit(_LEFT, now=0.0, wall=1500.0, is_known=True)
    assert incidents.changed() == []  # nothing new to say yet
    _on(incidents, _event(S.RUNNING, S.BACKOFF, code=1, at=1600.0), now=5.0)
    (incident,) = incidents.changed()
    assert incident.row_id == 7  # an edit of the same message
    assert render(incident).startswith("🔴 `scraper:0` crashed 7 times in 11m40s, now BACKOFF")


def test_incident_left_open_merges_with_a_crash_seen_before_it_was_found() -> None:
    incidents = _incidents()
    _on(incidents, _event(S.RUNNING, S.BACKOFF, code=1, at=1600.0), now=0.0)
    incidents.inherit(_LEFT, now=1.0, wall=1500.0, is_known=True)
    (incident,) = incidents.changed()
    assert (incident.row_id, incident.crashes, incident.opened_at) == (7, 7, 900.0)


def test_incident_left_open_closes_saying_dsup_was_restarted() -> None:
    incidents = _incidents()
    incidents.inherit(_LEFT, now=0.0, wall=1500.0, is_known=True)
    incidents.tick(now=59.0, wall=1559.0)
    assert incidents.changed() == []
    incidents.tick(now=60.0, wall=1560.0)
    (closed,) = incidents.changed()
    assert render(closed).split("\n") == [
        "⏹️ `scraper:0` closed (dsup was restarted; no crash since) after 6 crashes "
        "(<t:900:f> to <t:1560:f>)",
        _LEFT.content,
    ]
    assert incidents.open_count() == 0


def test_incident_left_open_of_a_process_gone_from_the_config_closes_at_once() -> None:
    incidents = _incidents()
    incidents.inherit(_LEFT, now=0.0, wall=1500.0, is_known=False)
    (closed,) = incidents.changed()
    assert "closed (dsup was restarted without it) after 6 crashes" in render(closed)
    assert incidents.open_count() == 0


def test_incident_recovery_clock_restarts_on_a_new_crash() -> None:
    incidents = _incidents()
    _on(incidents, _event(S.RUNNING, S.EXITED, code=1), now=0.0)
    _on(incidents, _event(S.STARTING, S.RUNNING), now=10.0)
    _on(incidents, _event(S.RUNNING, S.EXITED, code=1), now=50.0)
    incidents.tick(now=100.0, wall=2000.0)
    assert incidents.open_count() == 1


def test_incident_fatal_says_how_to_start_again() -> None:
    incidents = _incidents()
    _on(
        incidents,
        _event(S.STARTING, S.FATAL, code=1, reason="gave up after 4 in a row"),
        now=0.0,
    )
    (incident,) = incidents.changed()
    text = render(incident)
    assert text.startswith("⛔ `scraper:0` is FATAL after 1 crash")
    assert "`/start scraper:0`" in text
    assert "(no output before the crash)" in text


def test_incident_closed_by_an_operator_stop() -> None:
    incidents = _incidents()
    _on(incidents, _event(S.RUNNING, S.BACKOFF, code=1), now=0.0)
    _on(
        incidents,
        _event(S.BACKOFF, S.STOPPED, reason="stopped by alice"),
        now=1.0,
        tail=[],
        stream="",
    )
    (closed,) = incidents.changed()
    assert "stopped (stopped by alice) after 1 crash" in render(closed)
    assert incidents.open_count() == 0


def test_incident_ignores_normal_life() -> None:
    incidents = _incidents()
    _on(incidents, _event(S.STOPPED, S.STARTING), now=0.0)
    _on(incidents, _event(S.STARTING, S.RUNNING), now=1.0)
    _on(incidents, _event(S.RUNNING, S.EXITED, code=0), now=2.0)
    assert incidents.changed() == []


def test_incident_tail_is_bounded_and_fenced() -> None:
    incidents = _incidents()
    _on(
        incidents,
        _event(S.RUNNING, S.EXITED, code=1),
        now=0.0,
        tail=["```"] + ["y" * 300] * 50,
        stream="stderr",
    )
    (incident,) = incidents.changed()
    text = render(incident)
    assert text.count("```") == 2
    assert len(text) < 2000


def test_incident_waits_for_the_lines_of_its_latest_crash() -> None:
    incidents = _incidents()
    first = (None, LogMarks(None, None))
    incidents.on_state(_event(S.RUNNING, S.EXITED, code=1), now=0.0, span=first)
    assert incidents.changed() == [], "not posted before its lines are read"
    (incident,) = incidents.tails_due()
    latest = (None, LogMarks(None, None))
    incidents.on_state(_event(S.RUNNING, S.EXITED, code=1, at=1001.0), now=1.0, span=latest)
    incidents.tail_read(incident, first, "stderr", ["old crash"])
    assert incidents.changed() == [], "lines of an earlier crash are not the latest's"
    incidents.tail_read(incident, latest, "stdout", ["new crash"])
    (ready,) = incidents.changed()
    assert "last lines of stdout:\n```\nnew crash\n```" in render(ready)


def test_render_keeps_the_preamble_and_the_newest_lines_within_a_message() -> None:
    incidents = _incidents()
    lines = [f"{n:03d} " + "x" * 100 for n in range(15)]
    _on(incidents, _event(S.RUNNING, S.BACKOFF, code=1), now=0.0, tail=lines)
    (incident,) = incidents.changed()
    alone = render(incident)
    incident.preamble = "\n".join(f"<t:1:T> `other:{n}` RUNNING → BACKOFF" for n in range(25))
    text = render(incident)
    assert len(text) <= MAX_CONTENT_CHARS < len(incident.preamble) + len(alone)
    assert text.startswith(incident.preamble + "\n🔴 `scraper:0` crashed")
    shown = text.split("```\n", 1)[1].removesuffix("\n```").splitlines()
    assert 1 < len(shown) < len(incident.tail)
    assert shown == list(incident.tail[-len(shown) :]), "the newest lines, whole"


def test_also_crashed_names_what_fits_and_counts_the_rest() -> None:
    assert also_crashed([]) == ""
    line = also_crashed(["a:0", "a:1"])
    assert line == "⚠️ also crashed: `a:0`, `a:1` (a message each follows)"
    many = also_crashed([f"scraper:{n}" for n in range(100)], max_chars=200)
    assert len(many) <= 200
    assert "`scraper:0`, `scraper:1`" in many
    assert many.endswith(" more (a message each follows)")
    assert also_crashed(["x" * 300], max_chars=100) == (
        "⚠️ also crashed: 1 process (a message each follows)"
    )
