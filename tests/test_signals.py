"""Signals by name and number: what ctl, chat and the config accept, and how dsup prints one."""

from __future__ import annotations

import re
import signal

import pytest

from supervisor import signals


def test_signals_parse_accepts_names_numbers_and_prefixes() -> None:
    assert signals.parse("term") is signal.SIGTERM
    assert signals.parse("SIGHUP") is signal.SIGHUP
    assert signals.parse(" 10 ") is signal.SIGUSR1
    assert signals.parse(9) is signal.SIGKILL
    assert signals.parse("rtmin") == signal.SIGRTMIN


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("40", 40),
        ("35", 35),
        ("63", 63),
        ("RTMIN+3", signal.SIGRTMIN + 3),
        ("sigrtmin+0", signal.SIGRTMIN),
        ("RTMAX-1", signal.SIGRTMAX - 1),
        ("SIGRTMAX-30", signal.SIGRTMIN),
        ("64", signal.SIGRTMAX),
    ],
)
def test_signals_parse_accepts_every_real_time_signal(text: str, number: int) -> None:
    """35-63 and RTMIN+n / RTMAX-n were once refused, though kill -l accepts them."""
    assert signals.parse(text) == number


@pytest.mark.parametrize("text", ["RTMIN+31", "RTMAX-31", "RTMIN-1", "RTMAX+1", "RTMIN+"])
def test_signals_parse_refuses_real_time_names_out_of_range(text: str) -> None:
    fix = "give a name like TERM, HUP, USR1, RTMIN+3, RTMAX-1 or a number (1-31, 34-64)"
    with pytest.raises(ValueError, match=re.escape(fix)):
        signals.parse(text)


@pytest.mark.parametrize("number", ["0", "99", "33", "65"])
def test_signals_parse_says_which_numbers_are_signals(number: str) -> None:
    """A bad number once got "give ... or a number", although it is a number."""
    fix = f"no signal has number {number} here; give one of 1-31, 34-64 or"
    with pytest.raises(ValueError, match=re.escape(fix)):
        signals.parse(number)


def test_signals_name_spells_every_signal() -> None:
    assert (signals.name(15), signals.name(999)) == ("SIGTERM", "signal 999")
    assert (signals.name(40), signals.name(64)) == ("SIGRTMIN+6", "SIGRTMAX")


@pytest.mark.parametrize("number", [*range(1, 32), *range(34, 65)])
def test_signals_name_reads_back_as_the_same_signal(number: int) -> None:
    assert signals.parse(signals.name(number)) == number
