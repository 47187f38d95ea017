"""What a worker calls: ``progress``, ``log``, ``result`` and ``ask``.

Each becomes a message on the channel, or readable lines on stderr outside dsup; every call is
thread-safe and returns at once, except ``ask``, which waits for its answer.
"""

from __future__ import annotations

import json
import math
import select
import sys
import threading
import time
from typing import TYPE_CHECKING

from worker_sdk import protocol
from worker_sdk.channel import connect, say

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

LOCAL_PROGRESS_SECONDS = 1.0
"""Outside dsup, the least time between two progress lines on stderr."""
ANSWER_GRACE_SECONDS = 5.0
"""How much longer than its timeout ``ask`` waits for dsup's word that time is up."""

_local = threading.Lock()
_last_local_progress = -math.inf


class NoAnswer(TimeoutError):
    """``ask`` got no answer (timed out, or nobody can answer) and has no default."""


def progress(value: float, text: str = "", *, total: float | None = None) -> None:
    """Report how far the work is: ``progress(0.4, "page 40")`` or ``progress(40, total=100)``.

    Cheap enough for every step: dsup gets the latest value a few times a second.

    Args:
        value: a fraction from 0 to 1 (clamped), or the work done when ``total`` is given.
        text: what is being done, shown beside the bar (cut to 200 characters).
        total: the whole work, in the unit of ``value`` (> 0).

    Raises:
        ValueError: ``value`` is not a finite number, or ``total`` is not > 0.
    """
    message: dict[str, object] = {protocol.TYPE: protocol.PROGRESS}
    if total is None:
        fraction = _finite("value", value)
    else:
        done, whole = _finite("value", value), _finite("total", total)
        if whole <= 0:
            raise ValueError(f"progress: total must be > 0, got {total!r}")
        fraction = done / whole
        message |= {"done": done, "total": whole}
    message["fraction"] = min(1.0, max(0.0, fraction))
    if text:
        message["text"] = str(text)[: protocol.MAX_PROGRESS_TEXT_CHARS]
    channel = connect()
    if channel is not None and channel.send_progress(message):
        return
    _progress_locally(message)


def log(text: str, level: str = "info") -> None:
    """Log one message for the operator (its level shows in dsup's console and chat).

    Args:
        text: the message (cut to 4,000 characters).
        level: ``debug``, ``info``, ``warning`` or ``error``.

    Raises:
        ValueError: an unknown level.
    """
    if level not in protocol.LEVELS:
        raise ValueError(f"log: level must be one of {', '.join(protocol.LEVELS)}; got {level!r}")
    body = str(text)[: protocol.MAX_TEXT_CHARS]
    message = {protocol.TYPE: protocol.LOG, "level": level, "text": body}
    channel = connect()
    if channel is not None and channel.send(message, droppable=True):
        return
    say(f"[{level}] {body}")


def result(
    data: Mapping[str, object] | None = None, *, text: str = "", files: Iterable[str] = ()
) -> None:
    """Report a result: structured ``data``, a ``text`` for people, and ``files`` to attach.

    Args:
        data: a JSON-able mapping (shown as fields in Discord, stored in dsup's ledger).
        text: the result in words (at most 4,000 characters).
        files: paths of files the worker wrote, relative to its cwd (at most 10).

    Raises:
        ValueError: nothing given, too many files, a text too long, or a message
            over 64 KiB (write big data to a file and pass it in ``files``).
        TypeError: ``data`` is not a mapping or holds something not JSON-able.
    """
    paths = [str(f) for f in files]
    if data is None and not text and not paths:
        raise ValueError("result: give data, text or files")
    if data is not None and not isinstance(data, dict):
        data = dict(data)
    if len(paths) > protocol.MAX_FILES:
        raise ValueError(f"result: at most {protocol.MAX_FILES} files, got {len(paths)}")
    if len(text) > protocol.MAX_TEXT_CHARS:
        raise ValueError(f"result: text is {len(text)} characters, at most 4000 are taken")
    message: dict[str, object] = {protocol.TYPE: protocol.RESULT}
    if data is not None:
        message["data"] = data
    if text:
        message["text"] = text
    if paths:
        message["files"] = paths
    channel = connect()
    if channel is not None and channel.send(message):
        return
    encoded = json.dumps(data, ensure_ascii=False) if data is not None else ""  # TypeError early
    shown = " ".join(part for part in (text, encoded) if part)
    say(f"[result] {shown}" + (f" (files: {', '.join(paths)})" if paths else ""))


def ask(
    question: str,
    choices: Sequence[str] | None = None,
    *,
    timeout: float | None = None,
    default: str | None = None,
) -> str:
    """Ask a human and wait for the answer: a button per choice, or free text.

    Under dsup the question shows in ``dsup ctl asks`` (answered with ``dsup ctl
    answer ID CHOICE``) and, with Discord, as a message with buttons.

    Args:
        question: what to ask (at most 4,000 characters).
        choices: the possible answers (at most 25, each at most 80 characters);
            None for a free-text answer.
        timeout: seconds to wait; None waits as long as it takes.
        default: the answer when ``timeout`` passes (one of ``choices``).

    Returns:
        The choice made, or the text given.

    Raises:
        NoAnswer: (a ``TimeoutError``) the time ran out, or nobody can answer
            (no dsup and no terminal), and there is no ``default``.
        ValueError: bad arguments, or dsup refused the question (too many open).
    """
    picks = _check_question(question, choices, timeout, default)
    channel = connect()
    if channel is None or channel.is_broken:
        return _ask_locally(question, picks, timeout, default)
    message: dict[str, object] = {
        protocol.TYPE: protocol.ASK,
        "id": channel.new_id("q"),
        "question": question,
        "choices": picks,
    }
    if timeout is not None:
        message["timeout"] = timeout
    if default is not None:
        message["default"] = default
    wait = None if timeout is None else timeout + ANSWER_GRACE_SECONDS
    reply = channel.request(message, timeout=wait)
    if reply is None:  # our own deadline passed, or dsup went away
        return _fallback(default, "no answer from dsup in time")
    if reply.get(protocol.TYPE) == protocol.ERROR:
        raise ValueError(f"ask: dsup refused the question: {reply.get('message')}")
    answer = reply.get("answer")
    if reply.get("status") == protocol.ANSWERED and isinstance(answer, str):
        return answer
    return _fallback(default, f"nobody answered within {timeout:g} s" if timeout else "no answer")


def _check_question(
    question: str, choices: Sequence[str] | None, timeout: float | None, default: str | None
) -> list[str] | None:
    if not isinstance(question, str) or not question.strip():
        raise ValueError("ask: the question must be a non-empty string")
    if len(question) > protocol.MAX_TEXT_CHARS:
        raise ValueError(f"ask: the question is {len(question)} characters, at most 4000")
    if timeout is not None and not 0 < timeout <= protocol.MAX_TIMEOUT_SECONDS:
        raise ValueError(f"ask: timeout must be > 0 and at most 7 days, got {timeout!r}")
    if choices is None:
        return None
    if isinstance(choices, str):
        raise ValueError("ask: choices must be a list of strings, not one string")
    picks = list(choices)
    if not 0 < len(picks) <= protocol.MAX_CHOICES or len(set(picks)) != len(picks):
        raise ValueError(f"ask: give 1 to {protocol.MAX_CHOICES} different choices, got {picks!r}")
    for pick in picks:
        if not isinstance(pick, str) or not pick.strip() or len(pick) > protocol.MAX_CHOICE_CHARS:
            raise ValueError(f"ask: a choice is a non-empty string of at most 80 chars: {pick!r}")
    if default is not None and default not in picks:
        raise ValueError(f"ask: default {default!r} is not one of the choices {picks!r}")
    return picks


def _finite(name: str, value: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"progress: {name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"progress: {name} must be finite, got {value!r}")
    return number


def _fallback(default: str | None, why: str) -> str:
    if default is not None:
        return default
    raise NoAnswer(f"ask: {why}, and no default")


# -- outside dsup ------------------------------------------------------------------


def _progress_locally(message: Mapping[str, object]) -> None:
    """A progress line on stderr, at most one per second (and always the finish)."""
    global _last_local_progress
    fraction = message.get("fraction")
    now = time.monotonic()
    with _local:
        if fraction != 1.0 and now - _last_local_progress < LOCAL_PROGRESS_SECONDS:
            return
        _last_local_progress = now
    percent = f"{float(fraction) * 100:.0f}%" if isinstance(fraction, float) else "?"
    text = message.get("text")
    say(f"[progress] {percent}" + (f" {text}" if text else ""))


def _ask_locally(
    question: str, choices: list[str] | None, timeout: float | None, default: str | None
) -> str:
    """Ask on the terminal when stdin is one; else the default, or NoAnswer."""
    try:
        interactive = sys.stdin is not None and sys.stdin.isatty()
    except (OSError, ValueError):
        interactive = False
    if not interactive:
        return _fallback(default, "no dsup and no terminal to ask on")
    hint = f" [{'/'.join(choices)}]" if choices else ""
    hint += f" (default {default})" if default is not None else ""
    deadline = None if timeout is None else time.monotonic() + timeout
    with _local:
        while True:
            say(f"[question] {question}{hint}")
            line = _read_line(deadline)
            if line is None:
                return _fallback(default, "nobody answered on the terminal in time")
            answer = line.strip()
            if not answer and default is not None:
                return default
            if answer and (choices is None or answer in choices):
                return answer[: protocol.MAX_ANSWER_CHARS]
            say(f"[question] answer one of: {', '.join(choices or ['some text'])}")


def _read_line(deadline: float | None) -> str | None:
    """One line from the terminal, or None at EOF or the deadline."""
    left = None if deadline is None else max(0.0, deadline - time.monotonic())
    ready, _, _ = select.select([sys.stdin], [], [], left)
    if not ready:
        return None
    line = sys.stdin.readline()
    return line if line else None
