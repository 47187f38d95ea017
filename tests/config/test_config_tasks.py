"""The task keys of a program: defaults, bounds, and the combinations refused."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from supervisor.config.schema import TaskMode, parse_config
from supervisor.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path


def _parse(tmp_path: Path, body: str) -> dict[str, str] | None:
    """The issues by key of ``[programs.t]`` with ``body``, or None when valid."""
    try:
        parse_config(f"[programs.t]\n{body}\n", tmp_path / "dsup.toml")
    except ConfigError as exc:
        return {issue.key: issue.message for issue in exc.issues}
    return None


def test_task_program_defaults_and_slots(tmp_path: Path) -> None:
    text = '[programs.t]\ncommand = ["/bin/w", "{task}"]\ntasks = "oneshot"\n'
    config = parse_config(text, tmp_path / "dsup.toml")
    spec = config.programs["t"]
    assert spec.tasks is TaskMode.ONESHOT
    assert (spec.concurrency, spec.task_timeout_seconds, spec.task_max_attempts) == (1, 600, 3)
    assert spec.task_backlog == 1000
    assert spec.slot_count == 0  # no long-lived process: one per task
    assert "1 task program" in config.summary()


def test_plain_program_is_unchanged(tmp_path: Path) -> None:
    config = parse_config('[programs.t]\ncommand = ["x"]\n', tmp_path / "dsup.toml")
    assert config.programs["t"].tasks is None
    assert config.programs["t"].slot_count == 1


@pytest.mark.parametrize(
    ("body", "key", "says"),
    [
        ("concurrency = 4", "concurrency", "only for a program that takes tasks"),
        ("task_timeout_seconds = 5", "task_timeout_seconds", "only for a program"),
        ("task_max_attempts = 2", "task_max_attempts", "only for a program"),
        ("task_backlog = 9", "task_backlog", "only for a program"),
        ('tasks = "oneshot"\nnumprocs = 2', "numprocs", "one process per task"),
        ('tasks = "oneshot"\nrestart = "always"', "restart", "does not apply"),
        ('tasks = "oneshot"\ncwd = "/tmp"', "cwd", "DSUP_TASK_DIR"),
        ('tasks = "oneshot"\nconcurrency = 0', "concurrency", "between 1 and 1000"),
        ('tasks = "oneshot"\ntask_timeout_seconds = 0', "task_timeout_seconds", "> 0"),
        ('tasks = "oneshot"\ntask_max_attempts = 0', "task_max_attempts", "between 1"),
        ('tasks = "oneshot"\ntask_backlog = 0', "task_backlog", "between 1"),
        ('tasks = "sometimes"', "tasks", "must be one of oneshot, stream"),
        ('tasks = "oneshot"\ntask_timeout = 5', "task_timeout", "task_timeout_seconds"),
    ],
)
def test_bad_task_keys_are_named_with_the_reason(
    tmp_path: Path, body: str, key: str, says: str
) -> None:
    issues = _parse(tmp_path, f'command = ["/bin/w"]\n{body}')
    assert issues is not None
    assert says in issues[f"programs.t.{key}"]


def test_stream_program_keeps_its_processes(tmp_path: Path) -> None:
    text = '[programs.t]\ncommand = ["/bin/w"]\ntasks = "stream"\nnumprocs = 2\nconcurrency = 8\n'
    spec = parse_config(text, tmp_path / "dsup.toml").programs["t"]
    assert (spec.tasks, spec.slot_count, spec.concurrency) == (TaskMode.STREAM, 2, 8)


def test_task_placeholder_needs_a_oneshot_program(tmp_path: Path) -> None:
    issues = _parse(tmp_path, 'command = ["/bin/w", "{task}"]')
    assert issues is not None
    assert "only with tasks" in issues["programs.t.command"]
    issues = _parse(tmp_path, 'command = ["/bin/w", "{task}"]\ntasks = "stream"')
    assert issues is not None
    assert "only with tasks" in issues["programs.t.command"]
    assert _parse(tmp_path, 'command = "/bin/w {task}"\ntasks = "oneshot"') is None
