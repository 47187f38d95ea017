"""What one config value may be: converters from TOML values, and bot-token redaction.

Each converter raises :class:`BadValue` saying what was expected; a token-shaped string is
never accepted as a value nor echoed in a message.
"""

from __future__ import annotations

import enum
import math
import re
import shlex
import signal
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, TypeVar

from supervisor import signals
from worker_sdk import protocol

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

RESERVED_NAMES = frozenset({"all"})
"""Program names that commands give another meaning (``dsup ctl stop all``)."""
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_NAME_CHAR_RE = re.compile(r"[A-Za-z0-9_.-]")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ENV_NAME_RULE = "an ASCII letter or '_', then ASCII letters, digits or '_'"
# Discord bot tokens are three base64url parts joined by dots, about 70 characters.
# Searched, not matched: "Bot <token>" or a URL holding one is a token in the file too.
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{20,}")
TOKEN_REFUSED = (
    "this looks like a Discord bot token; a literal token in the config file is refused: "
    "put it in an environment variable (token_env) or a file readable only by you (token_file)"
)

TOKEN_KEY_REFUSED = (
    "there is no token key: the bot token never goes in the config file; name where it is "
    "with token_env (an environment variable) or token_file (a file readable only by you)"
)

E = TypeVar("E", bound=enum.Enum)


def looks_like_token(text: str) -> bool:
    """Whether ``text`` holds anything shaped like a Discord bot token."""
    return _TOKEN_RE.search(text) is not None


def redact(text: str) -> str:
    """Replace anything in ``text`` that looks like a Discord bot token.

    Every config error message passes through this, so a token pasted into the
    wrong key is never echoed back (to a terminal, a log or a CI transcript).
    """
    return _TOKEN_RE.sub("<redacted token>", text)


class BadValue(Exception):
    """A value failed a converter; the message says what was expected."""


def describe(value: object) -> str:
    """Name the TOML type of ``value`` for a message, with the value if a scalar."""
    names = {
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        list: "an array",
        dict: "a table",
    }
    for typ, label in names.items():
        if type(value) is typ:
            return f"{label} ({value!r})" if typ in (str, bool, int, float) else label
    return type(value).__name__


def name(value: object) -> str:
    """A non-blank string (a node name)."""
    if not isinstance(value, str) or not value.strip():
        raise BadValue(f"must be a non-empty string, got {describe(value)}")
    return value


def boolean(value: object) -> bool:
    """``true`` or ``false``."""
    if not isinstance(value, bool):
        raise BadValue(f"must be true or false, got {describe(value)}")
    return value


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadValue(f"must be a number of seconds, got {describe(value)}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise BadValue(f"must be a finite number, got {value!r}")
    return number


def nonneg(value: object) -> float:
    """A finite number of seconds, >= 0."""
    number = _number(value)
    if number < 0:
        raise BadValue(f"must be >= 0, got {value!r}")
    return number


def positive(value: object) -> float:
    """A finite number of seconds, > 0."""
    number = _number(value)
    if number <= 0:
        raise BadValue(f"must be > 0, got {value!r}")
    return number


def whole(low: int, high: int | None = None) -> Callable[[object], int]:
    """A converter to an integer (never a boolean) between ``low`` and ``high``."""

    def convert(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadValue(f"must be a whole number, got {describe(value)}")
        if value < low or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f">= {low}"
            raise BadValue(f"must be {bounds}, got {value!r}")
        return value

    return convert


def member_of(kind: type[E]) -> Callable[[object], E]:
    """A converter to the member of ``kind`` whose value is the given one."""
    accepted = [str(m.value) for m in kind]

    def convert(value: object) -> E:
        for member in kind:
            if value == member.value:
                return member
        raise BadValue(f"must be one of {', '.join(accepted)}; got {describe(value)}")

    return convert


def command(value: object) -> tuple[str, ...]:
    """An argv list of strings, or a command string split as a POSIX shell would."""
    if isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            raise BadValue(f"cannot split the command string: {exc}") from None
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise BadValue(f"argument {i} must be a string (quote it), got {describe(item)}")
        argv = list(value)
    else:
        raise BadValue(
            f"must be an argv list of strings or a command string, got {describe(value)}"
        )
    if not argv or not argv[0]:
        raise BadValue("must name a program to run, got an empty command")
    if any("\0" in a for a in argv):
        raise BadValue("must not contain NUL characters")
    return tuple(argv)


def path(base: Path) -> Callable[[object], Path]:
    """A converter to an absolute path: ``~`` expanded, relative to ``base``."""

    def convert(value: object) -> Path:
        if not isinstance(value, str) or not value or "\0" in value:
            raise BadValue(f"must be a path string, got {describe(value)}")
        try:
            given = Path(value).expanduser()
        except RuntimeError:
            raise BadValue(f"cannot expand '~' in {value!r}: no such user or home") from None
        return given if given.is_absolute() else base / given

    return convert


def program_name_problem(text: str) -> str:
    """What is wrong with a program name (a ``[programs.NAME]`` key), or ""."""
    if text in RESERVED_NAMES:
        return f"{text!r} is reserved: commands use it to mean every process; rename the program"
    if _NAME_RE.fullmatch(text):
        return ""
    rule = (
        "a program name is 1-64 ASCII letters, digits, '_', '.' or '-', and starts with a "
        "letter, digit or '_' (commands address processes as NAME:0 and take globs)"
    )
    bad = sorted({c for c in text if not _NAME_CHAR_RE.fullmatch(c)})
    if bad:
        return f"{rule}; {', '.join(map(repr, bad[:5]))} not allowed"
    if not text or len(text) > 64:
        return f"{rule}; got {len(text)} characters"
    return f"{rule}; it starts with {text[0]!r}"


def env(value: object) -> Mapping[str, str]:
    """A table of environment variables; integer values become strings.

    Every bad entry is named in the one message, not only the first.
    """
    if not isinstance(value, dict):
        raise BadValue(f'must be a table of NAME = "value", got {describe(value)}')
    table: dict[str, str] = {}
    problems: list[str] = []
    for key, item in value.items():
        problem = _env_problem(key, item)
        if problem:
            problems.append(problem)
        else:
            table[key] = str(item)
    if problems:
        raise BadValue("; ".join(problems))
    return MappingProxyType(table)


def _env_problem(key: str, item: object) -> str:
    """What is wrong with one ``env`` entry, or ""."""
    if not _ENV_NAME_RE.fullmatch(key):
        return f"{key!r} is not a valid environment variable name ({_ENV_NAME_RULE})"
    if key.startswith(protocol.ENV_PREFIX):
        return (
            f"{key}: names starting with {protocol.ENV_PREFIX} are set by dsup for every "
            "process (DSUP_PROGRAM, DSUP_RUN_ID...); choose another name"
        )
    if isinstance(item, bool) or not isinstance(item, str | int):
        return f"{key}: must be a string (quote it), got {describe(item)}"
    if "\0" in str(item):
        return f"{key}: must not contain NUL characters"
    return ""


def env_name(value: object) -> str:
    """An environment variable name."""
    if not isinstance(value, str) or not _ENV_NAME_RE.fullmatch(value):
        raise BadValue(
            f"must be an environment variable name ({_ENV_NAME_RULE}), got {describe(value)}"
        )
    return value


def signal_name(value: object) -> signal.Signals:
    """A signal name, any case, with or without ``SIG``; not a number."""
    if isinstance(value, str) and not value.strip().isdigit():
        try:
            sig = signals.parse(value)
        except ValueError:
            pass
        else:
            if isinstance(sig, signal.Signals):
                return sig
    raise BadValue(
        f"must be a signal name such as TERM, INT, HUP, QUIT, KILL; got {describe(value)}"
    )


def snowflake(value: object) -> int:
    """A Discord id: a whole number in 0 ... 2**64-1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value >= 2**64:
        raise BadValue(f"must be a Discord id (a whole number), got {describe(value)}")
    return value


def id_list(value: object) -> tuple[int, ...]:
    """An array of Discord ids."""
    if not isinstance(value, list):
        raise BadValue(f"must be an array of Discord role or user ids, got {describe(value)}")
    return tuple(snowflake(item) for item in value)


def url(scheme: str) -> Callable[[object], str]:
    """A converter to a ``scheme://`` or ``schemes://`` URL, without trailing slashes."""

    def convert(value: object) -> str:
        if not isinstance(value, str) or not re.match(rf"^{scheme}s?://[^\s/]+", value):
            raise BadValue(f"must be a {scheme}:// or {scheme}s:// URL, got {describe(value)}")
        return value.rstrip("/")

    return convert
