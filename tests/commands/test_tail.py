"""Tests of reading a run's last words back from its logs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from supervisor.commands.tail import last_words, log_marks
from supervisor.output.logfile import log_paths

if TYPE_CHECKING:
    from pathlib import Path


def _append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(text)


def test_last_words_are_the_runs_stderr_else_its_stdout(tmp_path: Path) -> None:
    out, err = log_paths(tmp_path, "job:0")
    _append(err, "an earlier run's warning\n")
    since = log_marks(tmp_path, "job:0")
    _append(out, "step 1\nstep 2\n")
    until = log_marks(tmp_path, "job:0")
    words = last_words(tmp_path, "job:0", 5, max_line_bytes=100, since=since, until=until)
    assert words == ("stdout", ["step 1", "step 2"]), "this run wrote nothing to stderr"
    _append(err, "Traceback\nValueError: bad\n")
    until = log_marks(tmp_path, "job:0")
    _append(err, "the next run\n")
    words = last_words(tmp_path, "job:0", 5, max_line_bytes=100, since=since, until=until)
    assert words == ("stderr", ["Traceback", "ValueError: bad"])


def test_last_words_of_a_process_that_wrote_nothing(tmp_path: Path) -> None:
    since = log_marks(tmp_path, "mute:0")
    assert (since.stdout, since.stderr) == (None, None)
    words = last_words(tmp_path, "mute:0", 5, max_line_bytes=100, since=since, until=since)
    assert words == ("stderr", [])
