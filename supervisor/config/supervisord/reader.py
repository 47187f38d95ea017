"""Reading supervisord's ini dialect as supervisord itself would, for the importer.

Includes, ``%(name)s`` expansions, ``environment=`` pairs, sizes, booleans, signals and command
lines; every mistake raises ``ConfigError`` naming the file, the section and the key.
"""

from __future__ import annotations

import configparser
import glob
import os
import platform
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from supervisor import signals
from supervisor.errors import ConfigError, ConfigIssue

if TYPE_CHECKING:
    from collections.abc import Mapping

_ENV_KEY_RE = re.compile(r"[^\s\"',=]+")
_LONE_PERCENT_RE = re.compile(r"%(?!\()")
_TRUE = ("yes", "true", "on", "1")
_FALSE = ("no", "false", "off", "0")
_SIZES = {"kb": 1024, "mb": 1024**2, "gb": 1024**3}


@dataclass(frozen=True, slots=True)
class Section:
    """One ini section as read: its file, its name (``program:web``), raw options."""

    file: Path
    name: str
    options: Mapping[str, str]


def _read_ini(path: Path) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(
        inline_comment_prefixes=(";", "#"), strict=True, interpolation=None
    )
    try:
        text = path.read_text(encoding="utf-8-sig")  # skip a BOM (Windows editors)
    except FileNotFoundError:
        raise ConfigError(path, [ConfigIssue("", "no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(path, [ConfigIssue("", f"cannot read: {reason}")]) from None
    try:
        parser.read_string(text, source=str(path))
    except configparser.MissingSectionHeaderError as exc:
        issue = ConfigIssue("", f"line {exc.lineno}: expected a [section] header first")
        raise ConfigError(path, [issue]) from None
    except configparser.ParsingError as exc:
        issues = [ConfigIssue("", f"line {n}: cannot parse {line!r}") for n, line in exc.errors]
        raise ConfigError(path, issues) from None
    except configparser.DuplicateSectionError as exc:
        issue = ConfigIssue(exc.section, f"line {exc.lineno}: section defined twice in this file")
        raise ConfigError(path, [issue]) from None
    except configparser.DuplicateOptionError as exc:
        issue = ConfigIssue(
            f"{exc.section}.{exc.option}", f"line {exc.lineno}: option set twice in this section"
        )
        raise ConfigError(path, [issue]) from None
    except configparser.Error as exc:
        line = getattr(exc, "lineno", "?")
        raise ConfigError(path, [ConfigIssue("", f"line {line}: {exc.message}")]) from None
    return parser


def read_tree(path: Path, seen: set[Path] | None = None) -> list[Section]:
    """Sections of ``path``, then of its includes, recursively, each file once.

    Args:
        path: the supervisord config file.
        seen: files already read (real paths), so include cycles end.

    Raises:
        ConfigError: a file is missing, unreadable or not ini syntax, or an
            ``[include]`` has no ``files`` or names a file that does not exist.
    """
    path = Path(os.path.abspath(path))
    seen = set() if seen is None else seen
    seen.add(path.resolve())
    parser = _read_ini(path)
    sections = [
        Section(path, name, dict(parser.items(name)))
        for name in parser.sections()
        if name != "include"
    ]
    if not parser.has_section("include"):
        return sections
    if not parser.has_option("include", "files"):
        raise ConfigError(path, [ConfigIssue("include.files", "required: a list of globs")])
    raw = parser.get("include", "files")
    patterns = expand(raw, base_expansions(path), path, "include.files")
    for pattern in patterns.split():
        full = path.parent / os.path.expanduser(pattern)
        matches = sorted(glob.glob(str(full)))
        if not matches and not glob.has_magic(pattern):
            issue = ConfigIssue("include.files", f"{pattern!r}: no such file ({full})")
            raise ConfigError(path, [issue])
        for match in matches:
            if Path(match).resolve() not in seen:
                sections += read_tree(Path(match), seen)
    return sections


def base_expansions(path: Path) -> dict[str, object]:
    """The expansions every section of ``path`` may use: here, host_node_name, ENV_*."""
    env: dict[str, object] = {f"ENV_{k}": v for k, v in os.environ.items()}
    return {**env, "here": str(path.parent), "host_node_name": platform.node()}


def expand(value: str, expansions: Mapping[str, object], path: Path, key: str) -> str:
    """Apply supervisord's ``%(name)s`` expansions to one raw value.

    Raises:
        ConfigError: an unknown name, or a lone ``%`` (supervisord wants ``%%``).
    """
    # A bare "%s" would format the whole mapping (the environment) into the value.
    if _LONE_PERCENT_RE.search(value.replace("%%", "")):
        issue = ConfigIssue(key, "a lone % must be written %% (or use %(name)s)")
        raise ConfigError(path, [issue])
    try:
        return value % expansions
    except KeyError as exc:
        name = exc.args[0]
        hint = " (not set in this environment)" if str(name).startswith("ENV_") else ""
        issue = ConfigIssue(key, f"unknown expansion %({name})s{hint}")
    except (ValueError, TypeError) as exc:
        issue = ConfigIssue(key, f"bad %-expansion ({exc}); write a literal % as %%")
    raise ConfigError(path, [issue])


def parse_environment(text: str) -> dict[str, str]:
    """Parse supervisord's ``KEY="val",KEY2=val2`` syntax; quotes protect commas.

    Raises:
        ValueError: a pair without ``=``, an empty name, or an unclosed quote.
    """
    env: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and (text[i] == "," or text[i].isspace()):
            i += 1
        if i == n:
            break
        eq = text.find("=", i)
        key = text[i:eq].strip() if eq >= 0 else ""
        if not _ENV_KEY_RE.fullmatch(key):
            raise ValueError(f"expected KEY=value at {text[i:]!r}")
        i, env[key] = _env_value(text, eq + 1)
    return env


def _env_value(text: str, i: int) -> tuple[int, str]:
    """Read one value from ``i``: up to an unquoted comma or newline."""
    while i < len(text) and text[i] in " \t":
        i += 1
    value, quoted_upto = "", 0
    while i < len(text) and text[i] not in ",\n":
        if text[i] in "\"'":
            end = text.find(text[i], i + 1)
            if end < 0:
                raise ValueError(f"unclosed quote in {text[i:]!r}")
            value += text[i + 1 : end]
            quoted_upto, i = len(value), end + 1
        else:
            value += text[i]
            i += 1
    return i, value[:quoted_upto] + value[quoted_upto:].rstrip()


def parse_int(value: str) -> int:
    """supervisord's integer."""
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"must be a whole number, got {value!r}") from None


def parse_bool(value: str) -> bool:
    """supervisord's boolean: yes/true/on/1 or no/false/off/0, any case."""
    if value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"must be one of {', '.join(_TRUE + _FALSE)}, got {value!r}")


def parse_size(value: str) -> int:
    """supervisord's byte size: ``1024``, ``1KB``, ``50MB``, ``1GB`` (powers of 1024)."""
    text = value.strip().lower()
    unit = _SIZES.get(text[-2:], 1)
    digits = text[:-2] if unit > 1 else text
    try:
        return int(digits) * unit
    except ValueError:
        raise ValueError(f"must be a byte size such as 50MB, 1KB or 1024, got {value!r}") from None


def parse_signal(value: str) -> str:
    """A signal name without ``SIG`` (``TERM``) from a name or a number.

    A name is only normalised: the config check judges it, so an unknown one
    is carried over as a comment rather than refused here.
    """
    if value.strip().isdigit():
        return signals.name(signals.parse(value)).removeprefix("SIG")
    return value.strip().upper().removeprefix("SIG")


def parse_command(value: str) -> list[str]:
    """Split a command line as supervisord does (shlex, never a shell)."""
    try:
        argv = shlex.split(value)
    except ValueError as exc:
        raise ValueError(f"cannot split the command: {exc}") from None
    if not argv:
        raise ValueError("must not be empty")
    return argv


def combined_error(errors: list[ConfigError]) -> ConfigError:
    """One error for several: issues of other files than the first name their file."""
    first = errors[0].path
    issues = [
        issue if exc.path == first else ConfigIssue(f"({exc.path}) {issue.key}", issue.message)
        for exc in errors
        for issue in exc.issues
    ]
    return ConfigError(first, issues)


def expand_options(
    sec: Section, expansions: Mapping[str, object], failed: list[ConfigError]
) -> dict[str, str]:
    """Every option of a section that expands; each one that does not is added to ``failed``."""
    options: dict[str, str] = {}
    for key, raw in sec.options.items():
        try:
            options[key] = expand(raw, expansions, sec.file, f"{sec.name}.{key}")
        except ConfigError as exc:
            failed.append(exc)
    return options


def env_pairs(value: str, path: Path, key: str) -> dict[str, str]:
    """``parse_environment`` of the value of ``key`` in ``path``, as a ConfigError."""
    try:
        return parse_environment(value)
    except ValueError as exc:
        raise ConfigError(path, [ConfigIssue(key, str(exc))]) from None


def section_int(sec: Section, key: str, default: str, base: Mapping[str, object]) -> int:
    """A section's option (or ``default``), expanded, as a whole number."""
    text = expand(sec.options.get(key, default), base, sec.file, f"{sec.name}.{key}")
    try:
        return int(text)
    except ValueError:
        msg = f"must be a whole number, got {text!r}"
        raise ConfigError(sec.file, [ConfigIssue(f"{sec.name}.{key}", msg)]) from None
