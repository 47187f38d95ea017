"""The config contract: every key, its default, and every error path."""

from __future__ import annotations

import dataclasses
import signal
import socket
from pathlib import Path

import pytest

from supervisor.config.preflight import preflight
from supervisor.config.schema import (
    DEFAULT_CONFIG,
    AccessSpec,
    Config,
    DiscordSpec,
    ProgramSpec,
    Relay,
    RestartPolicy,
    SupervisorSpec,
    load_config,
    parse_config,
    state_dir_of,
)
from supervisor.errors import ConfigError, SupervisorError

REPO = Path(__file__).resolve().parents[2]
MINIMAL = '[programs.a]\ncommand = ["true"]\n'
# Shaped like a real bot token (three base64url parts); not a real one.
TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789AB"


def _config(tmp_path: Path, text: str) -> Config:
    return parse_config(text, tmp_path / "dsup.toml")


def _error(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text, tmp_path / "dsup.toml")
    assert info.value.issues, "a ConfigError must carry at least one issue"
    return info.value


def _messages(exc: ConfigError) -> dict[str, str]:
    return {issue.key: issue.message for issue in exc.issues}


def _program(tmp_path: Path, line: str) -> ProgramSpec:
    return _config(tmp_path, MINIMAL + line + "\n").programs["a"]


# --- defaults -------------------------------------------------------------------------


def test_config_minimal_file_gets_every_default(tmp_path: Path) -> None:
    config = _config(tmp_path, MINIMAL)
    spec = config.programs["a"]
    assert spec == ProgramSpec(name="a", command=("true",), cwd=tmp_path)
    assert spec.restart is RestartPolicy.ON_FAILURE
    assert spec.stop_signal is signal.SIGTERM
    assert (spec.start_seconds, spec.start_retries, spec.numprocs) == (1.0, 3, 1)
    assert (spec.log_max_bytes, spec.log_backups) == (50 * 1024 * 1024, 5)
    assert spec.relay is Relay.ERRORS
    assert spec.unbuffered is True
    assert spec.keep_descendants is False
    assert config.supervisor == SupervisorSpec(
        name=socket.gethostname(), state_dir=tmp_path / ".dsup"
    )
    assert config.discord is None
    assert Path("dsup.toml") == DEFAULT_CONFIG


def test_config_empty_file_is_a_node_without_programs(tmp_path: Path) -> None:
    config = _config(tmp_path, "")
    assert dict(config.programs) == {}
    assert "0 programs" in config.summary()


def test_config_is_frozen(tmp_path: Path) -> None:
    config = _config(tmp_path, MINIMAL + 'env = { A = "1" }\n')
    spec = config.programs["a"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.numprocs = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.env["B"] = "2"  # type: ignore[index]
    with pytest.raises(TypeError):
        config.programs["b"] = spec  # type: ignore[index]


def test_config_summary_names_node_programs_and_processes(tmp_path: Path) -> None:
    text = '[supervisor]\nname = "n1"\n' + MINIMAL + "numprocs = 3\n"
    summary = _config(tmp_path, text).summary()
    assert "'n1'" in summary
    assert "1 program, 3 processes" in summary
    assert "no Discord" in summary


# --- every program key, valid values --------------------------------------------------


@pytest.mark.parametrize(
    ("line", "attribute", "expected"),
    [
        ("autostart = false", "autostart", False),
        ('restart = "always"', "restart", RestartPolicy.ALWAYS),
        ('restart = "on-failure"', "restart", RestartPolicy.ON_FAILURE),
        ('restart = "never"', "restart", RestartPolicy.NEVER),
        ("start_seconds = 0", "start_seconds", 0.0),
        ("start_seconds = 2.5", "start_seconds", 2.5),
        ("start_retries = 1", "start_retries", 1),
        ("backoff_seconds = 0", "backoff_seconds", 0.0),
        ("backoff_max_seconds = 99.5", "backoff_max_seconds", 99.5),
        ('stop_signal = "TERM"', "stop_signal", signal.SIGTERM),
        ('stop_signal = "SIGTERM"', "stop_signal", signal.SIGTERM),
        ('stop_signal = "term"', "stop_signal", signal.SIGTERM),
        ('stop_signal = "INT"', "stop_signal", signal.SIGINT),
        ('stop_signal = "sighup"', "stop_signal", signal.SIGHUP),
        ('stop_signal = "QUIT"', "stop_signal", signal.SIGQUIT),
        ('stop_signal = "KILL"', "stop_signal", signal.SIGKILL),
        ('stop_signal = "USR1"', "stop_signal", signal.SIGUSR1),
        ("stop_timeout_seconds = 0.5", "stop_timeout_seconds", 0.5),
        ("stop_timeout_seconds = 3", "stop_timeout_seconds", 3.0),
        ("numprocs = 1000", "numprocs", 1000),
        ("max_line_bytes = 256", "max_line_bytes", 256),
        ("max_line_bytes = 16777216", "max_line_bytes", 16 * 2**20),
        ("log_max_bytes = 4096", "log_max_bytes", 4096),
        ("log_backups = 0", "log_backups", 0),
        ("log_backups = 1000", "log_backups", 1000),
        ('relay = "none"', "relay", Relay.NONE),
        ('relay = "errors"', "relay", Relay.ERRORS),
        ('relay = "results"', "relay", Relay.RESULTS),
        ('relay = "all"', "relay", Relay.ALL),
        ("unbuffered = false", "unbuffered", False),
        ("keep_descendants = true", "keep_descendants", True),
    ],
)
def test_config_program_key_accepts(
    tmp_path: Path, line: str, attribute: str, expected: object
) -> None:
    spec = _program(tmp_path, line)
    assert getattr(spec, attribute) == expected


def test_config_command_string_is_split_with_shlex(tmp_path: Path) -> None:
    text = '[programs.a]\ncommand = "python3 -u \'my script.py\' --x=\\"1 2\\""\n'
    assert _config(tmp_path, text).programs["a"].command == (
        "python3",
        "-u",
        "my script.py",
        "--x=1 2",
    )


def test_config_command_list_is_kept_verbatim(tmp_path: Path) -> None:
    text = '[programs.a]\ncommand = ["sh", "-c", "echo $HOME; exit 3"]\n'
    assert _config(tmp_path, text).programs["a"].command == ("sh", "-c", "echo $HOME; exit 3")


def test_config_env_values_are_strings(tmp_path: Path) -> None:
    spec = _program(tmp_path, 'env = { API_URL = "http://127.0.0.1:9000", PORT = 8080, _X = "" }')
    assert dict(spec.env) == {"API_URL": "http://127.0.0.1:9000", "PORT": "8080", "_X": ""}


def test_config_env_as_subtable(tmp_path: Path) -> None:
    text = MINIMAL + '[programs.a.env]\nLANG = "C.UTF-8"\nQUOTED = "a \\"b\\" c"\n'
    assert dict(_config(tmp_path, text).programs["a"].env) == {
        "LANG": "C.UTF-8",
        "QUOTED": 'a "b" c',
    }


def test_config_numprocs_names_processes(tmp_path: Path) -> None:
    assert _program(tmp_path, "numprocs = 3").process_names() == ["a:0", "a:1", "a:2"]


@pytest.mark.parametrize("name", ["a", "web-1", "a.b_c", "_x", "0", "x" * 64])
def test_config_program_names_accepted(tmp_path: Path, name: str) -> None:
    text = f'[programs."{name}"]\ncommand = ["true"]\n'
    assert list(_config(tmp_path, text).programs) == [name]


# --- relative paths -------------------------------------------------------------------


def test_config_paths_resolve_beside_the_config_file(tmp_path: Path) -> None:
    sub = tmp_path / "etc" / "node"
    sub.mkdir(parents=True)
    (sub / "dsup.toml").write_text(
        '[supervisor]\nstate_dir = "state"\n'
        '[programs.a]\ncommand = ["true"]\ncwd = "../workers"\n'
        '[discord]\ntoken_file = "secrets/token"\n'
    )
    config = load_config(sub / "dsup.toml")
    assert config.supervisor.state_dir == sub / "state"
    assert config.programs["a"].cwd == sub / "../workers"
    assert config.discord is not None
    assert config.discord.token_file == sub / "secrets/token"
    assert config.discord.token_env is None


def test_config_relative_config_path_resolves_against_the_working_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "dsup.toml").write_text(MINIMAL + 'cwd = "w"\n')
    monkeypatch.chdir(tmp_path)
    config = load_config("dsup.toml")
    assert config.programs["a"].cwd == tmp_path.resolve() / "w"
    assert config.supervisor.state_dir == tmp_path.resolve() / ".dsup"


def test_config_absolute_and_home_paths_are_kept(tmp_path: Path) -> None:
    spec = _program(tmp_path, 'cwd = "/srv/app"')
    assert spec.cwd == Path("/srv/app")
    assert _program(tmp_path, 'cwd = "~/w"').cwd == Path.home() / "w"


# --- program errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "key", "fragment"),
    [
        ("command = 5", "command", "argv list"),
        ("command = []", "command", "empty"),
        ('command = ""', "command", "empty"),
        ('command = "   "', "command", "empty"),
        ('command = [""]', "command", "empty"),
        ("command = [1, 2]", "command", "argument 0 must be a string"),
        ('command = "echo \'unclosed"', "command", "cannot split"),
        ('command = ["a\\u0000b"]', "command", "NUL"),
        ("cwd = 5", "cwd", "path string"),
        ('cwd = ""', "cwd", "path string"),
        ('cwd = "~nosuchuser-dsup-test/x"', "cwd", "cannot expand"),
        ('env = "A=1"', "env", "table"),
        ('env = { "1A" = "x" }', "env", "not a valid environment variable name"),
        ('env = { "A-B" = "x" }', "env", "not a valid environment variable name"),
        # Ü is a letter, so the rule must say ASCII.
        ('env = { "GRÜSSE" = "x" }', "env", "(an ASCII letter or '_', then ASCII letters"),
        ("env = { A = true }", "env", "must be a string"),
        ("env = { A = 1.5 }", "env", "must be a string"),
        ('env = { A = "x\\u0000" }', "env", "NUL"),
        ('autostart = "yes"', "autostart", "true or false"),
        ("autostart = 1", "autostart", "true or false"),
        ('restart = "sometimes"', "restart", "always, on-failure, never"),
        ("restart = true", "restart", "always, on-failure, never"),
        ("start_seconds = -1", "start_seconds", ">= 0"),
        ('start_seconds = "1"', "start_seconds", "number"),
        ("start_seconds = true", "start_seconds", "number"),
        ("start_seconds = nan", "start_seconds", "finite"),
        ("start_seconds = inf", "start_seconds", "finite"),
        ("start_seconds = 1" + "0" * 400, "start_seconds", "finite"),
        ("start_retries = 0", "start_retries", ">= 1"),
        ("start_retries = 1.5", "start_retries", "whole number"),
        ("start_retries = true", "start_retries", "whole number"),
        ("backoff_seconds = -0.1", "backoff_seconds", ">= 0"),
        ("backoff_max_seconds = -1", "backoff_max_seconds", ">= 0"),
        ('stop_signal = "NOPE"', "stop_signal", "signal name"),
        ("stop_signal = 15", "stop_signal", "signal name"),
        ('stop_signal = ""', "stop_signal", "signal name"),
        ("stop_timeout_seconds = 0", "stop_timeout_seconds", "> 0"),
        ("stop_timeout_seconds = -5", "stop_timeout_seconds", "> 0"),
        ("numprocs = 0", "numprocs", "between 1 and 1000"),
        ("numprocs = 1001", "numprocs", "between 1 and 1000"),
        ("numprocs = 2.0", "numprocs", "whole number"),
        ("max_line_bytes = 255", "max_line_bytes", "between 256 and 16777216"),
        ("max_line_bytes = 16777217", "max_line_bytes", "between 256 and 16777216"),
        ("log_max_bytes = 4095", "log_max_bytes", ">= 4096"),
        ('log_max_bytes = "50MB"', "log_max_bytes", "whole number"),
        ("log_backups = -1", "log_backups", "between 0 and 1000"),
        ("log_backups = 1001", "log_backups", "between 0 and 1000"),
        ('relay = "some"', "relay", "none, errors, results, all"),
        ("unbuffered = 1", "unbuffered", "true or false"),
        ('keep_descendants = "no"', "keep_descendants", "true or false"),
    ],
)
def test_config_program_key_refuses(tmp_path: Path, line: str, key: str, fragment: str) -> None:
    text = f"[programs.a]\n{line}\n" if key == "command" else MINIMAL + line + "\n"
    exc = _error(tmp_path, text)
    messages = _messages(exc)
    assert list(messages) == [f"programs.a.{key}"]
    assert fragment in messages[f"programs.a.{key}"]
    assert str(exc).startswith(f"{tmp_path / 'dsup.toml'}: programs.a.{key}: ")


def test_config_backoff_max_must_not_be_below_backoff(tmp_path: Path) -> None:
    exc = _error(tmp_path, MINIMAL + "backoff_seconds = 5\nbackoff_max_seconds = 1\n")
    assert "must be >= backoff_seconds" in _messages(exc)["programs.a.backoff_max_seconds"]


def test_config_missing_command_is_required(tmp_path: Path) -> None:
    exc = _error(tmp_path, '[programs.a]\nrestart = "always"\n')
    assert "required" in _messages(exc)["programs.a.command"]


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("a:b", "':' not allowed"),
        ("a b", "' ' not allowed"),
        ("web*", "'*' not allowed"),
        ("-x", "it starts with '-'"),
        (".x", "it starts with '.'"),
        ("", "got 0 characters"),
        ("x" * 65, "got 65 characters"),
        ("ünicode", "'ü' not allowed"),
    ],
)
def test_config_bad_program_names_are_refused(tmp_path: Path, name: str, why: str) -> None:
    """The message says ASCII and the first-character rule, and what broke it."""
    exc = _error(tmp_path, f'[programs."{name}"]\ncommand = ["true"]\n')
    message = _messages(exc)[f"programs.{name}"]
    assert message.startswith("a program name is 1-64 ASCII letters, digits, '_', '.' or '-'")
    assert "starts with a letter, digit or '_'" in message
    assert message.endswith(why)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("programs = 5\n", "programs"),
        ('programs = { a = "x" }\n', "programs.a"),
        ("supervisor = []\n", "supervisor"),
        ("discord = true\n", "discord"),
        ("[discord]\naccess = 1\n", "discord.access"),
    ],
)
def test_config_tables_must_be_tables(tmp_path: Path, text: str, key: str) -> None:
    assert "must be a table" in _messages(_error(tmp_path, text))[key]


# --- [supervisor] ---------------------------------------------------------------------


def test_config_supervisor_keys(tmp_path: Path) -> None:
    text = (
        '[supervisor]\nname = "node-a"\nstate_dir = "/var/lib/dsup"\nsweep_interval_seconds = 5\n'
    )
    sup = _config(tmp_path, text).supervisor
    assert sup == SupervisorSpec(
        name="node-a", state_dir=Path("/var/lib/dsup"), sweep_interval_seconds=5.0
    )


@pytest.mark.parametrize(
    ("line", "key", "fragment"),
    [
        ('name = ""', "name", "non-empty string"),
        ('name = "  "', "name", "non-empty string"),
        ("name = 5", "name", "non-empty string"),
        ("state_dir = 5", "state_dir", "path string"),
        ('state_dir = ""', "state_dir", "path string"),
        ("sweep_interval_seconds = 0", "sweep_interval_seconds", "> 0"),
        ('sweep_interval_seconds = "5"', "sweep_interval_seconds", "number"),
    ],
)
def test_config_supervisor_key_refuses(tmp_path: Path, line: str, key: str, fragment: str) -> None:
    exc = _error(tmp_path, f"[supervisor]\n{line}\n")
    assert fragment in _messages(exc)[f"supervisor.{key}"]


# --- [discord] ------------------------------------------------------------------------

DISCORD_FULL = """
[discord]
token_env = "MY_BOT_TOKEN"
guild_id = 123456789012345678
api_base = "http://127.0.0.1:8080/api/v10/"
gateway_url = "ws://127.0.0.1:8081"
status_interval_seconds = 2.5
status_channel = 1
log_channel = 2
results_channel = 3
task_channel = 4
audit_channel = 5
[discord.access]
viewer = [10, 11]
operator = [20]
admin = [18446744073709551615]
"""


def test_config_discord_every_key(tmp_path: Path) -> None:
    discord = _config(tmp_path, DISCORD_FULL).discord
    assert discord == DiscordSpec(
        token_env="MY_BOT_TOKEN",
        guild_id=123456789012345678,
        api_base="http://127.0.0.1:8080/api/v10",
        gateway_url="ws://127.0.0.1:8081",
        status_interval_seconds=2.5,
        status_channel=1,
        log_channel=2,
        results_channel=3,
        task_channel=4,
        audit_channel=5,
        access=AccessSpec(viewer=(10, 11), operator=(20,), admin=(2**64 - 1,)),
    )
    assert "Discord bridge on" in _config(tmp_path, DISCORD_FULL).summary()


def test_config_discord_empty_table_gets_defaults(tmp_path: Path) -> None:
    discord = _config(tmp_path, "[discord]\n").discord
    assert discord == DiscordSpec()
    assert discord.token_env == "DSUP_DISCORD_TOKEN"
    assert discord.api_base == "https://discord.com/api/v10"
    assert discord.access == AccessSpec()


@pytest.mark.parametrize(
    ("line", "key", "fragment"),
    [
        ('token_env = "1BAD"', "token_env", "environment variable name"),
        ('token_env = "TÖKEN"', "token_env", "(an ASCII letter or '_', then ASCII letters"),
        ("token_env = 5", "token_env", "environment variable name"),
        ("token_file = 5", "token_file", "path string"),
        ("guild_id = -1", "guild_id", "Discord id"),
        ('guild_id = "123"', "guild_id", "Discord id"),
        ("guild_id = 18446744073709551616", "guild_id", "Discord id"),
        ("guild_id = true", "guild_id", "Discord id"),
        ('api_base = "ftp://x"', "api_base", "http:// or https://"),
        ('api_base = "discord.com"', "api_base", "http:// or https://"),
        ('gateway_url = "http://x"', "gateway_url", "ws:// or wss://"),
        ("status_interval_seconds = 0", "status_interval_seconds", "> 0"),
        ("status_channel = 1.5", "status_channel", "Discord id"),
        ('log_channel = "x"', "log_channel", "Discord id"),
        ("results_channel = -2", "results_channel", "Discord id"),
        ("task_channel = []", "task_channel", "Discord id"),
        ("audit_channel = false", "audit_channel", "Discord id"),
        ("access = { viewer = 5 }", "access.viewer", "array"),
        ('access = { operator = ["1"] }', "access.operator", "Discord id"),
        ("access = { admin = [-1] }", "access.admin", "Discord id"),
    ],
)
def test_config_discord_key_refuses(tmp_path: Path, line: str, key: str, fragment: str) -> None:
    exc = _error(tmp_path, f"[discord]\n{line}\n")
    assert fragment in _messages(exc)[f"discord.{key}"]


def test_config_discord_token_env_and_file_are_exclusive(tmp_path: Path) -> None:
    exc = _error(tmp_path, '[discord]\ntoken_env = "T"\ntoken_file = "t"\n')
    assert "not both" in _messages(exc)["discord.token_file"]


# --- literal tokens -------------------------------------------------------------------


@pytest.mark.parametrize("value", ['"abc"', f'"{TOKEN}"', "1"])
def test_config_discord_token_key_is_refused_whatever_its_value(tmp_path: Path, value: str) -> None:
    """``token = "abc"`` was refused as a token-looking value; the key is the fault."""
    exc = _error(tmp_path, f"[discord]\ntoken = {value}\n")
    message = _messages(exc)["discord.token"]
    assert message.startswith("there is no token key: the bot token never goes in the config")
    assert "with token_env (an environment variable) or token_file" in message
    assert TOKEN not in str(exc)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (f'[discord]\ntoken_env = "{TOKEN}"\n', "discord.token_env"),
        (f'[discord]\ntoken_file = "{TOKEN}"\n', "discord.token_file"),
        (f'[discord]\nguild_id = "{TOKEN}"\n', "discord.guild_id"),
        (f'[discord]\napi_base = "{TOKEN}"\n', "discord.api_base"),
        (f'[discord]\ngateway_url = " {TOKEN} "\n', "discord.gateway_url"),
        (f'[discord]\napi_base = "https://x/{TOKEN}"\n', "discord.api_base"),
        (f'[supervisor]\nname = "Bot {TOKEN}"\n', "supervisor.name"),
        (f'[programs.a]\ncommand = "bot --token {TOKEN}"\n', "programs.a.command"),
        (f'[supervisor]\nname = "{TOKEN}"\n', "supervisor.name"),
        (f'[programs.a]\ncommand = "{TOKEN}"\n', "programs.a.command"),
        (f'[programs.a]\ncommand = ["bot", "--token", "{TOKEN}"]\n', "programs.a.command"),
    ],
)
def test_config_literal_token_is_refused_without_echo(tmp_path: Path, text: str, key: str) -> None:
    exc = _error(tmp_path, text)
    assert "literal token" in _messages(exc)[key]
    assert TOKEN not in str(exc)
    assert TOKEN not in repr(exc.issues)


@pytest.mark.parametrize(
    "text",
    [
        f'[discord]\napi_base = "x/{TOKEN}"\n',
        f'[discord]\naccess = {{ admin = ["{TOKEN}"] }}\n',
        f'[discord]\n"{TOKEN}" = 1\n',
        f'[programs."{TOKEN}"]\ncommand = ["true"]\n',
        f'[programs.a]\ncommand = ["true"]\nenv = {{ "{TOKEN}" = "x" }}\n',
        f'[programs.a]\ncommand = ["true"]\nrestart = "{TOKEN} please"\n',
        f'[supervisor]\nname = 1\n[discord]\nstatus_channel = "Bot {TOKEN}"\n',
        f'token = "{TOKEN}"\n',
    ],
)
def test_config_token_is_redacted_from_every_message(tmp_path: Path, text: str) -> None:
    exc = _error(tmp_path, text)
    assert TOKEN not in str(exc)
    assert TOKEN not in repr(exc.issues)


def test_config_command_list_names_the_argument_that_is_no_string(tmp_path: Path) -> None:
    exc = _error(tmp_path, '[programs.a]\ncommand = ["sleep", 5]\n')
    assert _messages(exc)["programs.a.command"].startswith("argument 1 must be a string")


def test_config_env_may_not_set_dsup_markers(tmp_path: Path) -> None:
    """dsup overwrote them silently; now the config says so."""
    exc = _error(tmp_path, '[programs.a]\ncommand = ["true"]\nenv = { DSUP_RUN_ID = "x" }\n')
    assert "set by dsup" in _messages(exc)["programs.a.env"]


def test_config_env_names_every_bad_variable(tmp_path: Path) -> None:
    """Only DSUP_X was reported; 1BAD went unmentioned."""
    text = MINIMAL + 'env = { "DSUP_X" = "1", GOOD = "x", "1BAD" = "x", B = true }\n'
    message = _messages(_error(tmp_path, text))["programs.a.env"]
    assert "DSUP_X: names starting with DSUP_ are set by dsup" in message
    assert "'1BAD' is not a valid environment variable name" in message
    assert "B: must be a string" in message
    assert "GOOD" not in message


def test_config_program_named_all_is_refused(tmp_path: Path) -> None:
    """``all`` means every process to commands, so no program may be called so."""
    exc = _error(tmp_path, '[programs.all]\ncommand = ["true"]\n')
    assert "reserved" in _messages(exc)["programs.all"]


def test_config_token_in_program_env_is_allowed(tmp_path: Path) -> None:
    """A worker may need its own secret; it is not the bridge's token and is not echoed."""
    spec = _program(tmp_path, f'env = {{ WORKER_TOKEN = "{TOKEN}" }}')
    assert spec.env["WORKER_TOKEN"] == TOKEN


# --- unknown keys ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key", "suggestion"),
    [
        ("[programz.a]\n", "programz", "programs"),
        ("[supervisr]\n", "supervisr", "supervisor"),
        ('[supervisor]\nnmae = "x"\n', "supervisor.nmae", "name"),
        ('[supervisor]\nstatedir = "x"\n', "supervisor.statedir", "state_dir"),
        (MINIMAL + 'comand = "x"\n', "programs.a.comand", "command"),
        (MINIMAL + 'restrat = "always"\n', "programs.a.restrat", "restart"),
        (MINIMAL + "stop_timeout = 3\n", "programs.a.stop_timeout", "stop_timeout_seconds"),
        (MINIMAL + 'working_dir = "x"\n', "programs.a.working_dir", "keep_descendants"),
        ("[discord]\nguild = 1\n", "discord.guild", "guild_id"),
        ("[discord]\ntoken_envv = 'X'\n", "discord.token_envv", "token_env"),
        ("[discord.access]\nadmins = []\n", "discord.access.admins", "admin"),
        ("[discord.access]\nviewers = []\n", "discord.access.viewers", "viewer"),
    ],
)
def test_config_unknown_key_has_did_you_mean(
    tmp_path: Path, text: str, key: str, suggestion: str
) -> None:
    message = _messages(_error(tmp_path, text))[key]
    assert message.startswith("unknown key")
    if key != "programs.a.working_dir":
        assert f"did you mean {suggestion!r}?" in message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("zzzz = 1\n", "zzzz"),
        ("[supervisor]\nqqqq = 1\n", "supervisor.qqqq"),
        (MINIMAL + "qqqq = 1\n", "programs.a.qqqq"),
        ("[discord]\nqqqq = 1\n", "discord.qqqq"),
        ("[discord.access]\nqqqq = 1\n", "discord.access.qqqq"),
    ],
)
def test_config_unknown_key_without_close_match(tmp_path: Path, text: str, key: str) -> None:
    assert _messages(_error(tmp_path, text))[key] == "unknown key"


# --- many errors at once --------------------------------------------------------------


def test_config_reports_every_error_at_once(tmp_path: Path) -> None:
    text = """
extra = 1
[supervisor]
name = 5
[programs.web]
command = []
restart = "sometimes"
numprocs = 0
[programs."bad name"]
command = ["true"]
[programs.nocmd]
cwd = "x"
[discord]
guild_id = -1
[discord.access]
admins = [1]
"""
    exc = _error(tmp_path, text)
    assert set(_messages(exc)) == {
        "extra",
        "supervisor.name",
        "programs.web.command",
        "programs.web.restart",
        "programs.web.numprocs",
        "programs.bad name",
        "programs.nocmd.command",
        "discord.guild_id",
        "discord.access.admins",
    }
    lines = str(exc).splitlines()
    assert len(lines) == len(exc.issues)
    assert all(line.startswith(f"{tmp_path / 'dsup.toml'}: ") for line in lines)


def test_config_error_types(tmp_path: Path) -> None:
    exc = _error(tmp_path, "[programs.a]\n")
    assert isinstance(exc, ValueError)
    assert isinstance(exc, SupervisorError)
    assert exc.path == tmp_path / "dsup.toml"


# --- reading files --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('[programs.a]\ncommand = ["true",,]\n', 2),
        ('[supervisor]\nname = "x"\nname = "y"\n', 3),
        ("a = 1\n\n\nb = \n", 4),
        ("[programs.a\n", 1),
        ('[programs.a]\ncommand = "unterminated\n', 2),
    ],
)
def test_config_toml_syntax_error_has_line_number(tmp_path: Path, text: str, line: int) -> None:
    exc = _error(tmp_path, text)
    assert exc.issues[0].key == ""
    assert "not valid TOML" in exc.issues[0].message
    assert f"line {line}" in exc.issues[0].message


def test_config_toml_error_shows_the_line_and_a_hint_for_a_key_set_twice(tmp_path: Path) -> None:
    exc = _error(tmp_path, '[programs.a]\ncommand = ["true"]\ncommand = ["false"]\n')
    message, line, caret = exc.issues[0].message.splitlines()
    assert message.endswith("(at line 3, column 20): is a key set twice?")
    assert line == '  3 | command = ["false"]'
    assert caret.index("^") == len(line)  # tomllib points just past the value


def test_config_toml_error_cuts_a_long_line_around_the_spot(tmp_path: Path) -> None:
    text = '[programs.a]\nenv = { A = "' + "x" * 300 + '" B = 1 }\n'
    exc = _error(tmp_path, text)
    _, line, caret = exc.issues[0].message.splitlines()
    assert len(line) < 120
    assert line.startswith("  2 | …")
    assert line.endswith(" B = 1 }")
    assert line[caret.index("^")] == "B"  # where the comma is missing


def test_config_toml_error_line_is_redacted_and_printable(tmp_path: Path) -> None:
    token = "MTA" + "x" * 21 + ".Gabcde." + "y" * 30
    exc = _error(tmp_path, f'[programs.a]\nenv = {{ T = "{token}",, }}\x01\n')
    assert token not in str(exc)
    assert "<redacted token>" in str(exc)
    assert "\x01" not in str(exc)


def test_config_deeply_nested_toml_is_an_error(tmp_path: Path) -> None:
    exc = _error(tmp_path, "a = " + "[" * 5000)
    assert "not valid TOML" in str(exc)


def test_config_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.toml")
    assert str(info.value) == f"{tmp_path / 'nope.toml'}: no such file"


def test_config_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "dsup.toml"
    path.write_bytes(b'[supervisor]\nname = "caf\xe9"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "not UTF-8" in str(info.value)


def test_config_skips_a_utf8_byte_order_mark(tmp_path: Path) -> None:
    """Windows editors write one; it was "not valid TOML ... line 1, column 1"."""
    path = tmp_path / "dsup.toml"
    path.write_bytes(b"\xef\xbb\xbf" + MINIMAL.encode())
    assert list(load_config(path).programs) == ["a"]


def test_config_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert "cannot read" in str(info.value)
    assert str(tmp_path) in str(info.value)


def test_config_load_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "dsup.toml"
    path.write_text(MINIMAL, encoding="utf-8")
    config = load_config(path)
    assert config.path == path
    assert list(config.programs) == ["a"]


@pytest.mark.parametrize("example", sorted((REPO / "examples").glob("*.toml")), ids=str)
def test_config_examples_are_valid(example: Path) -> None:
    config = load_config(example)
    assert config.programs
    for spec in config.programs.values():
        assert spec.cwd.is_dir(), f"{example}: {spec.name}: cwd {spec.cwd} does not exist"


def test_config_there_are_examples() -> None:
    assert list((REPO / "examples").glob("*.toml"))


# --- DiscordSpec.read_token -----------------------------------------------------------


def test_read_token_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSUP_TEST_TOKEN", f"  {TOKEN}\n")
    assert DiscordSpec(token_env="DSUP_TEST_TOKEN").read_token() == TOKEN


def test_read_token_from_default_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSUP_DISCORD_TOKEN", TOKEN)
    assert DiscordSpec().read_token() == TOKEN


@pytest.mark.parametrize("value", [None, "", "   "])
def test_read_token_env_unset_or_empty(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("DSUP_TEST_TOKEN", raising=False)
    else:
        monkeypatch.setenv("DSUP_TEST_TOKEN", value)
    with pytest.raises(ConfigError) as info:
        DiscordSpec(token_env="DSUP_TEST_TOKEN").read_token()
    assert info.value.issues[0].key == "discord.token_env"
    assert "DSUP_TEST_TOKEN" in str(info.value)


def test_read_token_from_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DSUP_DISCORD_TOKEN", raising=False)
    (tmp_path / "token").write_text(TOKEN + "\n")
    (tmp_path / "token").chmod(0o600)
    (tmp_path / "dsup.toml").write_text('[discord]\ntoken_file = "token"\n')
    discord = load_config(tmp_path / "dsup.toml").discord
    assert discord is not None
    assert discord.read_token() == TOKEN


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "cannot read"),
        (b"", "no bot token"),
        (b"\n  \n", "no bot token"),
        (b"\xff\xfe" + TOKEN.encode(), "not UTF-8"),
    ],
)
def test_read_token_file_errors_do_not_leak(
    tmp_path: Path, content: bytes | None, fragment: str
) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_bytes(content)
        path.chmod(0o600)
    with pytest.raises(ConfigError) as info:
        DiscordSpec(token_env=None, token_file=path).read_token()
    assert fragment in str(info.value)
    assert info.value.issues[0].key == "discord.token_file"
    assert TOKEN not in str(info.value)


def test_read_token_file_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        DiscordSpec(token_env=None, token_file=tmp_path).read_token()
    assert "cannot read" in str(info.value)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[programs."a\\n"]\ncommand = ["true"]\n', "programs.a\n"),
        (MINIMAL + 'env = { "A\\n" = "x" }\n', "programs.a.env"),
        ('[discord]\ntoken_env = "TOKEN\\n"\n', "discord.token_env"),
    ],
)
def test_config_names_with_trailing_newline_are_refused(
    tmp_path: Path, text: str, key: str
) -> None:
    """Regression: ``$`` in the name patterns let a trailing newline through."""
    assert key in _messages(_error(tmp_path, text))


# --- dsup check's look at this machine -------------------------------------------------


@pytest.mark.parametrize(
    ("signame", "does"),
    [
        ("STOP", "SIGSTOP suspends a process and cannot be caught"),
        ("TSTP", "SIGTSTP suspends a process that does not handle it"),
        ("CHLD", "SIGCHLD is ignored by a process that does not handle it"),
        ("WINCH", "SIGWINCH is ignored by a process that does not handle it"),
    ],
)
def test_preflight_warns_of_a_stop_signal_that_cannot_end_a_process(
    tmp_path: Path, signame: str, does: str
) -> None:
    """Such a program always takes the whole timeout, then SIGKILL."""
    line = f'stop_signal = "{signame}"\nstop_timeout_seconds = 7'
    (warning,) = preflight(_program_config(tmp_path, line))
    assert warning == (
        f"programs.a.stop_signal: {does}, so a stop waits stop_timeout_seconds (7 s), "
        "then kills with SIGKILL; use TERM, INT, QUIT or HUP"
    )


@pytest.mark.parametrize("signame", ["TERM", "INT", "QUIT", "HUP", "USR1", "KILL"])
def test_preflight_accepts_a_stop_signal_that_ends_a_process(tmp_path: Path, signame: str) -> None:
    assert preflight(_program_config(tmp_path, f'stop_signal = "{signame}"')) == []


@pytest.mark.parametrize("policy", ["always", "on-failure"])
def test_preflight_warns_of_a_restart_without_a_pause(tmp_path: Path, policy: str) -> None:
    """A program that exits at once was respawned 200 times a second."""
    line = f'restart = "{policy}"\nbackoff_seconds = 0\nstart_seconds = 0'
    (warning,) = preflight(_program_config(tmp_path, line))
    assert warning == (
        "programs.a.backoff_seconds: 0 turns the crash-loop guard off, so "
        f'restart = "{policy}" respawns a process that keeps exiting without a pause, '
        "paced only by start_seconds (0 s); use 0.5 (the default) or more"
    )


@pytest.mark.parametrize(
    "line", ['restart = "never"\nbackoff_seconds = 0', 'restart = "always"\nbackoff_seconds = 0.1']
)
def test_preflight_accepts_a_restart_with_a_pause_or_none(tmp_path: Path, line: str) -> None:
    assert preflight(_program_config(tmp_path, line)) == []


def _program_config(tmp_path: Path, line: str) -> Config:
    return _config(tmp_path, MINIMAL + line + "\n")


# --- docs/config.md stays in step with the code ---------------------------------------

DOCS = (REPO / "docs" / "config.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "key",
    [f.name for f in dataclasses.fields(ProgramSpec) if f.name != "name"]
    + [f.name for f in dataclasses.fields(SupervisorSpec)]
    + [f.name for f in dataclasses.fields(DiscordSpec) if f.name != "access"]
    + [f.name for f in dataclasses.fields(AccessSpec)],
)
def test_docs_config_lists_every_key(key: str) -> None:
    assert f"| `{key}` |" in DOCS


@pytest.mark.parametrize("block", DOCS.split("```toml\n")[1:], ids=lambda b: b.split("\n")[0])
def test_docs_config_examples_are_valid(tmp_path: Path, block: str) -> None:
    _config(tmp_path, block.split("```")[0])


def test_docs_import_section_warns_that_sighup_stops_the_fleet() -> None:
    """supervisord reloads on SIGHUP; a migrated `kill -HUP` would stop dsup."""
    section = DOCS.split("## Importing from supervisord")[1].split("\n## ")[0]
    assert "**SIGHUP stops dsup.**" in section
    assert "`kill -HUP`" in section
    assert "`postrotate`" in section
    assert "with `dsup ctl reload`" in section


def test_state_dir_of_a_config_being_edited(tmp_path: Path) -> None:
    cfg = tmp_path / "dsup.toml"
    cfg.write_text("[supervisor]\nname = 5\n[programs.x]\ncommand = 7\n")
    assert state_dir_of(cfg) == tmp_path.resolve() / ".dsup"
    cfg.write_text('[supervisor]\nstate_dir = "st"\n[programs.x]\ncommand = 7\n')
    assert state_dir_of(cfg) == tmp_path.resolve() / "st"
    cfg.write_text("[supervisor]\nstate_dir = 3\n")
    assert state_dir_of(cfg) is None
    # A BOM once hid the [supervisor] table of a file that does not validate.
    cfg.write_bytes(b'\xef\xbb\xbf[supervisor]\nstate_dir = "st"\n[programs.a]\nbogus = 1 =\n')
    assert state_dir_of(cfg) == tmp_path.resolve() / "st"
