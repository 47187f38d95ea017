"""Tests of the readable callbacks on asyncio: many fds, one fd for the loop."""

from __future__ import annotations

import asyncio
import functools
import gc
import os

import anyio

from supervisor.output.readable import Reader, call_when_readable


class _NoTasks:
    """On asyncio the readers start no task."""

    def start_soon(self, *args: object) -> object:
        raise AssertionError("a reader started a task on asyncio")


def _handles() -> int:
    return sum(isinstance(o, asyncio.Handle) for o in gc.get_objects())


async def test_readers_of_many_fds_cost_the_loop_one_reader() -> None:
    """Each fd was a reader of the loop: an asyncio handle, a copied context and a selector
    key each, about 330 bytes; a fleet at rest holds four per process."""
    pipes = [os.pipe() for _ in range(50)]
    called = {7: anyio.Event(), 42: anyio.Event()}
    readers: list[Reader] = []

    def on(i: int) -> None:
        called[i].set()
        readers[i].stop()

    try:
        before = _handles()
        for i, (r, _) in enumerate(pipes):
            readers.append(call_when_readable(r, functools.partial(on, i), _NoTasks()))
        assert _handles() - before <= 1
        os.write(pipes[7][1], b"x")
        os.write(pipes[42][1], b"y")
        with anyio.fail_after(10):
            await called[7].wait()
            await called[42].wait()
    finally:
        for reader in readers:
            reader.stop()
        for fds in pipes:
            for fd in fds:
                os.close(fd)


async def test_a_reader_stopped_by_another_of_the_same_round_is_not_called() -> None:
    """Both fds are ready at once; whichever is called first stops the other."""
    (ra, wa), (rb, wb) = os.pipe(), os.pipe()
    calls: list[str] = []
    readers: dict[str, Reader] = {}
    called = anyio.Event()

    def on(name: str, other: str) -> None:
        calls.append(name)
        readers[name].stop()
        readers[other].stop()
        called.set()

    try:
        readers["a"] = call_when_readable(ra, lambda: on("a", "b"), _NoTasks())
        readers["b"] = call_when_readable(rb, lambda: on("b", "a"), _NoTasks())
        os.write(wa, b"x")
        os.write(wb, b"x")
        with anyio.fail_after(10):
            await called.wait()
        assert len(calls) == 1  # the other was due in the same dispatch, now over
    finally:
        for fd in (ra, wa, rb, wb):
            os.close(fd)


async def test_a_reader_keeps_being_called_while_its_fd_stays_readable() -> None:
    r, w = os.pipe()
    calls = 0
    thrice = anyio.Event()

    def count() -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            thrice.set()

    reader = call_when_readable(r, count, _NoTasks())
    try:
        os.write(w, b"unread")
        with anyio.fail_after(10):
            await thrice.wait()
        reader.stop()
        seen = calls
        for _ in range(3):  # loop turns, each of which called it while it was watched
            await anyio.lowlevel.checkpoint()
        assert calls == seen
        reader.stop()  # idempotent
    finally:
        os.close(r)
        os.close(w)


async def test_an_fd_closed_while_watched_is_watched_again_when_its_number_comes_back() -> None:
    """epoll forgets a closed fd by itself; a new pipe given the same number and a new
    callback must be registered anew, not taken for the old, silent one."""
    r, w = os.pipe()
    stale = call_when_readable(r, lambda: None, _NoTasks())
    os.close(r)
    os.close(w)
    r2, w2 = os.pipe()
    called = anyio.Event()
    try:
        assert r2 == r  # the lowest free number: the one just closed
        reader = call_when_readable(r2, called.set, _NoTasks())
        os.write(w2, b"x")
        with anyio.fail_after(10):
            await called.wait()
        reader.stop()
        stale.stop()  # the old watch no longer owns the fd: nothing happens
    finally:
        os.close(r2)
        os.close(w2)
