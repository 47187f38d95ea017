"""Tests of the restart policy: pure decisions with explicit ``now`` values."""

from __future__ import annotations

import dataclasses
import random
import signal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor import policy
from supervisor.config import ProgramSpec, RestartPolicy
from supervisor.events import ProcessState


def _spec(**kw: object) -> ProgramSpec:
    base = ProgramSpec(name="w", command=("true",), cwd=Path("/"))
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


SPEC = _spec(start_seconds=1.0, start_retries=3, backoff_seconds=0.5, backoff_max_seconds=30.0)


def _exit(
    spec: ProgramSpec,
    *,
    ran: float,
    code: int | None = 0,
    sig: int | None = None,
    failures: int = 0,
) -> policy.Decision:
    return policy.after_exit(
        spec, failures=failures, started_at=100.0, now=100.0 + ran, exit_code=code, exit_signal=sig
    )


def test_policy_short_run_is_failed_start_whatever_the_exit() -> None:
    for code in (0, 1):
        d = _exit(SPEC, ran=0.999, code=code)
        assert d.state is ProcessState.BACKOFF
        assert d.restart
        assert d.failures == 1
        assert "too quickly" in d.reason


def test_policy_run_of_exactly_start_seconds_is_a_start() -> None:
    d = _exit(SPEC, ran=1.0, code=1, failures=2)
    assert d.state is ProcessState.EXITED
    assert d.failures == 0


def test_policy_start_retries_counts_retries_then_fatal() -> None:
    failures = 0
    states = []
    for _ in range(4):
        d = _exit(SPEC, ran=0.1, code=1, failures=failures)
        failures = d.failures
        states.append(d.state)
    assert states == [ProcessState.BACKOFF] * 3 + [ProcessState.FATAL]
    assert not d.restart
    assert d.failures == 4


def test_policy_zero_retries_first_failure_is_fatal() -> None:
    d = _exit(_spec(start_retries=0), ran=0.1, code=1)
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


def test_policy_exit_reason_names_code_and_signal() -> None:
    assert "exit code 3" in _exit(SPEC, ran=5.0, code=3).reason
    assert "SIGKILL" in _exit(SPEC, ran=5.0, code=None, sig=9).reason
    assert policy.describe_exit(None, 200) == "signal 200"
    assert policy.describe_exit(None, None) == "unknown exit"


def test_policy_spawn_error_is_a_failed_start() -> None:
    d = policy.after_failed_start(SPEC, failures=3, reason="no such file")
    assert d.state is ProcessState.FATAL
    assert "no such file" in d.reason


def test_policy_running_at() -> None:
    assert policy.running_at(SPEC, started_at=10.0) == 11.0


def test_policy_backoff_doubles_to_the_cap() -> None:
    class _NoJitter(random.Random):
        def random(self) -> float:
            return 0.0

    rng = _NoJitter()
    delays = [policy.backoff_delay(n, SPEC, rng) for n in range(9)]
    assert delays == [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_policy_backoff_huge_failure_count_is_capped() -> None:
    assert policy.backoff_delay(10**9, SPEC, random.Random(1)) <= 30.0


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
            ProcessState.FATAL if failures + 1 > spec.start_retries else ProcessState.BACKOFF
        )
