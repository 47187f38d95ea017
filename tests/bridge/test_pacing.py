"""Tests of pacing from rate-limit headers and of the channel circuit breaker."""

from __future__ import annotations

import pytest

from supervisor.bridge.pacing import LAST_REQUEST_LEAD, Breaker, Pacer, RouteKey, route_of

CREATE: RouteKey = ("create", 42)


def test_route_of_names_message_creates_and_edits_only() -> None:
    assert route_of("POST", "/api/v10/channels/42/messages") == ("create", 42)
    assert route_of("PATCH", "/api/v10/channels/42/messages/9") == ("edit", 42)
    assert route_of("GET", "/api/v10/channels/42/messages") is None
    assert route_of("POST", "/api/v10/interactions/1/tok/callback") is None


def test_pacer_assumes_five_per_five_seconds_before_any_header() -> None:
    pacer = Pacer()
    for i in range(5):
        assert pacer.ready_at(CREATE, 10.0 + i * 0.1) == 10.0 + i * 0.1
        pacer.sent(CREATE, 10.0 + i * 0.1)
    assert pacer.ready_at(CREATE, 10.5) == 15.0
    assert pacer.ready_at(("create", 43), 10.5) == 10.5


def test_pacer_follows_the_headers_of_the_bucket() -> None:
    pacer = Pacer()
    pacer.sent(CREATE, 0.0)
    pacer.observe(
        CREATE, 200, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": "2.5"}, 0.1
    )
    assert pacer.ready_at(CREATE, 1.0) == 2.6
    assert pacer.ready_at(CREATE, 2.6) == 2.6


def test_pacer_spreads_what_is_left_of_a_window() -> None:
    pacer = Pacer()
    pacer.sent(CREATE, 0.0)
    pacer.observe(CREATE, 200, {"X-RateLimit-Remaining": "4", "X-RateLimit-Reset-After": "5"}, 0.0)
    step = (5.0 - LAST_REQUEST_LEAD) / 4  # the last one goes just before the reset
    assert pacer.ready_at(CREATE, 0.1) == pytest.approx(step)
    pacer.sent(CREATE, step)
    assert pacer.ready_at(CREATE, step) == pytest.approx(2 * step)
    assert pacer.ready_at(CREATE, 6.0) == 6.0, "a new window"


def test_pacer_empties_a_bucket_only_just_before_its_reset() -> None:
    """discord.py sleeps until the reset before it answers the request that empties a bucket."""
    pacer = Pacer()
    pacer.sent(CREATE, 3.0)
    pacer.observe(CREATE, 200, {"X-RateLimit-Remaining": "1", "X-RateLimit-Reset-After": "2"}, 3.0)
    assert pacer.ready_at(CREATE, 3.1) == 5.0 - LAST_REQUEST_LEAD
    assert pacer.ready_at(CREATE, 4.9) == 4.9


def test_pacer_sends_at_once_in_a_new_window_of_a_known_bucket() -> None:
    """It counted its own sends against the 5 per 5 s fallback once a window was over."""
    pacer = Pacer()
    edit: RouteKey = ("edit", 42)
    for i in range(6):
        pacer.sent(edit, i * 0.1)
        pacer.observe(
            edit, 200, {"X-RateLimit-Remaining": "40", "X-RateLimit-Reset-After": "0.05"}, i * 0.1
        )
    assert pacer.ready_at(edit, 0.6) == 0.6


def test_pacer_waits_out_a_429() -> None:
    pacer = Pacer()
    pacer.observe(CREATE, 429, {"Retry-After": "7"}, 1.0)
    assert pacer.ready_at(CREATE, 2.0) == 8.0


def test_pacer_caps_every_route_together() -> None:
    pacer = Pacer(global_per_second=3)
    for channel in range(3):
        pacer.sent(("edit", channel), 5.0)
    assert pacer.ready_at(("edit", 99), 5.5) == 6.0


def test_breaker_pauses_after_refusals_in_a_row_and_backs_off() -> None:
    breaker = Breaker(threshold=3, first_pause=10.0, max_pause=25.0)
    assert breaker.refused(7, "403 Missing Access", 0.0) is None
    assert breaker.refused(7, "403 Missing Access", 1.0) is None
    pause = breaker.refused(7, "403 Missing Access", 2.0)
    assert pause is not None
    assert (pause.reason, pause.retry_at) == ("403 Missing Access", 12.0)
    assert [p.channel for p in breaker.paused()] == [7]
    again = breaker.refused(7, "403 Missing Access", 12.0)
    assert again is not None
    assert again.retry_at == 32.0
    last = breaker.refused(7, "403 Missing Access", 32.0)
    assert last is not None
    assert last.retry_at == 57.0
    assert breaker.succeeded(7)
    assert breaker.paused() == []
    assert breaker.refused(7, "404 Unknown Channel", 60.0) is None


def test_breaker_keeps_channels_apart() -> None:
    breaker = Breaker(threshold=1)
    assert breaker.refused(1, "404", 0.0) is not None
    assert not breaker.succeeded(2)
    assert [p.channel for p in breaker.paused()] == [1]
