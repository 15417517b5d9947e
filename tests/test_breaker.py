"""CircuitBreaker: closed, open and half-open, driven by an injected clock."""

from __future__ import annotations

import pickle
import threading
import time

import pytest

from compilecache import ConfigError
from compilecache.stores._breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_starts_closed_and_allows(clock: Clock) -> None:
    breaker = CircuitBreaker(clock=clock)
    assert breaker.state == "closed"
    assert all(breaker.allow() for _ in range(10))


def test_opens_after_threshold_consecutive_failures(clock: Clock) -> None:
    breaker = CircuitBreaker(failure_threshold=3, cooldown=10, clock=clock)
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state == "closed"
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open"
    assert not breaker.allow()


def test_success_resets_the_failure_count(clock: Clock) -> None:
    breaker = CircuitBreaker(failure_threshold=3, cooldown=10, clock=clock)
    for _ in range(5):
        breaker.record_failure()
        breaker.record_failure()
        breaker.record_success()
    assert breaker.state == "closed"
    assert breaker.allow()


def test_refuses_until_cooldown_then_lets_exactly_one_probe(clock: Clock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown=10, clock=clock)
    breaker.record_failure()
    clock.advance(9.999)
    assert breaker.state == "open"
    assert not breaker.allow()
    clock.advance(0.001)
    assert breaker.state == "half-open"
    assert breaker.allow() is True  # the probe
    assert [breaker.allow() for _ in range(5)] == [False] * 5
    assert breaker.state == "half-open"


def test_probe_success_closes(clock: Clock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown=10, clock=clock)
    breaker.record_failure()
    clock.advance(10)
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed"
    assert all(breaker.allow() for _ in range(5))
    # Closed again means a fresh count: one failure (threshold 1) reopens.
    breaker.record_failure()
    assert breaker.state == "open"


def test_probe_failure_reopens_for_a_full_cooldown(clock: Clock) -> None:
    breaker = CircuitBreaker(failure_threshold=2, cooldown=10, clock=clock)
    breaker.record_failure()
    breaker.record_failure()
    clock.advance(15)
    assert breaker.allow()
    breaker.record_failure()  # a single failure suffices in half-open
    assert breaker.state == "open"
    clock.advance(9)
    assert not breaker.allow()
    clock.advance(1)
    assert breaker.allow()


def test_reports_from_stragglers_while_open_are_ignored(clock: Clock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown=10, clock=clock)
    assert breaker.allow()  # a slow call starts while closed
    breaker.record_failure()  # another call fails: open
    breaker.record_success()  # the slow call finishes
    assert breaker.state == "open"
    assert not breaker.allow()
    clock.advance(5)
    breaker.record_failure()  # a straggler failure does not restart the cooldown
    clock.advance(5)
    assert breaker.allow()


def test_a_lost_probe_is_replaced_after_a_cooldown(clock: Clock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown=10, clock=clock)
    breaker.record_failure()
    clock.advance(10)
    assert breaker.allow()  # this probe never reports
    clock.advance(9)
    assert not breaker.allow()
    clock.advance(1)
    assert breaker.allow()


def test_zero_cooldown_probes_at_once(clock: Clock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown=0, clock=clock)
    breaker.record_failure()
    assert breaker.allow()


def test_one_probe_among_many_threads() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown=1, clock=clock)
    breaker.record_failure()
    clock.advance(1)
    barrier = threading.Barrier(16)
    allowed: list[bool] = []

    def ask() -> None:
        barrier.wait()
        allowed.append(breaker.allow())

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert allowed.count(True) == 1


def test_default_clock_is_monotonic_time() -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown=0.05)
    breaker.record_failure()
    assert not breaker.allow()
    time.sleep(0.06)
    assert breaker.allow()


def test_pickle_keeps_settings_not_state() -> None:
    breaker = CircuitBreaker(failure_threshold=2, cooldown=7.5)
    breaker.record_failure()
    breaker.record_failure()
    copy = pickle.loads(pickle.dumps(breaker))
    assert (copy.failure_threshold, copy.cooldown) == (2, 7.5)
    assert copy.state == "closed"
    assert breaker.state == "open"


@pytest.mark.parametrize(
    ("options", "setting"),
    [
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"failure_threshold": 2.5}, "failure_threshold"),
        ({"cooldown": -1}, "cooldown"),
        ({"cooldown": float("nan")}, "cooldown"),
        ({"cooldown": "30"}, "cooldown"),
    ],
)
def test_bad_settings_raise_config_error(options: dict[str, object], setting: str) -> None:
    with pytest.raises(ConfigError, match=setting) as info:
        CircuitBreaker(**options)  # type: ignore[arg-type]
    assert info.value.setting == setting
