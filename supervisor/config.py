"""The typed config of a dsup node: TOML in, frozen dataclasses out.

This module owns the public config contract (key names, defaults, validation and
its error messages). It does not own the import of ``supervisord.conf`` files
(see ``supervisord_import``) nor anything that runs processes.

Every mistake found in a file is collected and reported at once in one
``ConfigError`` naming the file and the dotted key path; unknown keys get a
did-you-mean; a literal bot token in the file is refused.
"""

from __future__ import annotations

import difflib
import enum
import math
import os
import re
import shlex
import signal
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, TypeVar

from supervisor.errors import ConfigError, ConfigIssue

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

DEFAULT_CONFIG = Path("dsup.toml")

_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Discord bot tokens are three base64url parts joined by dots, about 70 characters.
# Searched, not matched: "Bot <token>" or a URL holding one is a token in the file too.
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{20,}")
_TOKEN_REFUSED = (
    "this looks like a Discord bot token; a literal token in the config file is refused: "
    "put it in an environment variable (token_env) or a file readable only by you (token_file)"
)

T = TypeVar("T")
E = TypeVar("E", bound=enum.Enum)


class RestartPolicy(enum.Enum):
    """When a process that exited on its own is started again."""

    ALWAYS = "always"
    ON_FAILURE = "on-failure"
    NEVER = "never"


class Relay(enum.Enum):
    """What of a program's activity reaches Discord."""

    NONE = "none"
    ERRORS = "errors"
    RESULTS = "results"
    ALL = "all"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgramSpec:
    """One ``[programs.NAME]`` entry, validated; paths are absolute."""

    name: str
    command: tuple[str, ...]
    cwd: Path
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    autostart: bool = True
    restart: RestartPolicy = RestartPolicy.ON_FAILURE
    start_seconds: float = 1.0
    start_retries: int = 3
    backoff_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    stop_signal: signal.Signals = signal.SIGTERM
    stop_timeout_seconds: float = 10.0
    numprocs: int = 1
    max_line_bytes: int = 65536
    log_max_bytes: int = 50 * 1024 * 1024
    log_backups: int = 5
    relay: Relay = Relay.ERRORS
    unbuffered: bool = True
    keep_descendants: bool = False

    def process_names(self) -> list[str]:
        """Names of this program's processes: ``name:0`` ... ``name:N-1``."""
        return [f"{self.name}:{i}" for i in range(self.numprocs)]


@dataclass(frozen=True, slots=True, kw_only=True)
class SupervisorSpec:
    """The ``[supervisor]`` table: the node itself."""

    name: str
    state_dir: Path
    sweep_interval_seconds: float = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessSpec:
    """``[discord.access]``: Discord role or user ids allowed per level."""

    viewer: tuple[int, ...] = ()
    operator: tuple[int, ...] = ()
    admin: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class DiscordSpec:
    """The optional ``[discord]`` table. Holds where the token is, never the token."""

    token_env: str | None = "DSUP_DISCORD_TOKEN"
    token_file: Path | None = None
    guild_id: int = 0
    api_base: str = "https://discord.com/api/v10"
    gateway_url: str = "wss://gateway.discord.gg"
    status_interval_seconds: float = 10.0
    status_channel: int = 0
    log_channel: int = 0
    results_channel: int = 0
    task_channel: int = 0
    audit_channel: int = 0
    access: AccessSpec = AccessSpec()

    def read_token(self) -> str:
        """Return the bot token from the environment or the token file.

        Raises:
            ConfigError: the variable is unset or the file unreadable; the
                message never contains the token.
        """
        where = "discord.token_file" if self.token_file else "discord.token_env"
        if self.token_file is not None:
            try:
                token = self.token_file.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                reason = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else exc.strerror
                raise ConfigError(
                    self.token_file,
                    [ConfigIssue(where, f"cannot read: {reason or type(exc).__name__}")],
                ) from None
        else:
            token = os.environ.get(self.token_env or "", "").strip()
        if not token:
            raise ConfigError(
                "<environment>",
                [ConfigIssue(where, f"no bot token found in {self.token_env or self.token_file}")],
            )
        return token


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """A whole validated config file."""

    path: Path
    supervisor: SupervisorSpec
    programs: Mapping[str, ProgramSpec]
    discord: DiscordSpec | None = None

    def summary(self) -> str:
        """One line for ``dsup check``."""
        procs = sum(p.numprocs for p in self.programs.values())
        bridge = "Discord bridge on" if self.discord else "no Discord"
        return (
            f"{self.path}: ok: node {self.supervisor.name!r}, {len(self.programs)} programs, "
            f"{procs} processes, {bridge}"
        )


def load_config(path: Path | str = DEFAULT_CONFIG) -> Config:
    """Read and validate a config file.

    Raises:
        ConfigError: the file is missing, unreadable, not TOML, or invalid; it
            lists every issue found.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, [ConfigIssue("", "no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = (
            (exc.strerror or type(exc).__name__) if isinstance(exc, OSError) else "not UTF-8 text"
        )
        raise ConfigError(path, [ConfigIssue("", f"cannot read: {reason}")]) from None
    return parse_config(text, path)


def parse_config(text: str, path: Path | str) -> Config:
    """Validate TOML text as if read from ``path`` (relative paths resolve beside it)."""
    path = Path(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [ConfigIssue("", f"not valid TOML: {redact(str(exc))}")]) from None
    except RecursionError:
        raise ConfigError(path, [ConfigIssue("", "not valid TOML: nested too deeply")]) from None
    reader = _Reader(path.resolve().parent)
    config = reader.config(data, path)
    if reader.issues:
        raise ConfigError(path, reader.issues)
    assert config is not None  # the reader returns None only with issues
    return config


_PROGRAM_KEYS = [
    "command",
    "cwd",
    "env",
    "autostart",
    "restart",
    "start_seconds",
    "start_retries",
    "backoff_seconds",
    "backoff_max_seconds",
    "stop_signal",
    "stop_timeout_seconds",
    "numprocs",
    "max_line_bytes",
    "log_max_bytes",
    "log_backups",
    "relay",
    "unbuffered",
    "keep_descendants",
]
_DISCORD_KEYS = [
    "token_env",
    "token_file",
    "guild_id",
    "api_base",
    "gateway_url",
    "status_interval_seconds",
    "status_channel",
    "log_channel",
    "results_channel",
    "task_channel",
    "audit_channel",
    "access",
]


class _Reader:
    """Walks the parsed TOML, collecting issues instead of stopping at the first."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.issues: list[ConfigIssue] = []

    def fail(self, key: str, message: str) -> None:
        self.issues.append(ConfigIssue(redact(key), redact(message)))

    def keys(self, table: Mapping[str, object], prefix: str, allowed: list[str]) -> None:
        for key in table:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                self.fail(f"{prefix}{key}", f"unknown key{hint}")

    def table(self, data: Mapping[str, object], key: str, path: str) -> Mapping[str, object]:
        value = data.get(key, {})
        if not isinstance(value, dict):
            self.fail(path, f"must be a table, got {_kind(value)}")
            return {}
        return value

    def get(
        self,
        table: Mapping[str, object],
        key: str,
        path: str,
        convert: Callable[[object], T],
        default: T,
    ) -> T:
        if key not in table:
            return default
        value = table[key]
        if isinstance(value, str) and _TOKEN_RE.search(value):
            self.fail(path, _TOKEN_REFUSED)
            return default
        try:
            return convert(value)
        except _Bad as bad:
            self.fail(path, str(bad))
            return default

    def config(self, data: Mapping[str, object], path: Path) -> Config | None:
        self.keys(data, "", ["supervisor", "programs", "discord"])
        sup = self.supervisor(self.table(data, "supervisor", "supervisor"))
        programs_table = self.table(data, "programs", "programs")
        programs: dict[str, ProgramSpec] = {}
        for name, body in programs_table.items():
            spec = self.program(name, body)
            if spec is not None:
                programs[name] = spec
        discord = None
        if "discord" in data:
            discord = self.discord(self.table(data, "discord", "discord"))
        if self.issues:
            return None
        return Config(
            path=path,
            supervisor=sup,
            programs=MappingProxyType(programs),
            discord=discord,
        )

    def supervisor(self, table: Mapping[str, object]) -> SupervisorSpec:
        p = "supervisor."
        self.keys(table, p, ["name", "state_dir", "sweep_interval_seconds"])
        name = self.get(table, "name", p + "name", _name, socket.gethostname())
        state_dir = self.get(table, "state_dir", p + "state_dir", _path(self.base), None)
        sweep = self.get(
            table, "sweep_interval_seconds", p + "sweep_interval_seconds", _positive, 30.0
        )
        return SupervisorSpec(
            name=name,
            state_dir=state_dir or self.base / ".dsup",
            sweep_interval_seconds=sweep,
        )

    def program(self, name: str, body: object) -> ProgramSpec | None:
        p = f"programs.{name}."
        if not _NAME_RE.fullmatch(name):
            self.fail(
                f"programs.{name}",
                "a program name is 1-64 letters, digits, '_', '.', '-' (no ':', spaces or globs)",
            )
        if not isinstance(body, dict):
            self.fail(f"programs.{name}", f"must be a table, got {_kind(body)}")
            return None
        before = len(self.issues)
        self.keys(body, p, _PROGRAM_KEYS)
        if "command" not in body:
            self.fail(p + "command", "required: an argv list or a command string")
        d = ProgramSpec(name=name, command=(), cwd=self.base)
        g = self.get
        spec = ProgramSpec(
            name=name,
            command=g(body, "command", p + "command", _command, ()),
            cwd=g(body, "cwd", p + "cwd", _path(self.base), self.base),
            env=g(body, "env", p + "env", _env, d.env),
            autostart=g(body, "autostart", p + "autostart", _bool, d.autostart),
            restart=g(body, "restart", p + "restart", _enum(RestartPolicy), d.restart),
            start_seconds=g(body, "start_seconds", p + "start_seconds", _nonneg, d.start_seconds),
            start_retries=g(body, "start_retries", p + "start_retries", _int(0), d.start_retries),
            backoff_seconds=g(
                body, "backoff_seconds", p + "backoff_seconds", _nonneg, d.backoff_seconds
            ),
            backoff_max_seconds=g(
                body,
                "backoff_max_seconds",
                p + "backoff_max_seconds",
                _nonneg,
                d.backoff_max_seconds,
            ),
            stop_signal=g(body, "stop_signal", p + "stop_signal", _signal, d.stop_signal),
            stop_timeout_seconds=g(
                body,
                "stop_timeout_seconds",
                p + "stop_timeout_seconds",
                _positive,
                d.stop_timeout_seconds,
            ),
            numprocs=g(body, "numprocs", p + "numprocs", _int(1, 1000), d.numprocs),
            max_line_bytes=g(
                body,
                "max_line_bytes",
                p + "max_line_bytes",
                _int(256, 16 * 2**20),
                d.max_line_bytes,
            ),
            log_max_bytes=g(
                body, "log_max_bytes", p + "log_max_bytes", _int(4096), d.log_max_bytes
            ),
            log_backups=g(body, "log_backups", p + "log_backups", _int(0, 1000), d.log_backups),
            relay=g(body, "relay", p + "relay", _enum(Relay), d.relay),
            unbuffered=g(body, "unbuffered", p + "unbuffered", _bool, d.unbuffered),
            keep_descendants=g(
                body, "keep_descendants", p + "keep_descendants", _bool, d.keep_descendants
            ),
        )
        if spec.backoff_max_seconds < spec.backoff_seconds:
            self.fail(
                p + "backoff_max_seconds",
                f"must be >= backoff_seconds ({spec.backoff_seconds}), "
                f"got {spec.backoff_max_seconds}",
            )
        return spec if len(self.issues) == before else None

    def discord(self, table: Mapping[str, object]) -> DiscordSpec:
        p = "discord."
        if "token" in table:
            self.fail(p + "token", _TOKEN_REFUSED)
            table = {k: v for k, v in table.items() if k != "token"}
        self.keys(table, p, _DISCORD_KEYS)
        d = DiscordSpec()
        g = self.get
        token_env = g(table, "token_env", p + "token_env", _env_name, d.token_env)
        token_file = g(table, "token_file", p + "token_file", _path(self.base), None)
        if "token_env" in table and "token_file" in table:
            self.fail(p + "token_file", "give token_env or token_file, not both")
        access = self.table(table, "access", p + "access")
        self.keys(access, p + "access.", ["viewer", "operator", "admin"])
        pa = p + "access."
        ids = _id_list
        ch = _snowflake
        return DiscordSpec(
            token_env=None if token_file else token_env,
            token_file=token_file,
            guild_id=g(table, "guild_id", p + "guild_id", ch, d.guild_id),
            api_base=g(table, "api_base", p + "api_base", _url("http"), d.api_base),
            gateway_url=g(table, "gateway_url", p + "gateway_url", _url("ws"), d.gateway_url),
            status_interval_seconds=g(
                table,
                "status_interval_seconds",
                p + "status_interval_seconds",
                _positive,
                d.status_interval_seconds,
            ),
            status_channel=g(table, "status_channel", p + "status_channel", ch, 0),
            log_channel=g(table, "log_channel", p + "log_channel", ch, 0),
            results_channel=g(table, "results_channel", p + "results_channel", ch, 0),
            task_channel=g(table, "task_channel", p + "task_channel", ch, 0),
            audit_channel=g(table, "audit_channel", p + "audit_channel", ch, 0),
            access=AccessSpec(
                viewer=g(access, "viewer", pa + "viewer", ids, ()),
                operator=g(access, "operator", pa + "operator", ids, ()),
                admin=g(access, "admin", pa + "admin", ids, ()),
            ),
        )


def redact(text: str) -> str:
    """Replace anything in ``text`` that looks like a Discord bot token.

    Every config error message passes through this, so a token pasted into the
    wrong key is never echoed back (to a terminal, a log or a CI transcript).
    """
    return _TOKEN_RE.sub("<redacted token>", text)


class _Bad(Exception):
    """A value failed a converter; the message says what was expected."""


def _kind(value: object) -> str:
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


def _name(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Bad(f"must be a non-empty string, got {_kind(value)}")
    return value


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise _Bad(f"must be true or false, got {_kind(value)}")
    return value


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Bad(f"must be a number of seconds, got {_kind(value)}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise _Bad(f"must be a finite number, got {value!r}")
    return number


def _nonneg(value: object) -> float:
    number = _number(value)
    if number < 0:
        raise _Bad(f"must be >= 0, got {value!r}")
    return number


def _positive(value: object) -> float:
    number = _number(value)
    if number <= 0:
        raise _Bad(f"must be > 0, got {value!r}")
    return number


def _int(low: int, high: int | None = None) -> Callable[[object], int]:
    def convert(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Bad(f"must be a whole number, got {_kind(value)}")
        if value < low or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f">= {low}"
            raise _Bad(f"must be {bounds}, got {value!r}")
        return value

    return convert


def _enum(kind: type[E]) -> Callable[[object], E]:
    accepted = [str(m.value) for m in kind]

    def convert(value: object) -> E:
        for member in kind:
            if value == member.value:
                return member
        raise _Bad(f"must be one of {', '.join(accepted)}; got {_kind(value)}")

    return convert


def _command(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            raise _Bad(f"cannot split the command string: {exc}") from None
    elif isinstance(value, list) and all(isinstance(a, str) for a in value):
        argv = list(value)
    else:
        raise _Bad(f"must be an argv list of strings or a command string, got {_kind(value)}")
    if not argv or not argv[0]:
        raise _Bad("must name a program to run, got an empty command")
    if any("\0" in a for a in argv):
        raise _Bad("must not contain NUL characters")
    return tuple(argv)


def _path(base: Path) -> Callable[[object], Path]:
    def convert(value: object) -> Path:
        if not isinstance(value, str) or not value or "\0" in value:
            raise _Bad(f"must be a path string, got {_kind(value)}")
        try:
            path = Path(value).expanduser()
        except RuntimeError:
            raise _Bad(f"cannot expand '~' in {value!r}: no such user or home") from None
        return path if path.is_absolute() else base / path

    return convert


def _env(value: object) -> Mapping[str, str]:
    if not isinstance(value, dict):
        raise _Bad(f'must be a table of NAME = "value", got {_kind(value)}')
    env: dict[str, str] = {}
    for key, item in value.items():
        if not _ENV_NAME_RE.fullmatch(key):
            raise _Bad(f"{key!r} is not a valid environment variable name")
        if isinstance(item, bool) or not isinstance(item, str | int):
            raise _Bad(f"{key}: must be a string (quote it), got {_kind(item)}")
        text = str(item)
        if "\0" in text:
            raise _Bad(f"{key}: must not contain NUL characters")
        env[key] = text
    return MappingProxyType(env)


def _env_name(value: object) -> str:
    if not isinstance(value, str) or not _ENV_NAME_RE.fullmatch(value):
        raise _Bad(f"must be an environment variable name, got {_kind(value)}")
    return value


def _signal(value: object) -> signal.Signals:
    if isinstance(value, str):
        name = value.upper()
        name = name if name.startswith("SIG") else "SIG" + name
        try:
            return signal.Signals[name]
        except KeyError:
            pass
    raise _Bad(f"must be a signal name such as TERM, INT, HUP, QUIT, KILL; got {_kind(value)}")


def _snowflake(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value >= 2**64:
        raise _Bad(f"must be a Discord id (a whole number), got {_kind(value)}")
    return value


def _id_list(value: object) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise _Bad(f"must be an array of Discord role or user ids, got {_kind(value)}")
    return tuple(_snowflake(item) for item in value)


def _url(scheme: str) -> Callable[[object], str]:
    def convert(value: object) -> str:
        if not isinstance(value, str) or not re.match(rf"^{scheme}s?://[^\s/]+", value):
            raise _Bad(f"must be a {scheme}:// or {scheme}s:// URL, got {_kind(value)}")
        return value.rstrip("/")

    return convert
