"""``python -m tests.discord_fake`` by hand: a real child process, ended by Ctrl-C or Ctrl-D."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import discord
from anyio.streams.buffered import BufferedByteReceiveStream

from tests.discord_fake import run_client, use_discord_api
from tests.discord_fake.harness import RecordingClient
from tests.test_docs import samples, shape

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from anyio.abc import ByteReceiveStream, Process

REPO = Path(__file__).resolve().parents[1]
STARTUP_SECONDS = 20.0  # a Python start that imports discord.py, on a loaded machine


async def _drain(stream: ByteReceiveStream, into: bytearray) -> None:
    """Keep a child's stderr (aiohttp's access log) from filling its pipe."""
    async for chunk in stream:
        into.extend(chunk)


@contextlib.asynccontextmanager
async def console(
    stderr: bytearray, banner: list[str] | None = None
) -> AsyncIterator[tuple[Process, str]]:
    """Start the console on a free port; yield it and its API base once it is serving.

    The lines it printed first are added to ``banner``. The child is killed on the
    way out if a test left it running.
    """
    argv = [sys.executable, "-u", "-m", "tests.discord_fake", "--port", "0"]
    async with (
        await anyio.open_process(argv, cwd=REPO, stdin=subprocess.PIPE) as proc,
        anyio.create_task_group() as tg,
    ):
        try:
            assert proc.stdout is not None
            assert proc.stderr is not None
            tg.start_soon(_drain, proc.stderr, stderr)
            lines = BufferedByteReceiveStream(proc.stdout)
            printed = [] if banner is None else banner
            with anyio.fail_after(STARTUP_SECONDS):
                for _ in range(4):  # API base, gateway, token, guild id: it is serving
                    printed.append((await lines.receive_until(b"\n", 1000)).decode())
            yield proc, printed[-4].split()[-1]
        finally:
            with anyio.CancelScope(shield=True):
                if proc.returncode is None:
                    proc.kill()
                await proc.wait()


async def test_console_ctrl_c_ends_it_at_once_without_traceback() -> None:
    """Regression (audit 8): SIGINT waited for the next line, then printed a traceback."""
    stderr = bytearray()
    async with console(stderr) as (proc, _):
        proc.send_signal(signal.SIGINT)
        with anyio.fail_after(10):
            status = await proc.wait()
    assert status == 130
    assert b"Traceback" not in stderr


async def test_console_ctrl_d_ends_it_promptly_with_a_bot_connected() -> None:
    """Regression (audit 8): the bot's reconnect made the shutdown wait out its 5 s bound."""
    stderr = bytearray()
    async with (
        console(stderr) as (proc, api_base),
        use_discord_api(api_base, "fake-token"),
        run_client(RecordingClient(), "fake-token") as client,
    ):
        assert proc.stdin is not None
        await proc.stdin.send(b"#general hello from you\n")
        (message,) = await client.wait_seen("message")
        started = anyio.current_time()
        await proc.stdin.aclose()
        with anyio.fail_after(10):
            status = await proc.wait()
        elapsed = anyio.current_time() - started
    assert isinstance(message, discord.Message)
    assert message.content == "hello from you"
    assert status == 0
    assert elapsed < 3.0, f"{elapsed:.2f} s"
    assert b"Traceback" not in stderr


async def test_console_prints_what_docs_discord_fake_md_shows() -> None:
    stderr, banner = bytearray(), list[str]()
    async with console(stderr, banner) as (proc, _):
        proc.send_signal(signal.SIGINT)
        with anyio.fail_after(10):
            await proc.wait()
    sample = samples([REPO / "docs" / "discord_fake.md"])["discord_fake.md:fake-console"]
    assert list(map(shape, sample)) == list(map(shape, banner)), "\n".join(banner)
