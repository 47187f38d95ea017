"""Property tests of the config loader: random and malformed TOML and values.

Every outcome is a valid Config or a ConfigError with at least one issue; never
another exception, never a token in a message.
"""

from __future__ import annotations

import math
import os
import string
import tempfile
import tomllib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisor.config.schema import (
    ACCESS_KEYS,
    DISCORD_KEYS,
    PROGRAM_KEYS,
    SUPERVISOR_KEYS,
    Config,
    Relay,
    RestartPolicy,
    parse_config,
)
from supervisor.config.supervisord.converter import convert_file
from supervisor.config.toml_text import toml_key, toml_value
from supervisor.errors import ConfigError

# DSUP_HYPOTHESIS_EXAMPLES=5000 for a deeper hunt; the suite keeps 200 to stay quick.
FAST = settings(
    max_examples=int(os.environ.get("DSUP_HYPOTHESIS_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
CONFIG_PATH = Path(tempfile.gettempdir()) / "dsup-properties" / "dsup.toml"

# "token" is refused, and access is sampled by its own keys.
DISCORD_VALUE_KEYS = ["token", *(k for k in DISCORD_KEYS if k != "access")]

scalars = st.one_of(
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.sampled_from(
        ["", " ", "TERM", "sigkill", "always", "all", "~", "~root/x", "a b", "'", "\\", "%"]
    ),
    st.text(max_size=20),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)
tokens = st.from_regex(r"\A[A-Za-z0-9_-]{24}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,38}\Z")

TOML_PIECES = [
    "[",
    "]",
    "[[",
    "]]",
    "=",
    '"',
    "'",
    '"""',
    ".",
    ",",
    "{",
    "}",
    "#",
    " ",
    "\n",
    "\\",
    "programs",
    "supervisor",
    "discord",
    "access",
    "a",
    "command",
    "env",
    "restart",
    "numprocs",
    "name",
    "token",
    "1",
    "-1",
    "1.5",
    "1e400",
    "nan",
    "inf",
    "true",
    "0x10",
    "1979-05-27",
    '"x"',
    '["true"]',
]


def _outcome(text: str) -> Config | ConfigError:
    try:
        return parse_config(text, CONFIG_PATH)
    except ConfigError as exc:
        error = exc
    assert error.issues
    assert all(str(issue) for issue in error.issues)
    return error


def _document(data: dict[str, object]) -> str:
    """Write a two-level document: top-level tables of key = value lines."""
    lines: list[str] = []
    for table, body in data.items():
        if isinstance(body, dict):
            lines.append(f"[{table}]")
            lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in body.items()]
        else:
            lines.insert(0, f"{toml_key(table)} = {toml_value(body)}")
    return "\n".join(lines) + "\n"


@FAST
@given(st.text(max_size=300))
def test_config_random_text_is_config_or_error(text: str) -> None:
    _outcome(text)


@FAST
@given(st.lists(st.sampled_from(TOML_PIECES), max_size=40).map("".join))
def test_config_toml_shaped_noise_is_config_or_error(text: str) -> None:
    _outcome(text)


@FAST
@given(st.sampled_from(PROGRAM_KEYS), values)
def test_config_random_program_value(key: str, value: object) -> None:
    body: dict[str, object] = {"command": ["true"], key: value}
    outcome = _outcome(_document({"programs.a": body}))
    if isinstance(outcome, ConfigError):
        assert any(i.key.startswith("programs.a") for i in outcome.issues), outcome.issues


@FAST
@given(st.sampled_from(SUPERVISOR_KEYS), values)
def test_config_random_supervisor_value(key: str, value: object) -> None:
    outcome = _outcome(_document({"supervisor": {key: value}}))
    if isinstance(outcome, ConfigError):
        assert [i.key for i in outcome.issues] == [f"supervisor.{key}"]


@FAST
@given(st.sampled_from([*DISCORD_VALUE_KEYS, *(f"access.{k}" for k in ACCESS_KEYS)]), values)
def test_config_random_discord_value(key: str, value: object) -> None:
    outcome = _outcome(_document({"discord": {key: value}}))
    if key == "token":
        assert isinstance(outcome, ConfigError)
    if isinstance(outcome, ConfigError):
        assert all(i.key.startswith("discord.") for i in outcome.issues), outcome.issues


@FAST
@given(st.dictionaries(st.text(max_size=10), values, max_size=5))
def test_config_random_keys_are_known_or_reported(table: dict[str, object]) -> None:
    outcome = _outcome(_document({"programs.a": {"command": ["true"], **table}}))
    unknown = set(table) - set(PROGRAM_KEYS)
    if unknown:
        assert isinstance(outcome, ConfigError)
        keys = {i.key for i in outcome.issues}
        assert {f"programs.a.{k}" for k in unknown} <= keys


@FAST
@given(
    tokens,
    st.sampled_from(
        [
            ("supervisor", "name"),
            ("supervisor", "state_dir"),
            ("discord", "token"),
            ("discord", "token_env"),
            ("discord", "token_file"),
            ("discord", "guild_id"),
            ("discord", "api_base"),
            ("discord", "gateway_url"),
            ("discord", "status_channel"),
            ("programs.a", "restart"),
            ("programs.a", "stop_signal"),
        ]
    ),
    st.sampled_from(["{}", " {} ", "Bot {}", "https://x/{}?", "[{}]"]),
)
def test_config_token_never_in_a_message(token: str, where: tuple[str, str], shape: str) -> None:
    table, key = where
    body: dict[str, object] = {key: shape.format(token)}
    if table == "programs.a":
        body["command"] = ["true"]
    outcome = _outcome(_document({table: body}))
    if isinstance(outcome, ConfigError):
        assert token not in str(outcome)
    else:
        # Only a token embedded in an otherwise valid value passes, and is not shown.
        assert token not in outcome.summary()


@FAST
@given(tokens, st.sampled_from(["discord", "supervisor", "discord.access", "programs.a"]))
def test_config_token_as_key_name_never_echoed(token: str, table: str) -> None:
    outcome = _outcome(_document({table: {token: 1}}))
    assert isinstance(outcome, ConfigError)
    assert token not in str(outcome)


@FAST
@given(values)
def test_toml_value_round_trips(value: object) -> None:
    assert tomllib.loads(f"v = {toml_value(value)}")["v"] == value


# --- round trip of valid programs -----------------------------------------------------

valid_programs = st.fixed_dictionaries(
    {
        # "{task}" is valid only with tasks = "oneshot" (tested with the tasks config).
        "command": st.lists(
            st.text(min_size=1, max_size=10).filter(lambda s: "\0" not in s and "{task}" not in s)
        )
        .filter(lambda argv: len(argv) > 0)
        .map(lambda argv: argv[:4]),
    },
    optional={
        "cwd": st.text(alphabet=string.ascii_letters + "/._-", min_size=1, max_size=20),
        "env": st.dictionaries(
            st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,8}\Z"),
            st.text(max_size=10).filter(lambda s: "\0" not in s),
            max_size=4,
        ),
        "autostart": st.booleans(),
        "restart": st.sampled_from([p.value for p in RestartPolicy]),
        "start_seconds": st.floats(min_value=0, max_value=1e6),
        "start_retries": st.integers(min_value=1, max_value=10**6),
        "backoff_seconds": st.floats(min_value=0, max_value=10.0),
        "stop_signal": st.sampled_from(["TERM", "SIGINT", "hup", "Quit", "KILL", "usr2"]),
        "stop_timeout_seconds": st.floats(min_value=0.001, max_value=1e6),
        "numprocs": st.integers(min_value=1, max_value=1000),
        "max_line_bytes": st.integers(min_value=256, max_value=16 * 2**20),
        "log_max_bytes": st.integers(min_value=4096, max_value=2**40),
        "log_backups": st.integers(min_value=0, max_value=1000),
        "relay": st.sampled_from([r.value for r in Relay]),
        "unbuffered": st.booleans(),
        "keep_descendants": st.booleans(),
    },
)


@FAST
@given(valid_programs)
def test_config_valid_program_round_trips(body: dict[str, object]) -> None:
    outcome = _outcome(_document({"programs.a": body}))
    assert isinstance(outcome, Config), outcome
    spec = outcome.programs["a"]
    assert list(spec.command) == body["command"]
    assert dict(spec.env) == body.get("env", {})
    for key in ("autostart", "start_retries", "numprocs", "max_line_bytes", "log_max_bytes"):
        if key in body:
            assert getattr(spec, key) == body[key]
    for key in ("start_seconds", "backoff_seconds", "stop_timeout_seconds"):
        if key in body:
            assert math.isclose(getattr(spec, key), float(body[key]))  # type: ignore[arg-type]
    if "restart" in body:
        assert spec.restart.value == body["restart"]
    if "relay" in body:
        assert spec.relay.value == body["relay"]
    if "stop_signal" in body:
        name = str(body["stop_signal"]).upper()
        assert spec.stop_signal.name == (name if name.startswith("SIG") else "SIG" + name)
    if "cwd" in body:
        assert spec.cwd == CONFIG_PATH.parent / str(body["cwd"])


# --- supervisord import ---------------------------------------------------------------

INI_LINES = [
    "[program:a]",
    "[program:b c]",
    "[program:x]",
    "[group:g]",
    "[supervisord]",
    "[include]",
    "[eventlistener:e]",
    "[unix_http_server]",
    "programs=a,x",
    "files=nothing/*.conf",
    "command=/bin/cat",
    "command=python -u w.py --n %(process_num)d",
    "command='",
    "command=",
    "numprocs=3",
    "numprocs=0",
    "numprocs=x",
    "process_name=%(program_name)s_%(process_num)02d",
    "process_name=p%(process_num)d",
    'environment=A=1,B="x,y"',
    "environment=A",
    "environment=K=%(here)s",
    "autorestart=unexpected",
    "autorestart=maybe",
    "autostart=yes",
    "startsecs=-1",
    "startsecs=abc",
    "stopsignal=9",
    "stopsignal=BOGUS",
    "stopwaitsecs=0",
    "stdout_logfile_maxbytes=1KB",
    "stdout_logfile_maxbytes=50MB",
    "stdout_logfile_backups=-3",
    "directory=rel",
    "user=nobody",
    "exitcodes=0,2",
    "priority=5",
    "identifier=node",
    "x=%(nope)s",
    "y=100%",
    "; comment",
    "  continued line",
    "",
]


INI_KEYS = sorted({line.split("=")[0] for line in INI_LINES if "=" in line} | {"stopasgroup"})
ini_lines = st.one_of(
    st.sampled_from(INI_LINES),
    st.builds("{}={}".format, st.sampled_from(INI_KEYS), st.text(max_size=12)),
)


@FAST
@given(st.lists(ini_lines, max_size=25))
def test_import_random_ini_is_toml_or_error(lines: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "supervisord.conf"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        outcome = _import(path)
        if isinstance(outcome, ConfigError):
            assert outcome.issues
        else:
            parse_config(outcome, Path(tmp) / "dsup.toml")  # what `dsup check` runs


def _import(path: Path) -> str | ConfigError:
    try:
        return convert_file(path)
    except ConfigError as exc:
        return exc
