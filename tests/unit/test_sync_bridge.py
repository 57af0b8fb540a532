"""run_sync: coroutines from the worker's synchronous code."""

from __future__ import annotations

import asyncio

import pytest

from pywren_deferrable.sync_bridge import run_sync


async def fail() -> None:
    raise ValueError("the real cause")


def test_errors_carry_no_false_context() -> None:
    """A failed task's traceback must open with its real cause, not with the
    "no running event loop" RuntimeError that run_sync uses to pick its path."""
    with pytest.raises(ValueError, match="the real cause") as caught:
        run_sync(fail)
    assert caught.value.__context__ is None


async def test_from_inside_a_running_loop() -> None:
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    assert run_sync(answer) == 42
    with pytest.raises(ValueError, match="the real cause"):
        run_sync(fail)
