"""Async plumbing between a run's events and the HTTP connection: deadlines, keep-alive ticks,
and cancellation when the client goes away.

Every path that stops early closes the run's event stream, and closing it is what aborts the
engine requests of every node in flight (see `GraphRunner.stream`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

_END: Any = object()


class _Raised:
    def __init__(self, error: Exception) -> None:
        self.error = error


async def paced(
    source: AsyncGenerator[T], *, deadline: float, heartbeat_s: float | None = None
) -> AsyncGenerator[T | None]:
    """The items of `source`, None after every `heartbeat_s` without one, TimeoutError once the
    loop's clock passes `deadline`.

    `source` runs in a task of its own that queues its items, so that a tick or the deadline
    interrupts only the waiting, never the source in the middle of a step (and items that are
    ready cost no wait at all). Closing this iterator cancels that task, which closes `source`.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for item in source:
                queue.put_nowait(item)
        except Exception as error:
            queue.put_nowait(_Raised(error))
        else:
            queue.put_nowait(_END)

    pumping = asyncio.create_task(pump())
    try:
        while True:
            if queue.empty():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise TimeoutError
                wait_s = remaining if heartbeat_s is None else min(remaining, heartbeat_s)
                try:
                    async with asyncio.timeout(wait_s):
                        item = await queue.get()
                except TimeoutError:
                    if heartbeat_s is not None and loop.time() < deadline:
                        yield None
                    continue
            else:
                item = queue.get_nowait()
            if item is _END:
                return
            if isinstance(item, _Raised):
                raise item.error
            yield item
    finally:
        pumping.cancel()
        await asyncio.wait((pumping,))


async def unless_disconnected(work: Awaitable[T], receive: Callable[[], Awaitable[Any]]) -> T:
    """Await `work`, cancelling it if the client disconnects first.

    ASGI servers do not cancel a handler whose client left, so a non-streaming request would
    otherwise run its whole graph for nobody. Raises ConnectionAbortedError in that case.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(receive))
    try:
        done, _ = await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait((task,))
    if task not in done:
        raise ConnectionAbortedError("the client disconnected")
    return task.result()


async def _disconnected(receive: Callable[[], Awaitable[Any]]) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
