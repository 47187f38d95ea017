"""``dsup import-supervisord``: real-world-shaped supervisord configs to dsup TOML."""

from __future__ import annotations

import configparser
import platform
import signal
import socket
from pathlib import Path

import pytest

from supervisor.config.schema import Config, RestartPolicy, parse_config
from supervisor.config.supervisord.converter import convert_file
from supervisor.config.supervisord.reader import parse_environment, parse_signal, parse_size
from supervisor.config.toml_text import toml_key, toml_str
from supervisor.errors import ConfigError

DATA = Path(__file__).resolve().parents[1] / "data" / "supervisord"
FIXTURES = sorted(DATA.glob("*/supervisord.conf"))
# Options the importer carries over (or folds into names) instead of commenting on.
CARRIED = {
    "command",
    "directory",
    "environment",
    "autostart",
    "autorestart",
    "startsecs",
    "startretries",
    "stopsignal",
    "stopwaitsecs",
    "numprocs",
    "stdout_logfile_maxbytes",
    "stdout_logfile_backups",
}


def _convert(tmp_path: Path, text: str, name: str = "supervisord.conf") -> tuple[str, Config]:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    out = convert_file(path)
    return out, parse_config(out, tmp_path / "dsup.toml")


def _error(tmp_path: Path, text: str) -> ConfigError:
    path = tmp_path / "supervisord.conf"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        convert_file(path)
    assert info.value.issues
    return info.value


@pytest.fixture
def flower_auth(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("FLOWER_AUTH", "ops:pw")
    return "ops:pw"


# --- the fixtures ---------------------------------------------------------------------


def test_import_there_are_three_fixtures() -> None:
    assert len(FIXTURES) >= 3


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.parent.name)
def test_import_fixture_output_passes_check(fixture: Path, flower_auth: str) -> None:
    out = convert_file(fixture)
    config = parse_config(out, fixture.parent / "dsup.toml")
    assert config.programs


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.parent.name)
def test_import_every_dropped_option_gets_a_comment(fixture: Path, flower_auth: str) -> None:
    out = convert_file(fixture)
    for conf in [fixture, *fixture.parent.glob("*/*.conf"), *fixture.parent.glob("*/*.ini")]:
        parser = configparser.RawConfigParser(inline_comment_prefixes=(";", "#"))
        parser.read(conf)
        for section in parser.sections():
            if section in ("include", "supervisord") or section.startswith("group:"):
                continue
            for key in parser.options(section):
                if section.startswith("program:") and key in CARRIED:
                    continue
                if section.startswith("program:") and key in ("process_name", "numprocs_start"):
                    continue  # folded into the names; checked per fixture below
                label = key if section.startswith("program:") else f"[{section}] {key}"
                assert f"# not carried over: {label} = " in out, (conf, section, key)


def test_import_django_with_groups_and_includes(flower_auth: str) -> None:
    fixture = DATA / "django" / "supervisord.conf"
    out = convert_file(fixture)
    config = parse_config(out, fixture.parent / "dsup.toml")
    conf_d = fixture.parent / "conf.d"
    assert list(config.programs) == ["gunicorn", "celeryworker", "celerybeat", "flower"]
    gunicorn = config.programs["gunicorn"]
    assert gunicorn.command[0] == f"{conf_d}/../venv/bin/gunicorn"
    assert gunicorn.command[1:3] == ("myproject.wsgi:application", "--bind")
    assert gunicorn.cwd == conf_d / "../src"
    assert gunicorn.restart is RestartPolicy.ALWAYS
    assert dict(gunicorn.env) == {
        "LANG": "en_US.UTF-8",
        "LC_ALL": "en_US.UTF-8",
        "DJANGO_SETTINGS_MODULE": "myproject.settings.production",
        "PYTHONPATH": f"{conf_d}/../src",
    }
    worker = config.programs["celeryworker"]
    assert worker.command[-1] == f"celeryworker@{platform.node()}"
    assert "default,emails" in worker.command
    assert worker.env["CELERY_QUEUES"] == "default,emails"
    assert worker.env["GROUP"] == "myproject"
    assert (worker.start_seconds, worker.stop_timeout_seconds) == (10.0, 600.0)
    beat = config.programs["celerybeat"]
    assert beat.command[-2:] == ("--schedule", "/var/lib/myproject/celerybeat-schedule")
    flower = config.programs["flower"]  # from an include of an include
    assert flower.command[0] == f"{fixture.parent}/extra/../venv/bin/celery"
    assert f"--basic_auth={flower_auth}" in flower.command
    assert flower.autostart is False
    assert (flower.log_max_bytes, flower.log_backups) == (10 * 1024 * 1024, 3)
    assert "group 'myproject': programs gunicorn, celeryworker, celerybeat" in out
    assert "# not carried over: user = www-data" in out


def test_import_pool_with_numprocs_and_per_process_options() -> None:
    fixture = DATA / "pool" / "supervisord.conf"
    out = convert_file(fixture)
    config = parse_config(out, fixture.parent / "dsup.toml")
    pool = config.programs["queue-worker"]
    assert pool.numprocs == 8
    assert pool.stop_timeout_seconds == 3600.0
    assert dict(pool.env) == {"QUEUE_CONNECTION": "redis", "APP_ENV": "production"}
    assert "# not carried over: process_name = %(program_name)s_%(process_num)02d" in out
    api = [config.programs[f"api_0{n}"] for n in (1, 2, 3)]
    assert [p.command[1] for p in api] == ["--port=8001", "--port=8002", "--port=8003"]
    assert [p.env["WORKER_ID"] for p in api] == ["1", "2", "3"]
    assert {p.env["CONFIG"] for p in api} == {"/etc/api/api.yaml"}
    assert all(p.numprocs == 1 for p in api)
    assert {(p.log_max_bytes, p.log_backups, p.start_retries) for p in api} == {
        (50 * 1024 * 1024, 20, 11)  # startretries=10: 10 retries, 11 failed starts
    }
    assert {p.stop_signal for p in api} == {signal.SIGQUIT}
    assert "one dsup program per process: api_01, api_02, api_03" in out


def test_import_legacy_with_odd_options() -> None:
    fixture = DATA / "legacy" / "supervisord.conf"
    out = convert_file(fixture)
    config = parse_config(out, fixture.parent / "dsup.toml")
    assert config.supervisor.name == "legacy-box"
    assert "s3cret" not in out
    cron = config.programs["legacy_cron"]
    assert cron.restart is RestartPolicy.ON_FAILURE
    assert cron.start_seconds == 0.0
    assert cron.stop_signal is signal.SIGINT
    assert cron.stop_timeout_seconds == 10.0  # stopwaitsecs=0 is refused by dsup: default
    assert "# not carried over: stopwaitsecs = 0 (dsup: stop_timeout_seconds must be > 0" in out
    assert "# not carried over: stdout_logfile_maxbytes = 1KB (dsup: log_max_bytes" in out
    assert "# not carried over: exitcodes = 0,2 (dsup counts only exit code 0" in out
    assert cron.env["GREETING"] == "hello, world"
    assert cron.env["TZ"] == "Europe/Berlin"  # the program's own value wins
    worker = config.programs["legacy_worker"]
    assert worker.command == ("/opt/legacy/worker", "--load", "100%", "--tag", 'a "quoted" tag')
    assert worker.cwd == fixture.parent / "relative" / "dir"
    assert worker.stop_signal is signal.SIGHUP
    assert (worker.autostart, worker.restart) == (True, RestartPolicy.NEVER)
    assert (worker.log_max_bytes, worker.log_backups) == (2**30, 0)
    assert worker.env["TZ"] == "UTC"  # from [supervisord] environment
    assert "# renamed from 'legacy worker'" in out
    report = config.programs["report.daily"]
    assert report.stop_signal is signal.SIGKILL
    assert report.command == ("/bin/sh", "-c", "exec /opt/report/run.sh >> /tmp/report.log 2>&1")
    assert "exitcodes = 0 " not in out  # exitcodes=0 is what dsup does anyway
    assert "[eventlistener:crashmail] command = crashmail" in out
    assert list(config.programs) == ["legacy_cron", "legacy_worker", "report.daily"]


# --- options, one by one --------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "restart"),
    [
        ("true", RestartPolicy.ALWAYS),
        ("yes", RestartPolicy.ALWAYS),
        ("false", RestartPolicy.NEVER),
        ("0", RestartPolicy.NEVER),
        ("unexpected", RestartPolicy.ON_FAILURE),
        ("Unexpected", RestartPolicy.ON_FAILURE),
    ],
)
def test_import_autorestart(tmp_path: Path, value: str, restart: RestartPolicy) -> None:
    _, config = _convert(tmp_path, f"[program:a]\ncommand=/bin/cat\nautorestart={value}\n")
    assert config.programs["a"].restart is restart


def test_import_defaults_match_supervisord(tmp_path: Path) -> None:
    out, config = _convert(tmp_path, "[program:a]\ncommand=/bin/cat\n")
    spec = config.programs["a"]
    assert spec.restart is RestartPolicy.ON_FAILURE  # supervisord: unexpected
    assert (spec.autostart, spec.start_seconds) == (True, 1.0)
    assert spec.start_retries == 4  # supervisord: 3 retries after the first failed start
    assert (spec.stop_signal, spec.stop_timeout_seconds) == (signal.SIGTERM, 10.0)
    assert "# not carried over:" not in out


@pytest.mark.parametrize(
    ("value", "name"),
    [("TERM", "SIGTERM"), ("SIGTERM", "SIGTERM"), ("term", "SIGTERM"), ("9", "SIGKILL")],
)
def test_import_stopsignal(tmp_path: Path, value: str, name: str) -> None:
    _, config = _convert(tmp_path, f"[program:a]\ncommand=/bin/cat\nstopsignal={value}\n")
    assert config.programs["a"].stop_signal.name == name


def test_import_unknown_stopsignal_becomes_a_comment(tmp_path: Path) -> None:
    out, config = _convert(tmp_path, "[program:a]\ncommand=/bin/cat\nstopsignal=BOGUS\n")
    assert config.programs["a"].stop_signal is signal.SIGTERM
    assert "# not carried over: stopsignal = BOGUS (dsup: stop_signal must be a signal" in out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1024", 1024),
        ("1KB", 1024),
        ("10kb", 10 * 1024),
        ("50MB", 50 * 1024**2),
        (" 2gb ", 2 * 1024**3),
        ("0", 0),
    ],
)
def test_import_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["1.5MB", "MB", "abc", "10TB", ""])
def test_import_parse_size_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="byte size"):
        parse_size(text)


@pytest.mark.parametrize(("text", "name"), [("QUIT", "QUIT"), ("sigusr1", "USR1"), ("15", "TERM")])
def test_import_parse_signal(text: str, name: str) -> None:
    assert parse_signal(text) == name


@pytest.mark.parametrize(
    ("text", "env"),
    [
        ("A=1,B=2", {"A": "1", "B": "2"}),
        ('A="x,y",B=z', {"A": "x,y", "B": "z"}),
        ("A='a b', B = c ", {"A": "a b", "B": "c"}),
        ('A=" padded "', {"A": " padded "}),
        ("A=1,\n B=2", {"A": "1", "B": "2"}),
        ("A=1\nB=2", {"A": "1", "B": "2"}),
        ("PATH=/usr/bin:/bin,EMPTY=", {"PATH": "/usr/bin:/bin", "EMPTY": ""}),
        ('URL="http://h/?a=1&b=2"', {"URL": "http://h/?a=1&b=2"}),
        ("A=\"x\"y'z'", {"A": "xyz"}),
        ("", {}),
        (",,", {}),
    ],
)
def test_import_parse_environment(text: str, env: dict[str, str]) -> None:
    assert parse_environment(text) == env


@pytest.mark.parametrize("text", ["A", "=1", 'A="x', "A B=1", "A=1,B"])
def test_import_parse_environment_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=r"KEY=value|unclosed quote"):
        parse_environment(text)


def test_import_global_environment_is_merged_under_the_program_one(tmp_path: Path) -> None:
    text = (
        "[supervisord]\nenvironment=A=global,B=global\n"
        "[program:a]\ncommand=/bin/cat\nenvironment=B=mine\n"
    )
    _, config = _convert(tmp_path, text)
    assert dict(config.programs["a"].env) == {"A": "global", "B": "mine"}


def test_import_expansions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSUP_IMPORT_TEST", "from-env")
    text = (
        "[program:a]\n"
        "command=/bin/echo %(here)s %(program_name)s %(group_name)s %(host_node_name)s"
        " %(ENV_DSUP_IMPORT_TEST)s %(process_num)d %(numprocs)d 100%%\n"
    )
    _, config = _convert(tmp_path, text)
    assert config.programs["a"].command[1:] == (
        str(tmp_path),
        "a",
        "a",
        platform.node(),
        "from-env",
        "0",
        "1",
        "100%",
    )


def test_import_numprocs_without_per_process_differences(tmp_path: Path) -> None:
    text = (
        "[program:w]\ncommand=/bin/cat\nnumprocs=4\nnumprocs_start=10\n"
        "process_name=%(program_name)s-%(process_num)d\n"
    )
    out, config = _convert(tmp_path, text)
    assert config.programs["w"].numprocs == 4
    assert "# not carried over: numprocs_start = 10" in out


def test_import_group_comment_names_the_programs_its_members_became(tmp_path: Path) -> None:
    """The comment said "programs web, pct" though web became web_00 and web_01."""
    text = (
        "[group:grp]\nprograms=web,legacy worker,pct\n"
        "[program:web]\ncommand=/bin/serve --port=80%(process_num)02d\n"
        "process_name=web_%(process_num)02d\nnumprocs=2\n"
        "[program:legacy worker]\ncommand=/bin/cat\n"
        "[program:pct]\ncommand=/bin/cat\n"
    )
    out, config = _convert(tmp_path, text)
    assert set(config.programs) == {"web_00", "web_01", "legacy_worker", "pct"}
    assert (
        "# group 'grp': programs web_00, web_01 (from web), legacy_worker (from legacy worker),"
        " pct;" in out
    )


def test_import_single_process_name_is_not_a_loss(tmp_path: Path) -> None:
    text = "[program:w]\ncommand=/bin/cat\nprocess_name=%(program_name)s\nnumprocs=1\n"
    out, config = _convert(tmp_path, text)
    assert config.programs["w"].numprocs == 1
    assert "# not carried over:" not in out


def test_import_here_is_the_directory_of_the_included_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.conf").write_text("[program:a]\ncommand=%(here)s/run\n")
    _, config = _convert(tmp_path, "[include]\nfiles = sub/*.conf\n")
    assert config.programs["a"].command == (f"{tmp_path}/sub/run",)


def test_import_include_cycle_ends(tmp_path: Path) -> None:
    (tmp_path / "b.conf").write_text("[program:b]\ncommand=/bin/b\n[include]\nfiles=main.conf\n")
    text = "[program:a]\ncommand=/bin/a\n[include]\nfiles=b.conf\n"
    _, config = _convert(tmp_path, text, name="main.conf")
    assert sorted(config.programs) == ["a", "b"]


def test_import_include_glob_matching_nothing_is_fine(tmp_path: Path) -> None:
    _, config = _convert(tmp_path, "[include]\nfiles = conf.d/*.conf\n")
    assert dict(config.programs) == {}


def test_import_numprocs_limit_is_an_error(tmp_path: Path) -> None:
    text = "[program:a]\ncommand=/bin/cat\nnumprocs=5000\nprocess_name=a%(process_num)d\n"
    exc = _error(tmp_path, text)
    assert "between 1 and 1000" in str(exc)


def test_import_env_refused_by_dsup_becomes_a_comment(tmp_path: Path) -> None:
    out, config = _convert(tmp_path, "[program:a]\ncommand=/bin/cat\nenvironment=A.B=1\n")
    assert dict(config.programs["a"].env) == {}
    assert "# not carried over: environment = " in out


@pytest.mark.parametrize("identifier", ["", "   "])
def test_import_identifier_refused_by_dsup_becomes_a_comment(
    tmp_path: Path, identifier: str
) -> None:
    """Found by test_import_random_ini_is_toml_or_error: an empty identifier."""
    text = f"[supervisord]\nidentifier={identifier}\n[program:a]\ncommand=/bin/cat\n"
    out, config = _convert(tmp_path, text)
    assert config.supervisor.name == socket.gethostname()
    assert "# not carried over: [supervisord] identifier = " in out
    assert "(dsup: name must be a non-empty string" in out


def test_import_identifier_becomes_the_node_name(tmp_path: Path) -> None:
    text = "[supervisord]\nidentifier=node-7\n[program:a]\ncommand=/bin/cat\n"
    assert _convert(tmp_path, text)[1].supervisor.name == "node-7"


def test_import_names_that_collide_are_an_error(tmp_path: Path) -> None:
    exc = _error(tmp_path, "[program:a b]\ncommand=/bin/a\n[program:a_b]\ncommand=/bin/b\n")
    assert "becomes dsup program 'a_b'" in str(exc)


@pytest.mark.parametrize(
    "text",
    ['a"b', "a\\b", "tab\there", "new\nline", "bell\x07", "del\x7f", "é ✓ 🐍", "'"],
)
def test_toml_str_round_trips(tmp_path: Path, text: str) -> None:
    import tomllib

    assert tomllib.loads(f"{toml_key(text)} = {toml_str(text)}") == {text: text}


# --- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ("[program:a]\nautostart=true\n", "program:a.command", "required"),
        ("[program:a]\ncommand=/bin/a\nstartsecs=abc\n", "program:a.startsecs", "whole number"),
        ("[program:a]\ncommand=/bin/a\nnumprocs=x\n", "program:a.numprocs", "whole number"),
        ("[program:a]\ncommand=/bin/a\nautostart=maybe\n", "program:a.autostart", "yes, true"),
        ("[program:a]\ncommand=/bin/a\nautorestart=maybe\n", "program:a.autorestart", "unexpected"),
        ("[program:a]\ncommand=/bin/a\nstopsignal=99999\n", "program:a.stopsignal", "signal"),
        (
            "[program:a]\ncommand=/bin/a\nstdout_logfile_maxbytes=lots\n",
            "program:a.stdout_logfile_maxbytes",
            "byte size",
        ),
        ("[program:a]\ncommand=echo 'x\n", "program:a.command", "cannot split"),
        ("[program:a]\ncommand=\n", "program:a.command", "empty"),
        ("[program:a]\ncommand=/bin/a\nenvironment=A\n", "program:a.environment", "KEY=value"),
        ("[program:a]\ncommand=/bin/a %(nope)s\n", "program:a.command", "%(nope)s"),
        ("[program:a]\ncommand=/bin/a %(ENV_DSUP_UNSET_X)s\n", "program:a.command", "not set"),
        ("[program:a]\ncommand=date +%s\n", "program:a.command", "%%"),
        ("[program:a]\ncommand=/bin/a\nnumprocs=2\n", "program:a.process_name", "process_num"),
        ("[include]\n", "include.files", "required"),
        ("[include]\nfiles=missing.conf\n", "include.files", "no such file"),
        ("[group:g]\nprograms=ghost\n", "group:g.programs", "ghost"),
        ("[supervisord]\nenvironment=A\n", "supervisord.environment", "KEY=value"),
        ("command=/bin/a\n", "", "line 1"),
        ("[program:a]\ncommand=/bin/a\n  ^^^ junk\n=x\n", "", "line 4"),
    ],
)
def test_import_errors_name_file_section_and_key(
    tmp_path: Path, text: str, key: str, fragment: str
) -> None:
    exc = _error(tmp_path, text)
    assert exc.path == tmp_path / "supervisord.conf"
    if key:
        assert exc.issues[0].key == key
    assert fragment in str(exc)


def test_import_error_in_an_included_file_names_that_file(tmp_path: Path) -> None:
    (tmp_path / "web.conf").write_text("[program:web]\ncommand=/bin/web\nstartretries=many\n")
    exc = _error(tmp_path, "[include]\nfiles=web.conf\n")
    assert exc.path == tmp_path / "web.conf"
    assert exc.issues[0].key == "program:web.startretries"


def test_import_duplicate_program_across_files_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "b.conf").write_text("[program:a]\ncommand=/bin/b\n")
    exc = _error(tmp_path, "[program:a]\ncommand=/bin/a\n[include]\nfiles=b.conf\n")
    assert "also defined in" in str(exc)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[program:a]\ncommand=/bin/a\n[program:a]\nstartsecs=3\n", "program:a"),
        ("[program:a]\ncommand=/bin/a\ncommand=/bin/b\n", "program:a.command"),
    ],
)
def test_import_duplicate_in_one_file_is_an_error(tmp_path: Path, text: str, key: str) -> None:
    """supervisord refuses these too; merging them silently lost a command."""
    exc = _error(tmp_path, text)
    assert exc.issues[0].key == key
    assert "line 3" in exc.issues[0].message


def test_import_reports_every_mistake_of_one_program_at_once(tmp_path: Path) -> None:
    exc = _error(
        tmp_path,
        "[program:a]\ncommand=/bin/a %(nope)s\nstartsecs=soon\n"
        "autorestart=sometimes\ndirectory=%(also_nope)s\n",
    )
    keys = [issue.key for issue in exc.issues]
    assert keys == [  # expansions first, then the values of what expanded
        "program:a.command",
        "program:a.directory",
        "program:a.startsecs",
        "program:a.autorestart",
    ]
    exc = _error(tmp_path, "[program:a]\ncommand=/bin/a\nstartsecs=soon\nautorestart=sometimes\n")
    keys = [issue.key for issue in exc.issues]
    assert keys == ["program:a.startsecs", "program:a.autorestart"]


@pytest.mark.parametrize(
    ("text", "keys"),
    [
        ("[program:a]\nstartsecs=soon\n", ["program:a.command", "program:a.startsecs"]),
        (
            "[program:a]\ncommand=run %(nope)s\nnumprocs=2\n",
            ["program:a.process_name", "program:a.command"],
        ),
        (
            "[program:a]\npriority=high\nnumprocs=0\nautostart=maybe\n",
            [
                "program:a.priority",
                "program:a.command",
                "program:a.numprocs",
                "program:a.autostart",
            ],
        ),
    ],
)
def test_import_a_section_s_mistakes_do_not_hide_each_other(
    tmp_path: Path, text: str, keys: list[str]
) -> None:
    """A missing command hid a bad startsecs; a process_name error hid a bad expansion."""
    assert [issue.key for issue in _error(tmp_path, text).issues] == keys


def test_import_reports_the_mistakes_of_every_program_at_once(tmp_path: Path) -> None:
    """As dsup check does, not only the first one."""
    (tmp_path / "more.conf").write_text("[program:c]\ncommand=/bin/c\nnumprocs=0\n")
    exc = _error(
        tmp_path,
        "[program:a]\nstartsecs=3\n"
        "[program:b]\ncommand=/bin/b\nstartretries=many\n"
        "[program:ok]\ncommand=/bin/ok\n"
        "[include]\nfiles=more.conf\n",
    )
    assert exc.path == tmp_path / "supervisord.conf"
    keys = [issue.key for issue in exc.issues]
    assert keys == [
        "program:a.command",
        "program:b.startretries",
        f"({tmp_path / 'more.conf'}) program:c.numprocs",
    ]


def test_import_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        convert_file(tmp_path / "nope.conf")


def test_import_non_utf8_file(tmp_path: Path) -> None:
    (tmp_path / "s.conf").write_bytes(b"[program:a]\ncommand=/bin/caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        convert_file(tmp_path / "s.conf")


def test_import_skips_a_utf8_byte_order_mark(tmp_path: Path) -> None:
    """A BOM hid the first section header, of the main file or an included one."""
    (tmp_path / "b.conf").write_bytes(b"\xef\xbb\xbf[program:b]\ncommand=/bin/b\n")
    text = "\ufeff[include]\nfiles = b.conf\n[program:a]\ncommand=/bin/a\n"
    _, config = _convert(tmp_path, text)
    assert sorted(config.programs) == ["a", "b"]


def test_import_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        convert_file(tmp_path)


def test_import_comments_promise_only_what_dsup_does(tmp_path: Path) -> None:
    """They said "one log per process" (there are two) and worker_sdk (not built then)."""
    out, _ = _convert(
        tmp_path,
        "[program:a]\ncommand=/bin/a\nredirect_stderr=true\nstderr_logfile_maxbytes=1MB\n"
        "serverurl=AUTO\n",
    )
    assert "one log per process" not in out
    assert "NAME-N.out.log and NAME-N.err.log" in out
    assert "worker_sdk" not in out
    assert "no XML-RPC interface" in out
