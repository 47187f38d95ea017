"""Tests of the restart policy: pure decisions with explicit ``now`` values."""

from __future__ import annotations

import dataclasses
import random
import signal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.config.schema import ProgramSpec, RestartPolicy
from supervisor.events import ProcessState
from supervisor.process import policy


def _spec(**kw: object) -> ProgramSpec:
    base = ProgramSpec(name="w", command=("true",), cwd=Path("/"))
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


SPEC = _spec(start_seconds=1.0, start_retries=3, backoff_seconds=0.5, backoff_max_seconds=30.0)


class _NoJitter(random.Random):
    def random(self) -> float:
        return 0.0


def _exit(
    spec: ProgramSpec,
    *,
    ran: float,
    code: int | None = 0,
    sig: int | None = None,
    failures: int = 0,
    short_runs: int = 0,
    rng: random.Random | None = None,
) -> policy.Decision:
    return policy.after_exit(
        spec,
        failures=failures,
        short_runs=short_runs,
        started_at=100.0,
        now=100.0 + ran,
        exit_code=code,
        exit_signal=sig,
        rng=rng or _NoJitter(),
    )


@pytest.mark.parametrize(
    ("restart", "code", "sig", "failed_start"),
    [
        (RestartPolicy.ALWAYS, 0, None, True),
        (RestartPolicy.ALWAYS, 1, None, True),
        (RestartPolicy.ALWAYS, None, signal.SIGKILL, True),
        (RestartPolicy.ON_FAILURE, 0, None, False),
        (RestartPolicy.ON_FAILURE, 1, None, True),
        (RestartPolicy.ON_FAILURE, None, signal.SIGKILL, True),
        (RestartPolicy.NEVER, 0, None, False),
        (RestartPolicy.NEVER, 1, None, True),
        (RestartPolicy.NEVER, None, signal.SIGKILL, True),
    ],
)
def test_policy_short_run_is_failed_start_unless_a_clean_end_not_restarted(
    restart: RestartPolicy, code: int | None, sig: int | None, failed_start: bool
) -> None:
    """A one-shot job that exits 0 at once runs once, as EXITED."""
    d = _exit(dataclasses.replace(SPEC, restart=restart), ran=0.999, code=code, sig=sig, failures=1)
    if failed_start:
        assert (d.state, d.restart, d.failures) == (ProcessState.BACKOFF, True, 2)
        assert "too quickly" in d.reason
        assert d.delay == 1.0  # the second failed start in a row, no jitter
    else:
        assert (d.state, d.restart, d.failures, d.delay) == (ProcessState.EXITED, False, 0, 0.0)
        assert d.reason == (
            f"finished within start_seconds = 1 s; not restarted: restart = {restart.value}"
        )


def test_policy_run_of_exactly_start_seconds_is_a_start() -> None:
    d = _exit(SPEC, ran=1.0, code=1, failures=2)
    assert d.state is ProcessState.EXITED
    assert d.failures == 0


def test_policy_start_retries_failed_starts_in_a_row_make_fatal() -> None:
    failures = 0
    states = []
    for _ in range(3):
        d = _exit(SPEC, ran=0.1, code=1, failures=failures)
        failures = d.failures
        states.append(d.state)
    assert states == [ProcessState.BACKOFF] * 2 + [ProcessState.FATAL]
    assert not d.restart
    assert d.failures == 3


def test_policy_one_start_retry_first_failure_is_fatal() -> None:
    d = _exit(_spec(start_retries=1), ran=0.1, code=1)
    assert d.state is ProcessState.FATAL
    assert not d.restart


def test_policy_zero_start_seconds_never_failed_start() -> None:
    d = _exit(_spec(start_seconds=0.0, restart=RestartPolicy.NEVER), ran=0.0, code=0)
    assert d.state is ProcessState.EXITED
    assert not d.restart


@pytest.mark.parametrize(
    ("restart", "code", "sig", "expected"),
    [
        (RestartPolicy.ALWAYS, 0, None, True),
        (RestartPolicy.ALWAYS, 3, None, True),
        (RestartPolicy.ALWAYS, None, signal.SIGKILL, True),
        (RestartPolicy.ON_FAILURE, 0, None, False),
        (RestartPolicy.ON_FAILURE, 3, None, True),
        (RestartPolicy.ON_FAILURE, None, signal.SIGSEGV, True),
        (RestartPolicy.NEVER, 0, None, False),
        (RestartPolicy.NEVER, 3, None, False),
        (RestartPolicy.NEVER, None, signal.SIGKILL, False),
    ],
)
def test_policy_restart_after_running(
    restart: RestartPolicy, code: int | None, sig: int | None, expected: bool
) -> None:
    d = _exit(_spec(restart=restart), ran=5.0, code=code, sig=sig, failures=2)
    assert d.state is ProcessState.EXITED
    assert d.restart is expected
    assert d.failures == 0


@pytest.mark.parametrize("restart", list(RestartPolicy))
@pytest.mark.parametrize(("code", "sig"), [(0, None), (3, None), (None, 9)])
@pytest.mark.parametrize("ran", [0.2, 5.0])
@pytest.mark.parametrize("failures", [0, 2])
def test_policy_reason_says_why_once_without_the_exit_every_view_shows(
    restart: RestartPolicy, code: int | None, sig: int | None, ran: float, failures: int
) -> None:
    """`exit 1 (exit code 1; restarting)` said the exit twice; reasons nested parentheses.

    The console line, ctl's LAST EXIT and the JSON object show the exit beside
    the reason, which the console puts in parentheses.
    """
    d = _exit(_spec(restart=restart), ran=ran, code=code, sig=sig, failures=failures)
    assert "exit" not in d.reason.replace("exited too quickly", "")
    assert "signal" not in d.reason
    assert "SIG" not in d.reason
    assert "(" not in d.reason
    assert ")" not in d.reason


def test_policy_describe_exit_names_code_and_signal() -> None:
    assert policy.describe_exit(3, None) == "exit code 3"
    assert policy.describe_exit(None, 9) == "signal SIGKILL"
    assert policy.describe_exit(None, 200) == "signal 200"
    assert policy.describe_exit(None, signal.SIGRTMIN + 6) == "signal SIGRTMIN+6"
    assert policy.describe_exit(None, None) == "unknown exit"


def test_policy_spawn_error_is_a_failed_start() -> None:
    d = policy.after_failed_start(SPEC, failures=2, reason="no such file", rng=_NoJitter())
    assert d.state is ProcessState.FATAL
    assert d.reason == "no such file; gave up after 3 failed starts in a row"


def test_policy_failed_start_reasons_count_in_the_singular_and_plural() -> None:
    """ "1 failed start", not "1 failed starts"."""
    d = policy.after_failed_start(_spec(start_retries=1), failures=0, reason="x", rng=_NoJitter())
    assert d.reason == "x; gave up after 1 failed start in a row"
    d = policy.after_failed_start(SPEC, failures=0, reason="x", rng=_NoJitter())
    assert d.reason == "x; failed start 1 of 3, next try in 0.50 s"
    d = policy.after_failed_start(SPEC, failures=1, reason="x", rng=_NoJitter())
    assert (d.state, d.delay) == (ProcessState.BACKOFF, 1.0)
    assert d.reason == "x; failed start 2 of 3, next try in 1.00 s"


def test_policy_running_at() -> None:
    assert policy.running_at(SPEC, started_at=10.0) == 11.0


def test_policy_backoff_doubles_to_the_cap() -> None:
    rng = _NoJitter()
    delays = [policy.backoff_delay(n, SPEC, rng) for n in range(9)]
    assert delays == [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_policy_backoff_huge_failure_count_is_capped() -> None:
    assert policy.backoff_delay(10**9, SPEC, random.Random(1)) <= 30.0


@settings(deadline=None)  # pure and fast: a CI pause is not a failure
@given(
    failures=st.integers(min_value=1, max_value=5000),
    base=st.floats(min_value=0.0, max_value=100.0),
    extra=st.floats(min_value=0.0, max_value=1000.0),
    seed=st.integers(),
)
def test_policy_backoff_invariants(failures: int, base: float, extra: float, seed: int) -> None:
    spec = _spec(backoff_seconds=base, backoff_max_seconds=base + extra)
    rng = random.Random(seed)
    d = policy.backoff_delay(failures, spec, rng)
    nominal = min(spec.backoff_max_seconds, base * 2.0 ** min(failures - 1, 1000))
    assert 0.0 <= d <= spec.backoff_max_seconds
    assert (1 - policy.JITTER) * nominal <= d <= nominal
    # with the same jitter draw, one more failure never waits less
    assert policy.backoff_delay(failures + 1, spec, random.Random(seed)) >= d


@settings(deadline=None)  # pure and fast: a CI pause is not a failure
@given(
    ran=st.floats(min_value=0.0, max_value=1e6),
    failures=st.integers(min_value=0, max_value=50),
    code=st.integers(min_value=0, max_value=255),
    restart=st.sampled_from(RestartPolicy),
)
def test_policy_decision_invariants(
    ran: float, failures: int, code: int, restart: RestartPolicy
) -> None:
    spec = _spec(restart=restart)
    d = _exit(spec, ran=ran, code=code, failures=failures)
    if d.state is ProcessState.EXITED:
        assert d.failures == 0
    else:
        assert d.failures == failures + 1
        assert d.restart is (d.state is ProcessState.BACKOFF)
        assert d.state is (
            ProcessState.FATAL if failures + 1 >= spec.start_retries else ProcessState.BACKOFF
        )


# -- crash-loop guard ------------------------------------------------------------

ALWAYS = _spec(
    start_seconds=0.0,
    restart=RestartPolicy.ALWAYS,
    backoff_seconds=0.5,
    backoff_max_seconds=30.0,
)


def test_policy_restart_loop_spacing_doubles_to_the_cap() -> None:
    """`true` under always with start_seconds = 0: each spawn waits longer, up to the cap."""
    short_runs, spacings = 0, []
    for _ in range(9):
        d = _exit(ALWAYS, ran=0.01, short_runs=short_runs)
        assert (d.state, d.restart, d.failures) == (ProcessState.EXITED, True, 0)
        short_runs = d.short_runs
        spacings.append(round(0.01 + d.delay, 6))
    assert spacings == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert short_runs == 9
    assert d.reason == "restarting in 29.99 s after 9 short runs in a row"


def test_policy_restart_spacing_counts_from_the_spawn() -> None:
    d = _exit(ALWAYS, ran=0.3, short_runs=2)  # spacing 2 s, 0.3 s of it used by the run
    assert d.delay == pytest.approx(1.7)
    assert d.short_runs == 3


def test_policy_run_outlasting_its_spacing_resets_the_guard() -> None:
    d = _exit(ALWAYS, ran=30.0, short_runs=40)
    assert (d.delay, d.short_runs, d.reason) == (0.0, 0, "restarting")
    d = _exit(ALWAYS, ran=29.9, short_runs=40)  # still within the capped spacing
    assert d.short_runs == 41
    assert d.delay == pytest.approx(0.1)


def test_policy_runs_longer_than_backoff_seconds_are_never_delayed() -> None:
    for ran in (0.5, 3.0, 3600.0):
        d = _exit(ALWAYS, ran=ran, code=1)
        assert (d.restart, d.delay, d.short_runs) == (True, 0.0, 0)


def test_policy_zero_backoff_seconds_turns_the_guard_off() -> None:
    d = _exit(dataclasses.replace(ALWAYS, backoff_seconds=0.0), ran=0.0, short_runs=5)
    assert (d.restart, d.delay, d.short_runs) == (True, 0.0, 0)


def test_policy_failed_start_and_no_restart_reset_short_runs() -> None:
    assert _exit(SPEC, ran=0.1, code=1, short_runs=4).short_runs == 0
    assert _exit(SPEC, ran=5.0, code=0, short_runs=4).short_runs == 0


@settings(deadline=None)  # pure and fast: a CI pause is not a failure
@given(
    runs=st.lists(st.floats(min_value=0.0, max_value=100.0), min_size=1, max_size=40),
    seed=st.integers(),
)
def test_policy_restart_spacing_invariants(runs: list[float], seed: int) -> None:
    """Spawns are never closer than 0.8 x backoff_seconds, nor further apart than needed."""
    rng = random.Random(seed)
    short_runs = 0
    for ran in runs:
        d = _exit(ALWAYS, ran=ran, short_runs=short_runs, rng=rng)
        spacing = ran + d.delay
        assert spacing >= (1 - policy.JITTER) * ALWAYS.backoff_seconds
        assert d.delay <= ALWAYS.backoff_max_seconds
        assert d.delay == 0.0 or spacing <= ALWAYS.backoff_max_seconds
        assert d.short_runs == (short_runs + 1 if d.short_runs else 0)
        short_runs = d.short_runs


def test_policy_restart_loop_is_bounded_over_an_hour() -> None:
    """A program that exits at once is spawned about 3600 / 30 times an hour, not millions."""
    rng = random.Random(7)
    now, spawns, short_runs = 0.0, 0, 0
    while now < 3600.0:
        spawns += 1
        d = _exit(ALWAYS, ran=0.001, short_runs=short_runs, rng=rng)
        short_runs = d.short_runs
        now += 0.001 + d.delay
    assert spawns <= 7 + 3600 / (30.0 * (1 - policy.JITTER)) + 1
