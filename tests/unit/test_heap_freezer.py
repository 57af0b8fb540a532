"""The heap freezer: long-lived objects out of full collections, cyclic garbage freed in bounded time."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from typing import Any, Literal

import pytest
from airflow.sdk.exceptions import AirflowException

from pywren_deferrable.get_provider_info import get_provider_info
from pywren_deferrable.job import StorageLocation
from pywren_deferrable.triggers.heap import THAW_EVERY, HeapFreezer
from pywren_deferrable.triggers.scheduler import (
    CONFIG_SECTION,
    SCHEDULER,
    PollScheduler,
    heap_freezer_from_config,
)


class FakeCollector:
    """Records what the freezer asks of the collector; collections are reported by hand."""

    def __init__(self) -> None:
        self.callbacks: list[Callable[[Literal["start", "stop"], dict[str, int]], object]] = []
        self.calls: list[str] = []

    def freeze(self) -> None:
        self.calls.append("freeze")

    def unfreeze(self) -> None:
        self.calls.append("unfreeze")

    def collect(self, generation: int = 2) -> int:
        self.calls.append("collect")
        return 7

    def collection(self, generation: int, seconds: float, now: list[float]) -> None:
        """A collection of ``generation`` lasting ``seconds`` of the perf counter."""
        for callback in self.callbacks:
            callback("start", {"generation": generation})
        now[0] += seconds
        for callback in self.callbacks:
            callback("stop", {"generation": generation, "collected": 0, "uncollectable": 0})


@pytest.fixture
def perf(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The freezer's perf counter, advanced by FakeCollector.collection."""
    now = [0.0]
    monkeypatch.setattr("pywren_deferrable.triggers.heap.perf_counter", lambda: now[0])
    return now


def test_first_tend_freezes_what_is_loaded_and_watches_collections() -> None:
    collector, clock = FakeCollector(), [0.0]
    freezer = HeapFreezer(collector=collector, clock=lambda: clock[0])
    freezer.tend()
    assert collector.calls == ["freeze"] and len(collector.callbacks) == 1
    freezer.tend()
    assert collector.calls == ["freeze"] and len(collector.callbacks) == 1


def test_a_slow_full_collection_freezes_its_survivors_at_the_next_tend(perf: list[float]) -> None:
    collector, clock = FakeCollector(), [0.0]
    freezer = HeapFreezer(budget=0.05, collector=collector, clock=lambda: clock[0])
    freezer.tend()
    collector.collection(2, 0.01, perf)  # fast: nothing to do
    collector.collection(0, 0.5, perf)  # young collections do not count, however long
    freezer.tend()
    assert collector.calls == ["freeze"]
    collector.collection(2, 0.2, perf)
    assert collector.calls == ["freeze"], "never from the collector's callback"
    freezer.tend()
    assert collector.calls == ["freeze", "freeze"] and freezer.freezes == 2
    freezer.tend()
    assert collector.calls == ["freeze", "freeze"]


def test_thaw_every_interval_frees_frozen_cyclic_garbage(perf: list[float]) -> None:
    collector, clock = FakeCollector(), [100.0]
    freezer = HeapFreezer(thaw_every=60.0, collector=collector, clock=lambda: clock[0])
    freezer.tend()
    clock[0] = 159.0
    freezer.tend()
    assert collector.calls == ["freeze"]
    clock[0] = 160.0
    freezer.tend()
    assert collector.calls == ["freeze", "unfreeze", "collect", "freeze"] and freezer.thaws == 1
    clock[0] = 200.0
    freezer.tend()
    assert freezer.thaws == 1, "the next thaw is thaw_every after this one"


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="budget"):
        HeapFreezer(budget=-1)
    with pytest.raises(ValueError, match="thaw_every"):
        HeapFreezer(thaw_every=0)


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


@pytest.fixture
def real_freezer() -> Iterator[HeapFreezer]:
    # Triggers run by earlier tests in this process froze it through the process' scheduler.
    if SCHEDULER.heap is not None:
        SCHEDULER.heap.uninstall()
    gc.unfreeze()
    gc.collect()
    freezer = HeapFreezer(budget=0.0, thaw_every=3600.0)
    yield freezer
    freezer.uninstall()
    assert gc.get_freeze_count() == 0


def test_with_the_real_collector_survivors_of_a_full_collection_are_not_walked_again(
    real_freezer: HeapFreezer,
) -> None:
    real_freezer.tend()
    long_lived: list[Any] = [Node() for _ in range(20_000)]
    frozen_before = gc.get_freeze_count()
    gc.collect()  # longer than a budget of 0: its survivors are frozen at the next tend
    real_freezer.tend()
    assert gc.get_freeze_count() >= frozen_before + len(long_lived)
    walked = {id(o) for o in gc.get_objects()}  # every generation but the permanent one
    assert not any(id(n) in walked for n in long_lived)


def test_with_the_real_collector_a_thaw_frees_cyclic_garbage_kept_frozen(real_freezer: HeapFreezer) -> None:
    real_freezer.tend()
    ended = [Node() for _ in range(1_000)]
    gc.collect()
    real_freezer.tend()  # frozen while alive
    del ended  # now cyclic garbage, frozen: the collector does not see it
    assert gc.collect() < 1_000
    assert real_freezer.thaw() >= 1_000
    assert gc.collect() == 0


async def test_the_scheduler_tends_the_heap_before_each_poll() -> None:
    collector = FakeCollector()
    scheduler = PollScheduler(heap=HeapFreezer(collector=collector))
    location = StorageLocation(kind="s3", bucket="bucket", backend="minio", endpoint="http://a:9000")
    async with scheduler.slot(location):
        pass
    assert collector.calls == ["freeze"]
    async with scheduler.slot(location):
        pass
    assert collector.calls == ["freeze"]


def test_the_configuration_turns_the_freezer_off_or_sets_its_thaw(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW__PYWREN_DEFERRABLE__HEAP_FREEZER", raising=False)
    monkeypatch.delenv("AIRFLOW__PYWREN_DEFERRABLE__HEAP_THAW_INTERVAL", raising=False)
    default = heap_freezer_from_config()
    assert default is not None and default.thaw_every == THAW_EVERY

    monkeypatch.setenv("AIRFLOW__PYWREN_DEFERRABLE__HEAP_THAW_INTERVAL", "600")
    configured = heap_freezer_from_config()
    assert configured is not None and configured.thaw_every == 600.0

    monkeypatch.setenv("AIRFLOW__PYWREN_DEFERRABLE__HEAP_FREEZER", "False")
    assert heap_freezer_from_config() is None


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("HEAP_FREEZER", "sometimes", "heap_freezer"),
        ("HEAP_THAW_INTERVAL", "half an hour", "heap_thaw_interval"),
        ("HEAP_THAW_INTERVAL", "0", "heap_thaw_interval must be a number of seconds > 0, got 0.0"),
    ],
)
def test_a_bad_setting_fails_naming_it(
    monkeypatch: pytest.MonkeyPatch, key: str, value: str, message: str
) -> None:
    monkeypatch.setenv(f"AIRFLOW__PYWREN_DEFERRABLE__{key}", value)
    with pytest.raises(AirflowException, match=r"\[pywren_deferrable\]") as raised:
        heap_freezer_from_config()
    assert message in str(raised.value)


def test_the_provider_declares_its_settings_with_the_defaults_the_code_uses() -> None:
    options = get_provider_info()["config"][CONFIG_SECTION]["options"]
    assert options["heap_freezer"]["default"] == "True"
    assert float(options["heap_thaw_interval"]["default"]) == THAW_EVERY
