"""``dsup ctl status``, ``asks``, ``answer`` and ``results`` against a real ``dsup run``."""

from __future__ import annotations

import json
import re
import sys
from typing import TYPE_CHECKING

import pytest

from tests._e2e import WORKERS, ctl_run, dsup_run, write_config
from tests._wait import wait_for

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.timeout(60)


def _worker(name: str, *args: str) -> str:
    command = [sys.executable, "-u", str(WORKERS / "sdk_worker.py"), *args]
    return f"[programs.{name}]\ncommand = {json.dumps(command)}\nstart_seconds = 0\n"


def test_ctl_shows_asks_answers_and_results_of_workers(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        _worker("asker", "ask", "Delete 3,000 stale rows?", "yes,no", "600", "no")
        + _worker("reporter", "report"),
    )
    log = tmp_path / "state" / "logs" / "asker-0.out.log"
    with dsup_run(config):
        wait_for(lambda: "asks #" in ctl_run(config, "status").stdout, "the open question")
        status = ctl_run(config, "status").stdout
        assert re.search(r"asker:0 .*asks #1: Delete 3,000 stale rows\?", status), status
        assert re.search(r"reporter:0 .*100% █+ step 10", status), status

        asks = ctl_run(config, "asks")
        assert asks.returncode == 0, asks.stderr
        assert re.search(
            r"^1 +asker:0 .* in \d+m.* Delete 3,000 stale rows\? \[yes/no\] \(default no\)$",
            asks.stdout,
            re.M,
        ), asks.stdout

        wrong = ctl_run(config, "answer", "1", "maybe")
        assert wrong.returncode == 2, wrong
        assert "answer one of: yes, no" in wrong.stderr

        answered = ctl_run(config, "answer", "1", "yes")
        assert answered.returncode == 0, answered.stderr
        assert re.match(r"question 1 of asker:0: answered 'yes' by \S+", answered.stdout)
        wait_for(lambda: log.exists() and "answer yes" in log.read_text(), "the worker's answer")

        again = ctl_run(config, "answer", "1", "no")
        assert again.returncode == 1
        assert "question 1 is not open" in again.stderr
        assert ctl_run(config, "asks").stdout.strip() == "no open questions"

        results = ctl_run(config, "results", "reporter")
        assert results.returncode == 0, results.stderr
        lines = results.stdout.splitlines()
        assert re.match(r"#1 \S+ \S+ reporter:0: did 3 rows$", lines[0]), lines
        assert lines[1].strip() == '{"rows": 3}'
        assert lines[2].strip().startswith("files: ")
        assert lines[2].endswith("out.csv")

        as_json = json.loads(ctl_run(config, "--json", "results", "all", "-n", "1").stdout)
        assert [r["text"] for r in as_json["results"]] == ["did 3 rows"]
        assert ctl_run(config, "results", "all", "-n", "0").returncode == 2
        ctl_run(config, "shutdown")
