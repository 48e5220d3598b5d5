"""Eagerly started tasks behave like plain tasks, only sooner."""

from __future__ import annotations

import asyncio
import contextvars
import sys

import pytest

from sipgate_ai_flow.assistant import eager

var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="outer")


# Python 3.12+ runs a task's first step at once through the public asyncio.eager_task_factory;
# 3.11 has no public way to, and gets plain tasks.
EAGER = sys.version_info >= (3, 12)
needs_eager = pytest.mark.skipif(not EAGER, reason="eager tasks need Python 3.12+")


@needs_eager
async def test_a_coroutine_that_never_waits_is_finished_on_return() -> None:
    ran: list[str] = []

    async def quick() -> int:
        ran.append("ran")
        return 7

    task = eager.start(quick())
    assert ran == ["ran"]  # before anything else of the loop ran
    assert task.done()
    assert await task == 7


async def test_a_coroutine_that_waits_goes_on_as_a_task() -> None:
    steps: list[str] = []

    async def slow() -> str:
        steps.append("first")
        await asyncio.sleep(0.01)
        steps.append("second")
        return "done"

    task = eager.start(slow())
    assert steps == (["first"] if EAGER else [])
    assert not task.done()
    assert await task == "done"
    assert steps == ["first", "second"]


async def test_the_task_runs_as_itself_in_its_own_context() -> None:
    outer = asyncio.current_task()
    seen: list[object] = []

    async def body() -> None:
        seen.append(asyncio.current_task())
        var.set("inner")
        await asyncio.sleep(0)
        seen.append(asyncio.current_task())

    task = eager.start(body())
    assert asyncio.current_task() is outer  # the caller is current again
    assert var.get() == "outer"  # the task's context changes stay in it
    await task
    assert seen == [task, task]


async def test_a_timeout_taken_in_the_first_step_cancels_the_task_not_the_caller() -> None:
    async def bounded() -> str:
        try:
            async with asyncio.timeout(0.05):
                await asyncio.sleep(5)
        except TimeoutError:
            return "timed out"
        return "slept"

    task = eager.start(bounded())
    assert await asyncio.wait_for(task, 2) == "timed out"


async def test_cancelling_a_started_task_reaches_the_coroutine() -> None:
    cleaned: list[str] = []

    async def holder() -> None:
        try:
            await asyncio.sleep(5)
        finally:
            cleaned.append("finally")

    task = eager.start(holder())
    await asyncio.sleep(0)  # the coroutine is waiting in its try block
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == ["finally"]


async def test_an_error_in_the_first_step_is_the_task_s_error() -> None:
    async def broken() -> None:
        raise ValueError("bad")

    task = eager.start(broken())
    assert task.done() == EAGER
    with pytest.raises(ValueError, match="bad"):
        await task


async def test_inline_runs_in_the_calling_task_and_reports_only_the_first_wait() -> None:
    me = asyncio.current_task()
    seen: list[object] = []
    waits: list[str] = []

    async def quick() -> int:
        seen.append(asyncio.current_task())
        return 3

    assert await eager.inline(quick(), lambda: waits.append("waits")) == 3
    assert seen == [me]
    assert waits == []  # it never waited

    async def slow() -> str:
        await asyncio.sleep(0)
        waits.append("between")
        await asyncio.sleep(0.01)
        seen.append(asyncio.current_task())
        return "done"

    assert await eager.inline(slow(), lambda: waits.append("waits")) == "done"
    assert waits == ["waits", "between"]  # once, before the first wait
    assert seen == [me, me]


async def test_inline_keeps_context_changes_to_itself() -> None:
    async def body() -> str:
        var.set("inner")
        await asyncio.sleep(0)
        return var.get()

    assert await eager.inline(body(), lambda: None) == "inner"
    assert var.get() == "outer"


async def test_inline_passes_errors_out_and_cancellation_in() -> None:
    async def fails() -> None:
        await asyncio.sleep(0)
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        await eager.inline(fails(), lambda: None)

    cleaned: list[str] = []

    async def waits_long() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            cleaned.append("cleaned")

    async def caller() -> None:
        await eager.inline(waits_long(), lambda: None)

    task = asyncio.create_task(caller())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == ["cleaned"]


async def test_a_timeout_inside_an_inline_coroutine_cancels_only_its_wait() -> None:
    async def guarded() -> str:
        try:
            async with asyncio.timeout(0.01):
                await asyncio.sleep(30)
        except TimeoutError:
            return "timed out"
        return "slept"

    assert await eager.inline(guarded(), lambda: None) == "timed out"
    await asyncio.sleep(0.02)  # the caller is not cancelled later either
