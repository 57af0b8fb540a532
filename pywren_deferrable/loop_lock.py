"""An asyncio lock per event loop, for state shared by every loop of a process.

An ``asyncio.Lock`` belongs to the loop that first waits on it, and one process runs
several loops: the triggerer's, and each ``run_sync`` / ``dag.test()`` on the worker. The
shared clients and token caches are guarded per loop, and a loop's lock goes with it.
"""

from __future__ import annotations

import asyncio
import weakref


class LoopLock:
    """Hands each running event loop a lock of its own."""

    def __init__(self) -> None:
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> asyncio.Lock:
        """The running loop's lock (created on its first use)."""
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        return lock
