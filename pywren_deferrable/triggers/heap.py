"""Long-lived triggers kept out of the garbage collector's full collections.

A full collection walks every container object the process keeps, and the event loop
waits while it does. A triggerer with thousands of job triggers keeps some 85 such
objects per trigger (its poller, storage client, coroutines and their frames); while
the triggers poll, the objects of the polls in flight survive young collections, so
full collections come every second or two and each walks every trigger (measured with
5,000 triggers: 25 full collections in 40 s, up to 1.2 s each; benchmarks/ row
"scale").

CPython's answer for long-lived objects is its permanent generation (``gc.freeze``),
which collections do not walk. The freezer moves objects there at two moments:

* at the first poll of the process: what is loaded by then (Airflow, the client
  libraries) lives as long as the process (as Airflow's DAG processor does);
* after a full collection that took longer than ``budget``: its survivors are by
  definition long-lived (arrived triggers), and the next full collections walk only what
  was allocated since. One slow collection per growth step, then short ones.

Frozen objects are still freed by reference counting; only cyclic garbage among them
waits. So that it waits a bounded time, every ``thaw_every`` seconds the freezer puts
everything back (``gc.unfreeze``), collects once (one walk of the whole heap: a pause as
long as one of the slow collections above) and freezes the survivors again. A finished
trigger leaves some 16 objects in cycles; with the default half hour, at most the
cyclic garbage of the triggers that ended in that half hour is kept.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from time import monotonic, perf_counter
from typing import Literal, Protocol

log = logging.getLogger(__name__)

# Longer than this, a full collection's survivors are frozen (the triggerer's watchdog
# reports blocks from 0.2 s; collections stay well under it).
FULL_COLLECTION_BUDGET = 0.05
THAW_EVERY = 1800.0


class Collector(Protocol):
    """What the freezer uses of the :mod:`gc` module (a seam for tests)."""

    callbacks: list[Callable[[Literal["start", "stop"], dict[str, int]], object]]

    def freeze(self) -> None: ...

    def unfreeze(self) -> None: ...

    def collect(self, generation: int = 2) -> int: ...


class HeapFreezer:
    """Freezes the process' long-lived objects (see the module docstring); one per process."""

    def __init__(
        self,
        budget: float = FULL_COLLECTION_BUDGET,
        thaw_every: float = THAW_EVERY,
        collector: Collector = gc,
        clock: Callable[[], float] = monotonic,
    ):
        if budget < 0 or thaw_every <= 0:
            raise ValueError(f"budget must be >= 0 and thaw_every > 0, got {budget!r} and {thaw_every!r}")
        self.budget = budget
        self.thaw_every = thaw_every
        self._gc = collector
        self._clock = clock
        self._installed = False
        self._freeze_due = False
        self._full_started: float | None = None
        self._last_thaw = 0.0
        self.freezes = 0
        self.thaws = 0

    def tend(self) -> None:
        """Called by the event loop before each poll: cheap unless something is due."""
        if not self._installed:
            self._installed = True
            self._gc.freeze()
            self._gc.callbacks.append(self._on_collection)
            self._last_thaw = self._clock()
            self.freezes += 1
            return
        if self._freeze_due:
            # Not from the callback itself: a collection may run in any thread, at any
            # allocation; the loop's own thread freezes between two polls.
            self._freeze_due = False
            self._gc.freeze()
            self.freezes += 1
        if self._clock() - self._last_thaw >= self.thaw_every:
            self.thaw()

    def thaw(self) -> int:
        """Free the cyclic garbage kept frozen: one full walk of the heap, then freeze
        again. Returns how many unreachable objects the collection found."""
        self._last_thaw = self._clock()
        started = perf_counter()
        self._gc.unfreeze()
        found = self._gc.collect()
        self._gc.freeze()
        self._freeze_due = False
        self.thaws += 1
        log.debug("heap thaw: %d unreachable objects freed in %.2fs", found, perf_counter() - started)
        return found

    def uninstall(self) -> None:
        """Stop watching collections and unfreeze (tests and benchmarks)."""
        if self._on_collection in self._gc.callbacks:
            self._gc.callbacks.remove(self._on_collection)
        if self._installed:
            self._gc.unfreeze()
        self._installed = False

    def _on_collection(self, phase: str, info: dict[str, int]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._full_started = perf_counter()
        elif self._full_started is not None:
            if perf_counter() - self._full_started > self.budget:
                self._freeze_due = True
            self._full_started = None
