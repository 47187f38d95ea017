"""The typed config of a dsup node: TOML in, frozen dataclasses out.

Every mistake in a file is reported at once, in one ``ConfigError`` naming the file and the
dotted key; unknown keys get a did-you-mean and a literal bot token is refused.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import re
import signal
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, TypeVar

from supervisor.config import values as conv
from supervisor.config.toml_text import toml_error_excerpt
from supervisor.config.values import redact
from supervisor.errors import ConfigError, ConfigIssue
from supervisor.humanize import plural

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from _typeshed import DataclassInstance

DEFAULT_CONFIG = Path("dsup.toml")
DEFAULT_STATE_DIR = ".dsup"  # beside the config file
MAX_NUMPROCS = 1000  # processes one program may have

T = TypeVar("T")


class RestartPolicy(enum.Enum):
    """When a process that exited on its own is started again."""

    ALWAYS = "always"
    ON_FAILURE = "on-failure"
    NEVER = "never"


class TaskMode(enum.Enum):
    """How a program takes tasks: a process per task, or a long-running worker."""

    ONESHOT = "oneshot"
    STREAM = "stream"


TASK_PLACEHOLDER = "{task}"
"""An argv element exactly this is replaced by the task's text (oneshot programs)."""

# Keys that mean something only for a program that takes tasks.
_TASK_ONLY_KEYS = ("concurrency", "task_timeout_seconds", "task_max_attempts", "task_backlog")
TASK_KEYS = ("tasks", *_TASK_ONLY_KEYS)
"""A program's task keys: the queue reads them at each dispatch (a reload applies them)."""
# Keys of long-lived processes: a oneshot program has none (one process per task).
_NOT_ONESHOT_KEYS = (
    "cwd",
    "numprocs",
    "autostart",
    "restart",
    "start_seconds",
    "start_retries",
    "backoff_seconds",
    "backoff_max_seconds",
    "keep_descendants",
)


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
    tasks: TaskMode | None = None
    concurrency: int = 1
    task_timeout_seconds: float = 600.0
    task_max_attempts: int = 3
    task_backlog: int = 1000

    @property
    def slot_count(self) -> int:
        """Long-lived processes of this program: none for oneshot (one per task)."""
        return 0 if self.tasks is TaskMode.ONESHOT else self.numprocs

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
            ConfigError: the variable is unset, or the file unreadable or
                readable by others; the message never contains the token.
        """
        where = "discord.token_file" if self.token_file else "discord.token_env"
        if self.token_file is not None:
            try:
                mode = self.token_file.stat().st_mode
                if mode & 0o077:
                    raise ConfigError(
                        self.token_file,
                        [
                            ConfigIssue(
                                where,
                                f"others can read it (mode {mode & 0o777:o}); "
                                f"run: chmod 600 {self.token_file}",
                            )
                        ],
                    )
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
        procs = sum(p.slot_count for p in self.programs.values())
        takers = sum(p.tasks is not None for p in self.programs.values())
        tasks = f", {plural(takers, 'task program')}" if takers else ""
        bridge = "Discord bridge on" if self.discord else "no Discord"
        return (
            f"{self.path}: ok: node {self.supervisor.name!r}, "
            f"{plural(len(self.programs), 'program')}, {plural(procs, 'process')}{tasks}, {bridge}"
        )


def _keys(spec: type[DataclassInstance], *, skip: tuple[str, ...] = ()) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(spec) if f.name not in skip)


# The keys each table accepts: the dataclass fields, so the two cannot drift apart.
PROGRAM_KEYS = _keys(ProgramSpec, skip=("name",))
SUPERVISOR_KEYS = _keys(SupervisorSpec)
DISCORD_KEYS = _keys(DiscordSpec)
ACCESS_KEYS = _keys(AccessSpec)
_TOP_KEYS = _keys(Config, skip=("path",))


def load_config(path: Path | str = DEFAULT_CONFIG) -> Config:
    """Read and validate a config file.

    Raises:
        ConfigError: the file is missing, unreadable, not TOML, or invalid; it
            lists every issue found.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # skip a BOM (Windows editors)
    except FileNotFoundError:
        raise ConfigError(path, [ConfigIssue("", "no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = (
            (exc.strerror or type(exc).__name__) if isinstance(exc, OSError) else "not UTF-8 text"
        )
        raise ConfigError(path, [ConfigIssue("", f"cannot read: {reason}")]) from None
    return parse_config(text, path)


def state_dir_of(path: Path) -> Path | None:
    """The state_dir the config at ``path`` names, even when the rest does not validate.

    ``dsup ctl`` finds a node's socket while its config is being edited: a file
    that is not TOML is read for its ``[supervisor]`` table alone. None when the
    file cannot be read or its state_dir is not usable.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")  # as load_config: a BOM is skipped
    except (OSError, UnicodeDecodeError):
        return None
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError):
        try:
            data = tomllib.loads(_supervisor_section(text))
        except (tomllib.TOMLDecodeError, RecursionError):
            return None
    table = data.get("supervisor", {})
    if not isinstance(table, dict):
        return None
    reader = _Reader(path.resolve().parent)
    spec = reader.supervisor(table)
    return None if any(i.key == "supervisor.state_dir" for i in reader.issues) else spec.state_dir


_TABLE_HEADER = re.compile(r"^\s*\[")
_SUPERVISOR_HEADER = re.compile(r"^\s*\[\s*supervisor\s*\]\s*(#.*)?$")


def _supervisor_section(text: str) -> str:
    """The ``[supervisor]`` table of a config as TOML text ("" when it has none)."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if _SUPERVISOR_HEADER.match(line)), None)
    if start is None:
        return ""
    end = next(
        (i for i in range(start + 1, len(lines)) if _TABLE_HEADER.match(lines[i])), len(lines)
    )
    return "\n".join(lines[start:end])


def parse_config(text: str, path: Path | str) -> Config:
    """Validate TOML text as if read from ``path`` (relative paths resolve beside it)."""
    path = Path(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = redact(toml_error_excerpt(text, str(exc)))
        raise ConfigError(path, [ConfigIssue("", f"not valid TOML: {message}")]) from None
    except RecursionError:
        raise ConfigError(path, [ConfigIssue("", "not valid TOML: nested too deeply")]) from None
    reader = _Reader(path.resolve().parent)
    config = reader.config(data, path)
    if reader.issues:
        raise ConfigError(path, reader.issues)
    assert config is not None  # the reader returns None only with issues
    return config


class _Reader:
    """Walks the parsed TOML, collecting issues instead of stopping at the first."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.issues: list[ConfigIssue] = []

    def fail(self, key: str, message: str) -> None:
        self.issues.append(ConfigIssue(redact(key), redact(message)))

    def keys(self, table: Mapping[str, object], prefix: str, allowed: Sequence[str]) -> None:
        for key in table:
            if key not in allowed:
                import difflib  # here: only a mistake needs it, a node at rest never does

                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                self.fail(f"{prefix}{key}", f"unknown key{hint}")

    def table(self, data: Mapping[str, object], key: str, path: str) -> Mapping[str, object]:
        value = data.get(key, {})
        if not isinstance(value, dict):
            self.fail(path, f"must be a table, got {conv.describe(value)}")
            return {}
        return value

    def get(
        self,
        table: Mapping[str, object],
        prefix: str,
        key: str,
        convert: Callable[[object], T],
        default: T,
    ) -> T:
        """Convert ``table[key]`` (reported as ``prefix + key``), or give ``default``."""
        if key not in table:
            return default
        value = table[key]
        # A worker's own secret may sit in its env (only its owner can read
        # /proc/PID/environ); anywhere else, even in argv that `ps` shows to
        # every user, a token-shaped string is refused.
        if key != "env" and any(conv.looks_like_token(text) for text in _strings(value)):
            self.fail(prefix + key, conv.TOKEN_REFUSED)
            return default
        try:
            return convert(value)
        except conv.BadValue as bad:
            self.fail(prefix + key, str(bad))
            return default

    def config(self, data: Mapping[str, object], path: Path) -> Config | None:
        self.keys(data, "", _TOP_KEYS)
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
        p, g = "supervisor.", self.get
        self.keys(table, p, SUPERVISOR_KEYS)
        return SupervisorSpec(
            name=g(table, p, "name", conv.name, socket.gethostname()),
            state_dir=g(table, p, "state_dir", conv.path(self.base), None)
            or self.base / DEFAULT_STATE_DIR,
            sweep_interval_seconds=g(table, p, "sweep_interval_seconds", conv.positive, 30.0),
        )

    def program(self, name: str, body: object) -> ProgramSpec | None:
        p = f"programs.{name}."
        problem = conv.program_name_problem(name)
        if problem:
            self.fail(f"programs.{name}", problem)
        if not isinstance(body, dict):
            self.fail(f"programs.{name}", f"must be a table, got {conv.describe(body)}")
            return None
        before = len(self.issues)
        self.keys(body, p, PROGRAM_KEYS)
        if "command" not in body:
            self.fail(p + "command", "required: an argv list or a command string")
        d = ProgramSpec(name=name, command=(), cwd=self.base)
        g = self.get
        spec = ProgramSpec(
            name=name,
            command=g(body, p, "command", conv.command, ()),
            cwd=g(body, p, "cwd", conv.path(self.base), self.base),
            env=g(body, p, "env", conv.env, d.env),
            autostart=g(body, p, "autostart", conv.boolean, d.autostart),
            restart=g(body, p, "restart", conv.member_of(RestartPolicy), d.restart),
            start_seconds=g(body, p, "start_seconds", conv.nonneg, d.start_seconds),
            start_retries=g(body, p, "start_retries", conv.whole(1), d.start_retries),
            backoff_seconds=g(body, p, "backoff_seconds", conv.nonneg, d.backoff_seconds),
            backoff_max_seconds=g(
                body, p, "backoff_max_seconds", conv.nonneg, d.backoff_max_seconds
            ),
            stop_signal=g(body, p, "stop_signal", conv.signal_name, d.stop_signal),
            stop_timeout_seconds=g(
                body, p, "stop_timeout_seconds", conv.positive, d.stop_timeout_seconds
            ),
            numprocs=g(body, p, "numprocs", conv.whole(1, MAX_NUMPROCS), d.numprocs),
            max_line_bytes=g(
                body, p, "max_line_bytes", conv.whole(256, 16 * 2**20), d.max_line_bytes
            ),
            log_max_bytes=g(body, p, "log_max_bytes", conv.whole(4096), d.log_max_bytes),
            log_backups=g(body, p, "log_backups", conv.whole(0, 1000), d.log_backups),
            relay=g(body, p, "relay", conv.member_of(Relay), d.relay),
            unbuffered=g(body, p, "unbuffered", conv.boolean, d.unbuffered),
            keep_descendants=g(body, p, "keep_descendants", conv.boolean, d.keep_descendants),
            tasks=g(body, p, "tasks", conv.member_of(TaskMode), None),
            concurrency=g(body, p, "concurrency", conv.whole(1, MAX_NUMPROCS), d.concurrency),
            task_timeout_seconds=g(
                body, p, "task_timeout_seconds", conv.positive, d.task_timeout_seconds
            ),
            task_max_attempts=g(
                body, p, "task_max_attempts", conv.whole(1, 100), d.task_max_attempts
            ),
            task_backlog=g(body, p, "task_backlog", conv.whole(1, 1_000_000), d.task_backlog),
        )
        self.task_keys(body, p, spec)
        if spec.backoff_max_seconds < spec.backoff_seconds:
            self.fail(
                p + "backoff_max_seconds",
                f"must be >= backoff_seconds ({spec.backoff_seconds}), "
                f"got {spec.backoff_max_seconds}",
            )
        return spec if len(self.issues) == before else None

    def task_keys(self, body: Mapping[str, object], p: str, spec: ProgramSpec) -> None:
        """Refuse task keys on a plain program and process keys on a oneshot one."""
        if spec.tasks is None:
            for key in _TASK_ONLY_KEYS:
                if key in body:
                    self.fail(p + key, 'only for a program that takes tasks (tasks = "oneshot")')
        elif spec.tasks is TaskMode.ONESHOT:
            for key in _NOT_ONESHOT_KEYS:
                if key in body:
                    why = (
                        "each task's process runs in its own fresh directory (DSUP_TASK_DIR); "
                        "name scripts in command by absolute path"
                        if key == "cwd"
                        else "dsup starts one process per task (concurrency: how many at once)"
                    )
                    self.fail(p + key, f'does not apply with tasks = "oneshot": {why}')
        if TASK_PLACEHOLDER in spec.command and spec.tasks is not TaskMode.ONESHOT:
            self.fail(
                p + "command",
                f'{TASK_PLACEHOLDER} is replaced by the task text only with tasks = "oneshot"',
            )

    def discord(self, table: Mapping[str, object]) -> DiscordSpec:
        p, g = "discord.", self.get
        if "token" in table:
            self.fail(p + "token", conv.TOKEN_KEY_REFUSED)
            table = {k: v for k, v in table.items() if k != "token"}
        self.keys(table, p, DISCORD_KEYS)
        d = DiscordSpec()
        token_env = g(table, p, "token_env", conv.env_name, d.token_env)
        token_file = g(table, p, "token_file", conv.path(self.base), None)
        if "token_env" in table and "token_file" in table:
            self.fail(p + "token_file", "give token_env or token_file, not both")
        access = self.table(table, "access", p + "access")
        pa = p + "access."
        self.keys(access, pa, ACCESS_KEYS)
        ch = conv.snowflake
        return DiscordSpec(
            token_env=None if token_file else token_env,
            token_file=token_file,
            guild_id=g(table, p, "guild_id", ch, d.guild_id),
            api_base=g(table, p, "api_base", conv.url("http"), d.api_base),
            gateway_url=g(table, p, "gateway_url", conv.url("ws"), d.gateway_url),
            status_interval_seconds=g(
                table, p, "status_interval_seconds", conv.positive, d.status_interval_seconds
            ),
            status_channel=g(table, p, "status_channel", ch, 0),
            log_channel=g(table, p, "log_channel", ch, 0),
            results_channel=g(table, p, "results_channel", ch, 0),
            task_channel=g(table, p, "task_channel", ch, 0),
            audit_channel=g(table, p, "audit_channel", ch, 0),
            access=AccessSpec(
                viewer=g(access, pa, "viewer", conv.id_list, ()),
                operator=g(access, pa, "operator", conv.id_list, ()),
                admin=g(access, pa, "admin", conv.id_list, ()),
            ),
        )


def _strings(value: object) -> list[str]:
    """Every string in a TOML value: itself, or those inside its arrays and tables."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    return []
