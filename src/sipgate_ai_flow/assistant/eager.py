"""Running a coroutine's first step at once: in the calling task, or in a task of its own.

Most turns never wait: the handler answers from memory. A plain task would still cost two or
three trips through the event loop before the reply could go out, which was most of the SDK's
time per event (see ``benchmarks/README.md``); on Python 3.11 creating one alone costs about
4 µs. So:

- :func:`inline` runs a coroutine in the calling task, in a context of its own, and tells the
  caller the moment it first waits (a transport that reads on can hand the reading to a new
  task then). A turn that never waits costs no task at all.
- :func:`start` gives the coroutine a task of its own whose first step has already run, through
  Python 3.12's public ``asyncio.eager_task_factory``; on 3.11, which has no public way to run a
  task's first step at once, it is a plain task.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any, TypeVar

__all__ = ["inline", "start"]

T = TypeVar("T")


def start(coro: Coroutine[Any, Any, T], *, name: str | None = None) -> asyncio.Task[T]:
    """A task for ``coro``; on Python 3.12+ its first step has already run when this returns
    (a turn that never waits is then done at once), on 3.11 it runs at the loop's next turn."""
    loop = asyncio.get_running_loop()
    if sys.version_info >= (3, 12):
        return asyncio.eager_task_factory(loop, coro, name=name)
    return loop.create_task(coro, name=name)


@types.coroutine
def inline(coro: Coroutine[Any, Any, T], waits: Callable[[], None]) -> Generator[Any, Any, T]:
    """Await ``coro`` in the calling task, in a copy of its context; ``waits()`` is called once,
    when ``coro`` first waits for something (before the task waits for it)."""
    run = contextvars.copy_context().run
    try:
        yielded = run(coro.send, None)
    except StopIteration as stop:
        result: T = stop.value
        return result
    waits()
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # e.g. the task is cancelled: the coroutine decides
            step: Callable[[Any], Any] = coro.throw
            value: Any = exc
        else:
            step, value = coro.send, sent
        try:
            yielded = run(step, value)
        except StopIteration as stop:
            result = stop.value
            return result
