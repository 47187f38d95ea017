"""``dsup import-supervisord``: a ``supervisord.conf`` turned into dsup TOML.

Each converted program is checked by dsup's own config reader; what dsup does not take becomes
a ``# not carried over`` comment, so nothing is dropped silently.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from supervisor.config.schema import MAX_NUMPROCS, parse_config
from supervisor.config.supervisord.reader import (
    Section,
    base_expansions,
    combined_error,
    env_pairs,
    expand,
    expand_options,
    parse_bool,
    parse_command,
    parse_int,
    parse_signal,
    parse_size,
    read_tree,
    section_int,
)
from supervisor.config.toml_text import toml_comment, toml_key, toml_str, toml_value
from supervisor.errors import ConfigError, ConfigIssue

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

# Why each supervisord program option has no dsup equivalent.
_DROPPED = {
    "priority": "dsup starts programs in file order; this file lists them by priority",
    "user": "dsup runs every child as its own user; run dsup as that user",
    "umask": "children inherit dsup's umask",
    "stopasgroup": "dsup always signals the whole process tree",
    "killasgroup": "dsup always kills the whole process tree",
    "redirect_stderr": "dsup keeps stderr apart: NAME-N.out.log and NAME-N.err.log",
    "stdout_logfile": "dsup writes each process's two logs under state_dir/logs",
    "stderr_logfile": "dsup writes each process's two logs under state_dir/logs",
    "stderr_logfile_maxbytes": "dsup rotates the stderr log as the stdout one: log_max_bytes",
    "stderr_logfile_backups": "dsup rotates the stderr log as the stdout one: log_backups",
    "stdout_capture_maxbytes": "dsup has no capture mode; see relay",
    "stderr_capture_maxbytes": "dsup has no capture mode; see relay",
    "stdout_events_enabled": "dsup has no event listeners; see relay",
    "stderr_events_enabled": "dsup has no event listeners; see relay",
    "stdout_syslog": "dsup does not write to syslog",
    "stderr_syslog": "dsup does not write to syslog",
    "serverurl": "dsup has no XML-RPC interface for workers to call",
    "exitcodes": "dsup counts only exit code 0 as success",
    "process_name": "dsup names the processes NAME:0 ... NAME:N-1",
    "numprocs_start": "dsup numbers the processes from 0",
}
_SECTION_DROPPED = {
    "supervisord": "dsup runs in the foreground; its own settings live in [supervisor]",
    "unix_http_server": "`dsup ctl` uses a control socket in state_dir",
    "inet_http_server": "`dsup ctl` uses a control socket in state_dir",
    "supervisorctl": "`dsup ctl` uses a control socket in state_dir",
    "rpcinterface": "dsup has no XML-RPC interface",
    "eventlistener": "dsup has no event listeners",
    "fcgi-program": "dsup does not manage FastCGI sockets",
}


def convert_file(path: Path) -> str:
    """Read a supervisord config (and its includes) and return dsup TOML text.

    Raises:
        ConfigError: the file or an include is missing or unreadable, or a
            section holds a value supervisord itself would reject.
    """
    return _Converter(Path(path).absolute(), read_tree(path)).run()


@dataclass(slots=True)
class _Program:
    """One dsup program being built: values in output order, env, comments."""

    name: str
    section: Section
    values: dict[str, object] = field(default_factory=dict)
    sources: dict[str, tuple[str, str]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def origin(self) -> str:
        """Where it came from, for comments and errors."""
        return f"{self.section.file} [{self.section.name}]"

    def drop(self, key: str, value: str, why: str) -> None:
        self.notes.append(_not_carried(key, value, why))


def _not_carried(key: str, value: str, why: str) -> str:
    shown = "<redacted>" if "password" in key else " ".join(value.split())
    return f"# not carried over: {key} = {shown} ({why})"


class _Converter:
    """Turns the sections of one supervisord tree into dsup TOML text."""

    def __init__(self, main: Path, sections: list[Section]) -> None:
        self.main = main
        self.sections = sections
        self.header: list[str] = []
        self.groups: dict[str, str] = {}  # program -> its group
        self.members: dict[str, list[str]] = {}  # group -> its programs
        self.global_env: dict[str, str] = {}
        self.name: str | None = None

    def run(self) -> str:
        programs: list[tuple[int, _Program]] = []
        self._check_duplicates()
        for sec in self.sections:
            kind, _, rest = sec.name.partition(":")
            if kind == "group" and rest:
                self._group(sec, rest)
            elif kind == "supervisord":
                self._supervisord(sec)
        failed: list[ConfigError] = []
        for sec in self.sections:
            kind, _, rest = sec.name.partition(":")
            if kind == "program" and rest:
                try:
                    programs += self._program(sec, rest)
                except ConfigError as exc:
                    failed.append(exc)  # go on: report every program's mistakes at once
            elif kind not in ("group", "supervisord"):
                why = _SECTION_DROPPED.get(kind, "not a section dsup knows")
                self.header += [
                    _not_carried(f"[{sec.name}] {k}", v, why) for k, v in sec.options.items()
                ]
                if not sec.options:
                    self.header.append(f"# not carried over: [{sec.name}] ({why})")
        if failed:
            raise combined_error(failed)
        programs.sort(key=lambda item: (item[0], item[1].name))
        _check_unique([p for _, p in programs])
        self.header[:0] = self._group_comments([p for _, p in programs])
        return self._render([p for _, p in programs])

    def _check_duplicates(self) -> None:
        where: dict[str, Path] = {}
        for sec in self.sections:
            if sec.name in where:
                issue = ConfigIssue(sec.name, f"also defined in {where[sec.name]}")
                raise ConfigError(sec.file, [issue])
            where[sec.name] = sec.file

    def _group(self, sec: Section, group: str) -> None:
        members = [m.strip() for m in sec.options.get("programs", "").split(",") if m.strip()]
        for member in members:
            if f"program:{member}" not in {s.name for s in self.sections}:
                msg = f"names program {member!r}, which has no [program:{member}] section"
                raise ConfigError(sec.file, [ConfigIssue(f"{sec.name}.programs", msg)])
            self.groups[member] = group
        self.members[group] = members
        for key, value in sec.options.items():
            if key != "programs":
                self.header.append(_not_carried(f"[{sec.name}] {key}", value, "no dsup groups"))

    def _group_comments(self, programs: list[_Program]) -> list[str]:
        """Each group's comment, naming the dsup programs its members became."""
        names: dict[str, list[str]] = {}
        for prog in programs:
            names.setdefault(prog.section.name.partition(":")[2], []).append(prog.name)
        return [
            f"# group {group!r}: programs "
            f"{', '.join(_became(m, names[m]) for m in members) or '(none)'}; "
            "dsup has no groups yet: address the members by name or glob"
            for group, members in self.members.items()
        ]

    def _supervisord(self, sec: Section) -> None:
        base = base_expansions(sec.file)
        for key, raw in sec.options.items():
            value = expand(raw, base, sec.file, f"supervisord.{key}")
            if key == "environment":
                self.global_env = env_pairs(value, sec.file, "supervisord.environment")
            elif key == "identifier":
                self._node_name(value, raw, sec)
            else:
                why = _SECTION_DROPPED["supervisord"]
                self.header.append(_not_carried(f"[supervisord] {key}", raw, why))

    def _program(self, sec: Section, name: str) -> list[tuple[int, _Program]]:
        """One dsup program, or one per process when their options differ, with its priority.

        Raises:
            ConfigError: with every mistake of the section at once: a missing
                command, a bad number, a failed expansion and a value supervisord
                would refuse are all reported, not only the first.
        """
        failed: list[ConfigError] = []
        base = {**base_expansions(sec.file), "program_name": name}
        base["group_name"] = self.groups.get(name, name)
        priority = _section_int(sec, "priority", "999", base, failed)
        numprocs = _section_int(sec, "numprocs", "1", base, failed)
        start = _section_int(sec, "numprocs_start", "0", base, failed)
        if "command" not in sec.options:
            failed.append(_error(sec, "command", "required"))
        if not 1 <= numprocs <= MAX_NUMPROCS:
            msg = f"must be between 1 and {MAX_NUMPROCS} for dsup, got {numprocs}"
            failed.append(_error(sec, "numprocs", msg))
            numprocs = 1
        elif numprocs > 1 and "%(process_num)" not in sec.options.get("process_name", ""):
            failed.append(
                _error(sec, "process_name", "must include %(process_num)s when numprocs > 1")
            )
        base["numprocs"] = numprocs
        per_process = [
            expand_options(sec, {**base, "process_num": num}, failed if num == start else [])
            for num in range(start, start + numprocs)
        ]
        if failed:
            # Still look at what expanded: its values may be wrong too.
            self._translate(sec, name, per_process[0], numprocs, failed)
            raise combined_error(failed)
        shared = [{k: v for k, v in p.items() if k != "process_name"} for p in per_process]
        if all(options == shared[0] for options in shared):
            return [(priority, self._translate(sec, name, per_process[0], numprocs, failed))]
        prog_names = ", ".join(_dsup_name(p["process_name"]) for p in per_process)
        self.header.append(
            f"# [{sec.name}] numprocs = {numprocs} with per-process options: one dsup "
            f"program per process: {prog_names}"
        )
        return [
            (priority, self._translate(sec, p["process_name"], p, 1, failed)) for p in per_process
        ]

    def _translate(
        self,
        sec: Section,
        name: str,
        opts: Mapping[str, str],
        numprocs: int,
        failed: list[ConfigError],
    ) -> _Program:
        """Map supervisord options to dsup keys; comment on the rest.

        ``numprocs`` is 1 when each process became its own program. Mistakes
        join ``failed`` (and raise, with those already there); with mistakes
        already there, only the options are checked, not the program as dsup
        sees it.
        """
        mistakes = len(failed)
        prog = _Program(name=_dsup_name(name), section=sec)
        if prog.name != name:
            prog.notes.append(f"# renamed from {name!r}: dsup takes ASCII letters, digits, _ . -")
        prog.env.update(self.global_env)
        for key, value in opts.items():
            handler = _HANDLERS.get(key)
            if handler is not None:
                try:
                    handler(prog, value, sec, key)
                except ConfigError as exc:
                    failed.append(exc)  # go on: report every option's mistake at once
            elif key == "numprocs":
                if numprocs > 1:
                    prog.values["numprocs"] = numprocs
            elif key in ("process_name", "numprocs_start"):
                if numprocs > 1:
                    prog.drop(key, sec.options[key], _DROPPED[key])
            else:
                why = _DROPPED.get(key, "not a supervisord program option")
                prog.drop(key, sec.options[key], why)
        if mistakes:
            return prog
        if failed:
            raise combined_error(failed)
        # supervisord's default startretries (3) is 4 failed starts, not dsup's 3.
        prog.values.setdefault("start_retries", _failed_starts("3"))
        _fit_to_dsup(prog, sec)
        return prog

    def _node_name(self, value: str, raw: str, sec: Section) -> None:
        """Carry ``identifier`` over as the node name, or as a comment if dsup refuses it."""
        try:
            parse_config(f"[supervisor]\nname = {toml_str(value)}\n", sec.file.parent / "dsup.toml")
        except ConfigError as exc:
            why = f"dsup: name {exc.issues[0].message}"
            self.header.append(_not_carried("[supervisord] identifier", raw, why))
        else:
            self.name = value

    def _render(self, programs: list[_Program]) -> str:
        lines = [
            toml_comment(f"# dsup config converted from {self.main} by `dsup import-supervisord`."),
            "# %(ENV_...)s and %(host_node_name)s were expanded when it was converted.",
            "# Review every 'not carried over' comment, then run `dsup check` on this file.",
            *map(toml_comment, self.header),
            "",
        ]
        if self.name is not None:
            lines += ["[supervisor]", f"name = {toml_str(self.name)}", ""]
        for prog in programs:
            lines += [*_program_lines(prog), ""]
        return "\n".join(lines)


def _error(sec: Section, key: str, message: str) -> ConfigError:
    return ConfigError(sec.file, [ConfigIssue(f"{sec.name}.{key}", message)])


def _section_int(
    sec: Section, key: str, default: str, base: Mapping[str, object], failed: list[ConfigError]
) -> int:
    """``section_int``, or the default when the value is wrong (added to ``failed``)."""
    try:
        return section_int(sec, key, default, base)
    except ConfigError as exc:
        failed.append(exc)
        return int(default)


def _check_unique(programs: list[_Program]) -> None:
    first: dict[str, _Program] = {}
    for prog in programs:
        other = first.setdefault(prog.name, prog)
        if other is not prog:
            msg = f"becomes dsup program {prog.name!r}, as does {other.origin}"
            raise ConfigError(prog.section.file, [ConfigIssue(prog.section.name, msg)])


def _program_lines(prog: _Program) -> list[str]:
    head = f"[programs.{toml_key(prog.name)}]"
    lines = [head, toml_comment(f"# from {prog.origin}")]
    lines += [f"{key} = {toml_value(value)}" for key, value in prog.values.items()]
    lines += map(toml_comment, prog.notes)
    if prog.env:
        lines.append("")
        lines.append(f"[programs.{toml_key(prog.name)}.env]")
        lines += [f"{toml_key(k)} = {toml_str(v)}" for k, v in prog.env.items()]
    return lines


def _fit_to_dsup(prog: _Program, sec: Section) -> None:
    """Turn the values dsup's own validation refuses into comments.

    Raises:
        ConfigError: dsup refuses the command itself, so nothing sensible is left.
    """
    prefix = f"programs.{prog.name}."
    # Each round drops at least one key or raises, so this ends.
    for _ in range(len(prog.values) + 2):
        try:
            parse_config("\n".join(_program_lines(prog)), sec.file.parent / "dsup.toml")
        except ConfigError as exc:
            refused = {i.key.removeprefix(prefix): i.message for i in exc.issues}
        else:
            return
        droppable = (set(prog.values) | {"env"}) - {"command"}
        if not refused.keys() <= droppable:
            issues = [ConfigIssue(f"{sec.name}", f"{k}: {m}") for k, m in refused.items()]
            raise ConfigError(sec.file, issues)
        for key, message in refused.items():
            if key == "env":
                prog.drop("environment", toml_value(prog.env), f"dsup: env {message}")
                prog.env = {}
            else:
                prog.values.pop(key)
                source, raw = prog.sources.get(key, (key, ""))
                prog.drop(source, raw, f"dsup: {key} {message}")
    raise AssertionError("unreachable: every round drops a key")


def _became(member: str, programs: list[str]) -> str:
    """A group member as dsup names it: ``web`` or ``web_00, web_01 (from web)``."""
    return programs[0] if programs == [member] else f"{', '.join(programs)} (from {member})"


def _dsup_name(name: str) -> str:
    clean = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:64]
    return clean if clean[:1] not in ("", ".", "-") else ("_" + clean)[:64]


def _convert(
    dsup_key: str, parse: Callable[[str], object]
) -> Callable[[_Program, str, Section, str], None]:
    def handler(prog: _Program, value: str, sec: Section, key: str) -> None:
        try:
            prog.values[dsup_key] = parse(value)
            prog.sources[dsup_key] = (key, sec.options[key])
        except ValueError as exc:
            raise ConfigError(sec.file, [ConfigIssue(f"{sec.name}.{key}", str(exc))]) from None

    return handler


def _failed_starts(value: str) -> int:
    """``startretries`` counts the retries after the first try; dsup counts them all."""
    return parse_int(value) + 1


def _parse_restart(value: str) -> str:
    if value.strip().lower() == "unexpected":
        return "on-failure"
    try:
        return "always" if parse_bool(value) else "never"
    except ValueError:
        raise ValueError(f"must be true, false or unexpected, got {value!r}") from None


def _directory(prog: _Program, value: str, sec: Section, key: str) -> None:
    path = Path(os.path.expanduser(value))
    if not path.is_absolute():
        prog.notes.append(f"# directory = {value} was relative: resolved beside {sec.file}")
        path = sec.file.parent / path
    prog.values["cwd"] = str(path)


def _environment(prog: _Program, value: str, sec: Section, key: str) -> None:
    prog.env.update(env_pairs(value, sec.file, f"{sec.name}.{key}"))


def _exitcodes(prog: _Program, value: str, sec: Section, key: str) -> None:
    if [c.strip() for c in value.split(",")] != ["0"]:
        prog.drop(key, value, _DROPPED["exitcodes"])


_HANDLERS: dict[str, Callable[[_Program, str, Section, str], None]] = {
    "command": _convert("command", parse_command),
    "directory": _directory,
    "environment": _environment,
    "autostart": _convert("autostart", parse_bool),
    "autorestart": _convert("restart", _parse_restart),
    "startsecs": _convert("start_seconds", parse_int),
    "startretries": _convert("start_retries", _failed_starts),
    "stopsignal": _convert("stop_signal", parse_signal),
    "stopwaitsecs": _convert("stop_timeout_seconds", parse_int),
    "stdout_logfile_maxbytes": _convert("log_max_bytes", parse_size),
    "stdout_logfile_backups": _convert("log_backups", parse_int),
    "exitcodes": _exitcodes,
}
