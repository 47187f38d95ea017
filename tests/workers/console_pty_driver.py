"""Drive a live Console on this process's stdout (a pseudo-terminal in the test).

``console_pty_driver.py [--plain] [EXTRA_ROWS [ECHO]]``: EXTRA_ROWS more sleeper rows
(default 0); ECHO, a line printed before the console starts (as make echoes its
command); ``--plain``: the plain view on the terminal instead of the live table.
Shows two process rows (a 7-digit pid, a title too long for a narrow pane), a few
output lines (two full of escape sequences and control characters) and a log
record, lets the console refresh at least twice, then cancels it so it prints its
final table. Used by tests/console/test_console.py.
"""

import logging
import sys

import anyio

from supervisor.console.console import Console
from supervisor.events import OutputChunk, ProcessState, StateChanged
from supervisor.process.status import ProcessStatus

STARTED = 1_700_000_000.0


PLAIN = "--plain" in sys.argv
ARGS = [arg for arg in sys.argv[1:] if arg != "--plain"]
EXTRA_ROWS = int(ARGS[0]) if ARGS else 0
ECHO = ARGS[1] if len(ARGS) > 1 else ""


def output(process, stream, *lines):
    data = "".join(f"{line}\n" for line in lines).encode()
    return OutputChunk(process=process, stream=stream, data=data)


def sleeper(i):
    return ProcessStatus(
        process=f"sleeper-long:{i}",
        program="sleeper-long",
        index=i,
        state=ProcessState.RUNNING,
        pid=40000 + i,
        run_id=f"s{i}",
        started_at=STARTED,
        state_since=STARTED,
        restarts=0,
        last_exit_code=None,
        last_exit_signal=None,
        last_error="",
    )


def rows():
    return [*base_rows(), *(sleeper(i) for i in range(EXTRA_ROWS))]


def base_rows():
    return [
        ProcessStatus(
            process="scraper:0",
            program="scraper",
            index=0,
            state=ProcessState.RUNNING,
            pid=1764242,
            run_id="r1",
            started_at=STARTED,
            state_since=STARTED,
            restarts=3,
            last_exit_code=1,
            last_exit_signal=None,
            last_error="",
        ),
        ProcessStatus(
            process="crasher:0",
            program="crasher",
            index=0,
            state=ProcessState.FATAL,
            pid=None,
            run_id=None,
            started_at=None,
            state_since=STARTED,
            restarts=5,
            last_exit_code=None,
            last_exit_signal=9,
            last_error="",
        ),
    ]


async def main():
    calls = 0
    enough = anyio.Event()

    def status():
        nonlocal calls
        calls += 1
        if calls >= 3:  # two refreshes shown; the next is the final table
            enough.set()
        return rows()

    if ECHO:
        print(ECHO)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)  # same terminal
    node = "ptynode-with-a-name-long-enough-to-wrap-a-title"
    console = Console(stream=sys.stdout, live=not PLAIN, status=status, node=node)
    async with anyio.create_task_group() as tg:
        await tg.start(console.run)
        console.deliver(
            StateChanged(
                process="scraper:0",
                program="scraper",
                old=ProcessState.STARTING,
                new=ProcessState.RUNNING,
                pid=1764242,
                at=STARTED,
            )
        )
        console.deliver(output("scraper:0", "stdout", "hello page 1"))
        console.deliver(output("scraper:0", "stderr", "warn: slow"))
        logging.getLogger("driver").warning("disk nearly full")
        garbage = ("\x1b[31mRED\x1b[0m\x1b]0;title\x07\r\rX\x08\x08", "\x0b\x0c\rnext line")
        console.deliver(output("scraper:0", "stdout", *garbage))
        filler = tuple(f"filler {i}" for i in range(8))
        console.deliver(output("crasher:0", "stdout", *filler))
        if not PLAIN:  # the plain view has no table to refresh
            with anyio.fail_after(10):
                await enough.wait()
        tg.cancel_scope.cancel()


anyio.run(main)
