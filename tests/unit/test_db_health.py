"""The write-health record behind ``/healthz``'s ``db: degraded`` (pure, a clock passed in)."""

from __future__ import annotations

from customer_service.core.db_health import WriteHealth


def test_healthy_until_a_write_fails() -> None:
    health = WriteHealth(window=10)
    assert not health.degraded(0.0)
    health.succeeded(1.0)
    assert not health.degraded(2.0)
    health.failed(3.0)
    assert health.degraded(3.5)
    assert health.failures == 1


def test_a_later_success_heals_it_at_once() -> None:
    health = WriteHealth(window=10)
    health.failed(1.0)
    health.succeeded(2.0)
    assert not health.degraded(2.0)


def test_a_failure_is_forgotten_after_the_window_even_without_writes() -> None:
    health = WriteHealth(window=10)
    health.failed(1.0)
    assert health.degraded(10.9)
    assert not health.degraded(11.0)


def test_failures_after_a_success_degrade_again() -> None:
    health = WriteHealth(window=10)
    health.failed(1.0)
    health.succeeded(2.0)
    health.failed(3.0)
    assert health.degraded(4.0)
    assert health.failures == 2
