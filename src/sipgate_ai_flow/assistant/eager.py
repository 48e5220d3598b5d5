"""Running a coroutine's first step at once: in the calling task, or in a task of its own.

Most turns never wait: the handler answers from memory. A plain task would still cost two or
three trips through the event loop before the reply could go out, which was most of the SDK's
time per event (see ``benchmarks/README.md``); on Python 3.11 creating one alone costs about
4 µs. So:

- :func:`inline` runs a coroutine in the calling task, in a context of its own, and tells the
  caller the moment it first waits (a transport that reads on can hand the reading to a new
  task then). A turn that never waits costs no task at all.
- :func:`start` gives the coroutine a task of its own whose first step has already run. Python
  3.12 has this built in (``eager_start``); on 3.11 the same is done here: the task is made the
  current task for its first step, in its own context, and the coroutine is handed to the task
  afterwards, suspended where it stopped.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any, TypeVar

__all__ = ["inline", "settled", "start"]

T = TypeVar("T")


class _Resumed(Coroutine[Any, Any, T]):
    """A coroutine whose first step already ran, as the task it is handed to expects to find it."""

    __slots__ = ("_coro", "_handed", "done", "error", "result", "yielded")

    def __init__(self, coro: Coroutine[Any, Any, T]) -> None:
        self._coro = coro
        self._handed = False
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.yielded: Any = None

    def first_step(self) -> None:
        try:
            self.yielded = self._coro.send(None)
        except StopIteration as stop:
            self.done, self.result = True, stop.value
        except BaseException as exc:  # the task raises it at its own first step, as usual
            self.done, self.error = True, exc

    def send(self, value: Any) -> Any:
        if self._handed:
            return self._coro.send(value)
        self._handed = True
        if self.error is not None:
            raise self.error
        if self.done:
            raise StopIteration(self.result)
        return self.yielded  # the future the first step waits for: the task now waits for it

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        self._handed = True
        if self.done:  # cancelled after it finished: the result stands
            raise StopIteration(self.result)
        return self._coro.throw(typ if val is None else val)

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> Generator[Any, None, T]:
        raise TypeError("an eagerly started coroutine belongs to its task")


def _start_311(coro: Coroutine[Any, Any, T], name: str | None) -> asyncio.Task[T]:
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    resumed = _Resumed(coro)
    task = loop.create_task(resumed, name=name, context=context)
    current = asyncio.current_task(loop)
    if current is not None:
        asyncio.tasks._leave_task(loop, current)
    asyncio.tasks._enter_task(loop, task)
    try:
        context.run(resumed.first_step)
    finally:
        asyncio.tasks._leave_task(loop, task)
        if current is not None:
            asyncio.tasks._enter_task(loop, current)
    return task


def start(coro: Coroutine[Any, Any, T], *, name: str | None = None) -> asyncio.Task[T]:
    """A task for ``coro`` whose first step has already run when this returns."""
    if sys.version_info >= (3, 12):
        return asyncio.Task(coro, loop=asyncio.get_running_loop(), name=name, eager_start=True)
    return _start_311(coro, name)


def settled(task: asyncio.Task[Any]) -> bool:
    """Whether ``task`` is finished, also when its eager first step finished it (3.11)."""
    if task.done():
        return True
    coro = task.get_coro()
    return isinstance(coro, _Resumed) and coro.done


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
