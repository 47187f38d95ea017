"""LazyEvent: anyio.Event's behaviour, with the Event made only for an early waiter."""

from __future__ import annotations

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
