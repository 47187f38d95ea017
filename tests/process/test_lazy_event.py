"""LazyEvent: anyio.Event's behaviour, with the Event made only for an early waiter."""

from __future__ import annotations

import asyncio
import gc

import anyio

from supervisor.process.lazy_event import LazyEvent


async def test_lazy_event_set_before_wait_returns_at_once() -> None:
    flag = LazyEvent()
    assert not flag.is_set()
    flag.set()
    assert flag.is_set()
    with anyio.fail_after(5):
        await flag.wait()


async def test_lazy_event_wakes_every_early_waiter() -> None:
    flag = LazyEvent()
    woken: list[int] = []

    async def waiter(n: int) -> None:
        await flag.wait()
        woken.append(n)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for n in range(3):
                tg.start_soon(waiter, n)
            await anyio.wait_all_tasks_blocked()
            assert woken == []
            flag.set()
    assert sorted(woken) == [0, 1, 2]


async def test_lazy_event_cancelled_waiter_leaves_the_others_waiting() -> None:
    flag = LazyEvent()
    woken: list[str] = []

    async def waiter(name: str) -> None:
        await flag.wait()
        woken.append(name)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            async with anyio.create_task_group() as doomed:
                doomed.start_soon(waiter, "cancelled")
                tg.start_soon(waiter, "kept")
                await anyio.wait_all_tasks_blocked()
                doomed.cancel_scope.cancel()
            await anyio.wait_all_tasks_blocked()
            assert woken == []
            flag.set()
    assert woken == ["kept"]


async def test_lazy_event_waiter_on_asyncio_holds_no_asyncio_event() -> None:
    """A slot waits on its run's exit as long as the process lives: an anyio.Event's
    asyncio.Event and deque (about 0.9 KB) and two coroutines, per process."""
    flag = LazyEvent()
    # Held, so that none is collected meanwhile and no new one can take its id.
    before: list[asyncio.Event] = []

    async def waiter() -> None:
        before.extend(_asyncio_events())  # anyio may keep one per task
        await flag.wait()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            known = {id(event) for event in before}
            assert [e for e in _asyncio_events() if id(e) not in known] == []
            flag.set()


def _asyncio_events() -> list[asyncio.Event]:
    """Every asyncio.Event alive in the process (other tests' too, until collected)."""
    return [o for o in gc.get_objects() if isinstance(o, asyncio.Event)]
