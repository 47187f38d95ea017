"""The console and ctl samples in docs/ are real output: each is checked against a run.

A sample is a fenced block right after a ``<!-- sample: NAME -->`` comment. One
scenario runs the real dsup on three programs of the demo fleet plus ``slowback``,
as docs/control.md tells it: ctl status piped and in a 58-column terminal, a
SIGKILL of dsup, a second dsup that cleans the orphans, ``ctl shutdown``, and a
third on a terminal, given a Ctrl-Z.
Every line of every sample must have the shape of a line that run printed:
the same words, with any number standing for any number (pids, times, sizes),
any list of numbers for any other, and any run of spaces for any other (column
widths follow the numbers).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests import _console
from tests._console import PtyRun
from tests._e2e import DEADLINE, ctl_run
from tests._wait import wait_for

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
_SAMPLE = re.compile(r"<!-- sample: ([\w-]+) -->\n```\n(.*?)\n```", re.S)
_NOTE = re.compile(r"\s+<- .*$")  # "scraper:0 | ...    <- stdout": the doc's own note


def samples(docs: Iterable[Path] = ()) -> dict[str, list[str]]:
    """Every sample in ``docs`` (docs/*.md) by name: its lines, commands (``$ ...``) left out."""
    found: dict[str, list[str]] = {}
    for doc in docs or sorted(DOCS.glob("*.md")):
        for name, body in _SAMPLE.findall(doc.read_text(encoding="utf-8")):
            lines = [_NOTE.sub("", line) for line in body.splitlines()]
            found[f"{doc.name}:{name}"] = [x for x in lines if x and not x.startswith("$ ")]
    return found


def shape(line: str) -> str:
    """A line with every number as ``N``, a list of them as one, every run of spaces as one."""
    numbers = re.sub(r"\d+(?:\.\d+)?", "N", line)
    return " ".join(re.sub(r"N(?:, N)+", "N", numbers).split())


ELSEWHERE = {
    "config.md:check-online": "tests/bridge/test_check_online.py",
    "discord_fake.md:fake-console": "tests/test_discord_fake_console.py",
}
"""Samples a run of their own checks (they need the Discord fake)."""


def test_docs_have_samples_to_check() -> None:
    names = {name.split(":")[1] for name in samples()}
    wanted = {"console-plain", "ctl-status", "ctl-status-narrow", "ctl-shutdown", "live-ctrl-z"}
    assert wanted <= names


def _config(tmp_path: Path) -> Path:
    """Three programs of examples/dsup.toml and slowback, as docs/control.md tells it.

    And ``quiet``, a worker with a child that never print: the others die of a broken
    pipe at their next line once dsup is killed, so on a loaded machine they may all be
    gone before the next dsup looks. Its two processes are orphans that stay.
    """
    workers = json.dumps(str(REPO / "examples" / "workers"))
    path = tmp_path / "dsup.toml"
    path.write_text(
        f"""[supervisor]
name = "demo"
state_dir = "state"

[programs.progress]
command = ["python3", "progress.py"]
cwd = {workers}
restart = "always"

[programs.flaky]
command = ["python3", "flaky.py"]
cwd = {workers}
restart = "on-failure"
start_retries = 5
backoff_seconds = 1.0

[programs.pipeline]
command = ["bash", "pipeline.sh"]
cwd = {workers}

[programs.slowback]
command = ["sh", "-c", "exit 7"]
backoff_seconds = 60
backoff_max_seconds = 60

[programs.quiet]
command = ["sh", "-c", "sleep 600 & exec sleep 600"]
""",
        encoding="utf-8",
    )
    return path


def _rows(table: list[str]) -> dict[str, list[str]]:
    """A ctl status table's rows by process: the words after the name."""
    return {words[0]: words[1:] for line in table[1:] if (words := line.split())}


def _table_when(
    take: Callable[[], list[str]], ok: Callable[[dict[str, list[str]]], bool], what: str
) -> list[str]:
    """The first table ``take`` prints whose rows are ``ok``.

    The table checked is the table kept: flaky's RUNNING lasts a few seconds
    only, so a check before a separate snapshot could see a state gone since.
    """
    table: list[str] = []

    def taken() -> bool:
        nonlocal table
        table = take()
        return ok(_rows(table))

    wait_for(taken, what, seconds=60)  # a loaded machine starts python workers slowly
    return table


def _narrow_status(config: Path) -> list[str]:
    """``ctl status`` on a 58-column terminal: the same columns whatever the pids' digits.

    (60 columns may add CPU.)
    """
    argv = [sys.executable, "-m", "supervisor", "ctl", "-c", str(config), "status"]
    with PtyRun(argv, rows=24, columns=58) as narrow:
        narrow.wait_exit()
    return narrow.plain.replace("\r", "").splitlines()


def _dsup(config: Path, out: Path) -> subprocess.Popen[bytes]:
    with open(out, "wb") as stdout:
        return subprocess.Popen(
            [sys.executable, "-m", "supervisor", "run", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.DEVNULL,
            cwd=REPO,
        )


def _run_the_scenario(tmp_path: Path) -> list[str]:
    """Everything the scenario printed, line by line (console, ctl, terminal)."""
    config = _config(tmp_path)
    socket = tmp_path / "state" / "control.sock"
    printed: list[str] = []
    first = _dsup(config, tmp_path / "first.out")
    try:
        wait_for(socket.exists, "the control socket")
        printed += _table_when(
            lambda: ctl_run(config, "status").stdout.splitlines(),
            lambda rows: (
                [row[0] for row in rows.values()]
                == ["RUNNING", "RUNNING", "RUNNING", "BACKOFF", "RUNNING"]
            ),
            "four processes RUNNING and slowback in BACKOFF",
        )
        printed += _table_when(
            partial(_narrow_status, config),
            lambda rows: rows.get("flaky:0", [])[:1] == ["RUNNING"] and rows["flaky:0"][3] != "0",
            "flaky to run again",
        )
    finally:
        first.send_signal(signal.SIGKILL)  # its workers are orphans now
        first.wait(timeout=DEADLINE)
    second = _dsup(config, tmp_path / "second.out")
    try:
        # The first one's socket file is still there: wait for an answer instead.
        wait_for(lambda: ctl_run(config, "status").returncode == 0, "the second dsup")
        printed += ctl_run(config, "shutdown").stdout.splitlines()
        assert second.wait(timeout=DEADLINE) == 0
    finally:
        if second.poll() is None:
            second.kill()
            second.wait(timeout=DEADLINE)
    for out in ("first.out", "second.out"):
        printed += (tmp_path / out).read_text(encoding="utf-8").splitlines()
    return printed + _live_ctrl_z(config)


def _live_ctrl_z(config: Path) -> list[str]:
    """The live view on a terminal, after a Ctrl-Z: the screen's lines."""
    rows = 24
    with PtyRun.dsup(config, rows=rows, columns=100) as run:
        run.read_until(lambda text: "STARTING -> RUNNING" in text, "a process to run")
        run.type(b"\x1a")
        run.read_until(lambda text: "ignores Ctrl-Z" in text, "the Ctrl-Z note")
        screen = _console.screen(run.text, height=rows)
        run.type(b"\x03")
        assert run.wait_exit() == 0
    return screen


def test_docs_console_and_ctl_samples_are_what_dsup_prints(tmp_path: Path) -> None:
    """docs/console.md showed RUNNING -> BACKOFF where dsup prints STARTING -> BACKOFF."""
    printed = _run_the_scenario(tmp_path)
    real = {shape(line) for line in printed}
    unseen = {
        name: [line for line in lines if shape(line) not in real]
        for name, lines in samples().items()
        if name not in ELSEWHERE
    }
    unseen = {name: lines for name, lines in unseen.items() if lines}
    assert not unseen, "\n".join(
        ["never printed:", *map(str, unseen.items()), "printed:", *printed]
    )
