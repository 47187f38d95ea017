"""The ``dsup`` command line: check, import-supervisord, --version, --help, exit codes.

The CLI runs as a real subprocess (``python -m supervisor``) so exit codes and the
absence of tracebacks are what a user sees.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from supervisor import __version__
from supervisor.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, main
from supervisor.config.schema import parse_config

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data" / "supervisord"
TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789AB"


@dataclass(frozen=True, slots=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


def dsup(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> Result:
    """Run ``python -m supervisor ARGS`` and return what it printed."""
    proc = subprocess.run(
        [sys.executable, "-m", "supervisor", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd or REPO,
        env={**os.environ, **(env or {})},
        timeout=30,
        check=False,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stdout, proc.stdout
    return Result(proc.returncode, proc.stdout, proc.stderr)


def dsup_on_file(command: str, path: Path, content: str | bytes | None) -> Result:
    """Run ``dsup COMMAND PATH`` where PATH holds ``content`` (None: no such file)."""
    if content is not None:
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return dsup(command, path)


# --- dsup check -----------------------------------------------------------------------


@pytest.mark.parametrize("example", sorted((REPO / "examples").glob("*.toml")), ids=str)
def test_cli_check_passes_on_every_example(example: Path) -> None:
    result = dsup("check", example)
    assert result.returncode == EXIT_OK, result.stderr
    assert result.stdout.count("\n") == 1
    assert ": ok: " in result.stdout
    assert result.stderr == ""


def test_cli_check_warns_of_what_would_fail_to_spawn_here(tmp_path: Path) -> None:
    """A missing executable or cwd is valid config but fails at run time."""
    (tmp_path / "not_exec.sh").write_text("echo hi\n")
    config = (
        '[programs.a]\ncommand = ["dsup-test-no-such-program"]\n'
        '[programs.b]\ncommand = ["./not_exec.sh"]\n'
        '[programs.c]\ncommand = ["true"]\ncwd = "no_such_dir"\n'
        '[programs.d]\ncommand = ["true"]\n'
        '[programs.e]\ncommand = ["dsup-test-no-such-program"]\ncwd = "no_such_dir"\n'
        '[programs.f]\ncommand = ["./not_exec.sh"]\ncwd = "no_such_dir"\n'
    )
    path = tmp_path / "dsup.toml"
    lenient = dsup_on_file("check", path, config)
    assert lenient.returncode == EXIT_OK
    assert ": ok: " in lenient.stdout
    warned = [line.split(": ")[3] for line in lenient.stderr.splitlines()]
    assert warned == [
        "programs.a.command",
        "programs.b.command",
        "programs.c.cwd",
        "programs.e.cwd",  # a missing cwd does not hide a missing executable
        "programs.e.command",
        "programs.f.cwd",  # ./not_exec.sh cannot be looked at without its cwd
    ]

    strict = dsup("check", "--strict", path)
    assert strict.returncode == EXIT_USAGE
    assert strict.stdout == ""
    assert strict.stderr == lenient.stderr.replace("dsup: warning:", "dsup: error:")


def test_cli_check_defaults_to_dsup_toml_in_the_working_dir(tmp_path: Path) -> None:
    (tmp_path / "dsup.toml").write_text('[programs.a]\ncommand = ["true"]\n')
    result = dsup("check", cwd=tmp_path)
    assert result.returncode == EXIT_OK
    assert result.stdout.startswith("dsup.toml: ok: ")


def test_cli_check_reports_every_error_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "dsup.toml"
    path.write_text('[programs.a]\nrestart = "sometimes"\nnumprocs = 0\n[discord]\nguil = 1\n')
    result = dsup("check", path)
    assert result.returncode == EXIT_USAGE
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == "dsup: config error"
    assert sorted(line.split(": ")[1] for line in lines[1:]) == [
        "discord.guil",
        "programs.a.command",
        "programs.a.numprocs",
        "programs.a.restart",
    ]
    assert "did you mean 'guild_id'?" in result.stderr


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "no such file"),
        (b"[programs.a\n", "line 1"),
        (b'name = "caf\xe9"\n', "not UTF-8"),
        (b"a = " + b"[" * 5000, "nested too deeply"),
    ],
)
def test_cli_check_file_problems_exit_2(
    tmp_path: Path, content: bytes | None, fragment: str
) -> None:
    result = dsup_on_file("check", tmp_path / "dsup.toml", content)
    assert result.returncode == EXIT_USAGE
    assert fragment in result.stderr


def test_cli_check_on_a_directory_exits_2(tmp_path: Path) -> None:
    result = dsup("check", tmp_path)
    assert result.returncode == EXIT_USAGE
    assert "cannot read" in result.stderr


def test_cli_check_never_prints_a_token(tmp_path: Path) -> None:
    path = tmp_path / "dsup.toml"
    path.write_text(f'[discord]\ntoken = "{TOKEN}"\nguild_id = "{TOKEN}"\n')
    result = dsup("check", path)
    assert result.returncode == EXIT_USAGE
    assert "literal token" in result.stderr
    assert TOKEN not in result.stderr + result.stdout


# --- --version, --help, usage ---------------------------------------------------------


def test_cli_version() -> None:
    result = dsup("--version")
    assert result.returncode == EXIT_OK
    assert result.stdout.strip() == f"dsup {__version__}"


def test_cli_help_lists_commands_and_examples() -> None:
    result = dsup("--help")
    assert result.returncode == EXIT_OK
    for word in ("run", "check", "import-supervisord", "examples:", "dsup check examples/"):
        assert word in result.stdout


@pytest.mark.parametrize("command", ["check", "run", "import-supervisord"])
def test_cli_subcommand_help(command: str) -> None:
    result = dsup(command, "--help")
    assert result.returncode == EXIT_OK
    assert f"dsup {command}" in result.stdout


@pytest.mark.parametrize(
    "args", [(), ("frobnicate",), ("check", "a", "b"), ("import-supervisord",), ("--nope",)]
)
def test_cli_usage_errors_exit_2(args: tuple[str, ...]) -> None:
    result = dsup(*args)
    assert result.returncode == EXIT_USAGE
    assert "usage: dsup" in result.stderr


# --- dsup import-supervisord ----------------------------------------------------------


@pytest.mark.parametrize(
    "fixture", sorted(DATA.glob("*/supervisord.conf")), ids=lambda p: p.parent.name
)
def test_cli_import_output_passes_check(fixture: Path, tmp_path: Path) -> None:
    result = dsup("import-supervisord", fixture, env={"FLOWER_AUTH": "ops:pw"})
    assert result.returncode == EXIT_OK, result.stderr
    assert result.stderr == ""
    parse_config(result.stdout, tmp_path / "dsup.toml")
    (tmp_path / "dsup.toml").write_text(result.stdout)
    check = dsup("check", tmp_path / "dsup.toml")
    assert check.returncode == EXIT_OK, check.stderr


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        (None, ["no such file"]),
        ("[program:web]\ncommand=/bin/web\nstartsecs=soon\n", ["program:web.startsecs", "soon"]),
        ("[program:web]\nautostart=true\n", ["program:web.command", "required"]),
        ("[include]\nfiles=conf.d/web.conf\n", ["include.files", "conf.d/web.conf"]),
        ("command=/bin/x\n", ["line 1"]),
    ],
)
def test_cli_import_errors_exit_2_naming_file_and_key(
    tmp_path: Path, content: str | None, fragments: list[str]
) -> None:
    path = tmp_path / "supervisord.conf"
    result = dsup_on_file("import-supervisord", path, content)
    assert result.returncode == EXIT_USAGE
    assert result.stdout == ""
    assert str(path) in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


# --- in process, for the exit codes of main() -----------------------------------------


def test_cli_main_returns_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[programs.a]\ncommand = ["true"]\n')
    assert main(["check", str(good)]) == EXIT_OK
    assert main(["check", str(tmp_path / "missing.toml")]) == EXIT_USAGE
    out = capsys.readouterr()
    assert "ok" in out.out
    assert "no such file" in out.err


def test_cli_run_with_a_bad_config_exits_2_before_starting(tmp_path: Path) -> None:
    path = tmp_path / "dsup.toml"
    path.write_text('[programs.a]\ncommand = ["true"]\nrestart = "sometimes"\n')
    for target in (path, tmp_path / "missing.toml"):
        result = dsup("run", target)
        assert result.returncode == EXIT_USAGE
        assert result.stderr.startswith("dsup: config error")


def test_cli_run_that_cannot_make_its_socket_says_why_in_one_message(tmp_path: Path) -> None:
    """A failure deep in dsup run's task groups is one message and exit 1, no traceback."""
    path = tmp_path / "dsup.toml"
    path.write_text('[supervisor]\nstate_dir = "state"\n[programs.a]\ncommand = ["sleep", "60"]\n')
    (tmp_path / "state").mkdir(mode=0o700)
    (tmp_path / "state" / "control.sock").write_text("someone else's file")
    result = dsup("run", "--quiet", path)  # dsup() fails on a traceback
    assert result.returncode == EXIT_FAILURE
    assert result.stderr.startswith("dsup: state_dir"), result.stderr
    assert "control.sock, not a socket" in result.stderr, result.stderr
