"""A node without Discord pays nothing for it: discord.py is never imported."""

from __future__ import annotations

import signal
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from tests._e2e import DEADLINE, WORKERS, write_config
from tests._wait import wait_for

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.timeout(60)

_PROGRAM = f"""[programs.tick]
command = {[sys.executable, str(WORKERS / "ctl_ticker.py"), "0.2"]!r}
start_seconds = 0
"""
_DISCORD = """
[discord]
token_env = "DSUP_TEST_NO_SUCH_TOKEN"
guild_id = 1
"""
# Runs dsup's command line in-process and says, at exit, whether discord was imported.
_PROBE = """
import atexit, sys
atexit.register(lambda: print("discord imported:", "discord" in sys.modules, flush=True))
from supervisor.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize(
    ("table", "flags"), [("", []), (_DISCORD, ["--no-discord"])], ids=["no-table", "no-discord"]
)
def test_node_without_discord_never_imports_discord(
    tmp_path: Path, table: str, flags: list[str]
) -> None:
    config = write_config(tmp_path, _PROGRAM + table)
    with subprocess.Popen(
        [sys.executable, "-c", _PROBE, "run", "--quiet", *flags, str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as node:
        try:
            wait_for((tmp_path / "state" / "control.sock").exists, "the control socket")
            node.send_signal(signal.SIGTERM)
            out, err = node.communicate(timeout=DEADLINE)
        finally:
            if node.poll() is None:
                node.kill()
                node.communicate(timeout=DEADLINE)
    assert node.returncode == 0, err
    assert "discord imported: False" in out
