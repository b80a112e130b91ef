"""Login failure throttling (``core.login_failures``) and password hashing (``auth``)."""

from __future__ import annotations

import pytest

from customer_service import auth
from customer_service.core.login_failures import (
    NONE,
    Failures,
    LoginLimits,
    after_failure,
    lock_seconds,
    retry_after,
    retry_after_header,
    wait_seconds,
)

LIMITS = LoginLimits(per_user=3, per_address=10, window=600.0)


def fail(times: int, start: float = 100.0, every: float = 0.0,
         window: float = LIMITS.window) -> Failures:
    failures = NONE
    for n in range(times):
        failures = after_failure(failures, start + n * every, window)
    return failures


def test_below_the_limit_nothing_waits() -> None:
    assert wait_seconds(fail(2), LIMITS.per_user, LIMITS.window, 100.0) == 0.0
    assert retry_after(fail(9), fail(2), LIMITS, 100.0) == 0.0


def test_the_lock_doubles_with_each_failure_past_the_limit_up_to_the_window() -> None:
    assert [lock_seconds(n, 3, 600.0) for n in range(1, 8)] == [0, 0, 1, 2, 4, 8, 16]
    assert lock_seconds(13, 3, 600.0) == 600.0  # 2^10 s, capped
    assert lock_seconds(10**9, 3, 600.0) == 600.0  # no overflow on absurd counts
    assert wait_seconds(fail(3), 3, 600.0, 100.0) == 1.0
    assert wait_seconds(fail(3), 3, 600.0, 100.4) == pytest.approx(0.6)
    assert wait_seconds(fail(3), 3, 600.0, 101.0) == 0.0
    assert wait_seconds(fail(5), 3, 600.0, 100.0) == 4.0


def test_either_key_can_hold_a_login_back() -> None:
    user_locked = retry_after(NONE, fail(4), LIMITS, 100.0)
    address_locked = retry_after(fail(10), NONE, LIMITS, 100.0)
    assert user_locked == 2.0 and address_locked == 1.0
    assert retry_after(fail(11), fail(4), LIMITS, 100.0) == 2.0


def test_counts_are_forgotten_after_a_quiet_window() -> None:
    failures = fail(6)
    assert wait_seconds(Failures(13, 100.0), 3, 600.0, 100.0 + 599) == 1.0
    assert wait_seconds(failures, 3, 600.0, 100.0 + 600) == 0.0
    assert after_failure(failures, 100.0 + 600, 600.0) == Failures(1, 700.0)
    assert after_failure(failures, 100.0 + 599, 600.0) == Failures(7, 699.0)


def test_a_last_failure_ahead_of_the_clock_counts_as_now() -> None:
    """Another instance's clock, or a hostile value in Redis, cannot lock for longer."""
    ahead = Failures(3, 10**12)
    assert wait_seconds(ahead, 3, 600.0, 100.0) == 1.0
    assert wait_seconds(Failures(-5, 100.0), 3, 600.0, 100.0) == 0.0


def test_retry_after_header_is_whole_seconds_and_never_zero() -> None:
    assert [retry_after_header(s) for s in (0.001, 0.5, 1.0, 1.2, 599.9)] == [1, 1, 1, 2, 600]


def test_a_hash_records_its_cost_and_old_ones_verify() -> None:
    old = auth.hash_password("pw-one-two", n=2**4)
    assert old.startswith("scrypt$16$8$1$") and auth.verify_password("pw-one-two", old)
    assert not auth.verify_password("pw-one-tw0", old)
    assert auth.needs_rehash(old, 2**14)
    new = auth.hash_password("pw-one-two", n=2**14)
    assert not auth.needs_rehash(new, 2**14) and not auth.needs_rehash(new, 2**10)
    assert auth.needs_rehash(auth.hash_password("pw", n=2**14, r=4), 2**14)


def test_the_default_cost_is_owasps_and_fits_in_maxmem() -> None:
    """hashlib's default maxmem (32 MiB) refuses N=2^17 at r=8: it must be raised."""
    assert auth.SCRYPT_N == 2**17
    stored = auth.hash_password("correct horse")
    assert stored.startswith("scrypt$131072$8$1$")
    assert auth.verify_password("correct horse", stored)


@pytest.mark.parametrize("stored", [
    "", "bcrypt$x", "scrypt$16$8$1$zz$00", "scrypt$15$8$1$00$00",
    f"scrypt${2**21}$8$1$00$00", "scrypt$16$0$1$00$00", "scrypt$16$8$99$00$00",
    "scrypt$16$8$1$00$",
])
def test_unusable_hashes_never_verify_nor_ask_for_a_rehash(stored: str) -> None:
    assert not auth.verify_password("anything", stored)
    assert not auth.needs_rehash(stored, 2**17)
