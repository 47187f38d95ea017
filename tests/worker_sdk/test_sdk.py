"""worker_sdk in real child processes: outside dsup, on a terminal, and on a channel."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests._wait import wait_for

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]
DEADLINE = 20.0


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSUP_")}
    return env | extra


def _python(
    code: str, *, env: dict[str, str], pass_fds: tuple[int, ...] = ()
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
        stdin=subprocess.DEVNULL,
        env=env,
        pass_fds=pass_fds,
    )


def test_sdk_imports_without_dsup_installed() -> None:
    """Only the standard library: the repo's worker_sdk on an isolated path is enough."""
    done = _python(
        f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        import worker_sdk
        from worker_sdk import ask, log, progress, result
        loaded = {{m.split(".")[0] for m in sys.modules}}
        assert not loaded & {{"supervisor", "anyio", "discord", "psutil", "rich"}}, loaded
        """,
        env=_env(),
    )
    assert done.returncode == 0, done.stderr


def test_sdk_outside_dsup_writes_readable_lines_to_stderr() -> None:
    done = _python(
        """
        from worker_sdk import log, progress, result
        progress(0.25, "a quarter")
        progress(2, total=4)  # within a second of the last: coalesced away
        progress(1.0, "all")
        log("slow down", level="warning")
        result({"rows": 3}, text="3 rows", files=["out.csv"])
        print("out")
        """,
        env=_env(),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "out\n"
    assert done.stderr.splitlines() == [
        "[progress] 25% a quarter",
        "[progress] 100% all",
        "[warning] slow down",
        '[result] 3 rows {"rows": 3} (files: out.csv)',
    ]


def test_sdk_ask_outside_dsup_without_a_terminal_returns_the_default_or_raises() -> None:
    done = _python(
        """
        from worker_sdk import NoAnswer, ask
        print(ask("Go?", ["yes", "no"], default="no"))
        try:
            ask("Go?", ["yes", "no"])
        except TimeoutError as exc:
            print(type(exc).__name__)
        """,
        env=_env(),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["no", "NoAnswer"]


def test_sdk_ask_outside_dsup_asks_on_the_terminal() -> None:
    code = textwrap.dedent(
        """
        from worker_sdk import ask
        print("got", ask("Delete?", ["yes", "no"], timeout=20), flush=True)
        """
    )
    pid, fd = pty.fork()
    if pid == 0:  # the child: a worker on a terminal
        os.execve(sys.executable, [sys.executable, "-c", code], _env())
    seen = bytearray()
    try:
        wait_for(lambda: _read_into(fd, seen) and b"[yes/no]" in seen, "the question")
        os.write(fd, b"maybe\n")
        wait_for(lambda: _read_into(fd, seen) and b"answer one of" in seen, "the retry")
        os.write(fd, b"yes\n")
        wait_for(lambda: _read_into(fd, seen) and b"got yes" in seen, "the answer")
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0


def _read_into(fd: int, seen: bytearray) -> bool:
    """Append what the terminal has (never blocks long); True to let the caller check."""
    if select.select([fd], [], [], 0.05)[0]:
        with contextlib.suppress(OSError):  # the child closed the terminal
            seen += os.read(fd, 4096)
    return True


def test_sdk_ignores_a_dsup_fd_that_is_no_socket(tmp_path: Path) -> None:
    """A child started with close_fds keeps DSUP_FD but not the fd: never write into a file."""
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    with victim.open("a") as handle:
        done = _python(
            """
            from worker_sdk import result
            result(text="hello")
            """,
            env=_env(DSUP_FD=str(handle.fileno())),
            pass_fds=(handle.fileno(),),
        )
    assert done.returncode == 0, done.stderr
    assert victim.read_text() == "keep me\n"
    assert done.stderr == "[result] hello\n"


def test_sdk_on_a_channel_sends_messages_and_waits_for_its_answer() -> None:
    """The wire form, seen from dsup's end of a socketpair."""
    ours, theirs = socket.socketpair()
    code = """
        from worker_sdk import ask, log, progress, result
        for i in range(1000):
            progress(i, total=999)
        log("hi", level="error")
        result({"a": 1}, text="t")
        print(ask("Go?", ["yes", "no"], timeout=30, default="no"), flush=True)
    """
    with (
        ours,
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code)],
            env=_env(DSUP_FD=str(theirs.fileno())),
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        ) as child,
    ):
        theirs.close()
        ours.settimeout(DEADLINE)
        reader = ours.makefile("rb")
        messages: list[dict[str, object]] = []
        while not messages or messages[-1]["type"] != "ask":
            messages.append(json.loads(reader.readline()))
        kinds = [m["type"] for m in messages]
        assert kinds.count("progress") < 100  # coalesced
        assert kinds[-3:] == ["log", "result", "ask"]
        assert messages[-3]["level"] == "error"
        assert (messages[-2]["data"], messages[-2]["text"]) == ({"a": 1}, "t")
        ask = messages[-1]
        assert (ask["question"], ask["choices"], ask["default"]) == ("Go?", ["yes", "no"], "no")
        answer = {"type": "answer", "id": ask["id"], "status": "answered", "answer": "yes"}
        ours.sendall(json.dumps(answer).encode() + b"\n")
        assert child.stdout is not None
        assert child.stdout.read() == "yes\n"
        assert child.wait(DEADLINE) == 0
        reader.close()
        rest = [json.loads(line) for line in ours.makefile("rb")]
    assert rest == [] or rest[-1]["fraction"] == 1.0
    last = [m for m in messages + rest if m["type"] == "progress"][-1]
    assert last["fraction"] == 1.0


def test_sdk_ask_on_a_channel_takes_dsup_timeout_as_the_default() -> None:
    ours, theirs = socket.socketpair()
    code = """
        from worker_sdk import ask
        print(ask("Go?", ["yes", "no"], timeout=30, default="no"))
        try:
            ask("Again?", timeout=30)
        except TimeoutError:
            print("none")
    """
    with (
        ours,
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code)],
            env=_env(DSUP_FD=str(theirs.fileno())),
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        ) as child,
    ):
        theirs.close()
        ours.settimeout(DEADLINE)
        reader = ours.makefile("rb")
        for _ in range(2):
            ask = json.loads(reader.readline())
            reply = {"type": "answer", "id": ask["id"], "status": "timeout"}
            if "default" in ask:
                reply["answer"] = ask["default"]
            ours.sendall(json.dumps(reply).encode() + b"\n")
        assert child.stdout is not None
        assert child.stdout.read().split() == ["no", "none"]
        assert child.wait(DEADLINE) == 0
        reader.close()


def test_sdk_refuses_bad_calls_at_once() -> None:
    done = _python(
        """
        from worker_sdk import ask, log, progress, result
        bad = [
            lambda: progress(float("nan")),
            lambda: progress(1, total=0),
            lambda: log("x", level="loud"),
            lambda: result(),
            lambda: result(text="x", files=[str(i) for i in range(11)]),
            lambda: ask(""),
            lambda: ask("q", "yes"),
            lambda: ask("q", ["a", "a"]),
            lambda: ask("q", ["a", "b"], default="c"),
            lambda: ask("q", timeout=-1),
        ]
        for call in bad:
            try:
                call()
            except ValueError:
                print("refused")
        """,
        env=_env(),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["refused"] * 10


def test_sdk_calls_from_many_threads_arrive_whole() -> None:
    """Eight threads log and report at once: every line on the socket is one whole message."""
    ours, theirs = socket.socketpair()
    code = """
        import threading
        from worker_sdk import log, progress, result

        def work(n):
            for i in range(200):
                log(f"thread {n} line {i} " + "x" * 500)
                progress(i, total=199, text=f"thread {n}")
            result({"thread": n}, text=f"thread {n} done")

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    """
    with (
        ours,
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code)],
            env=_env(DSUP_FD=str(theirs.fileno())),
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
        ) as child,
    ):
        theirs.close()
        ours.settimeout(DEADLINE)
        with ours.makefile("rb") as reader:
            messages = [json.loads(line) for line in reader]  # until the child exits
        assert child.wait(DEADLINE) == 0
    logs = [m for m in messages if m["type"] == "log"]
    results = sorted(m["data"]["thread"] for m in messages if m["type"] == "result")
    assert len(logs) == 8 * 200
    assert results == list(range(8))
