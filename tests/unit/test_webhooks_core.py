"""``core/webhooks.py``: checks, signatures, the retry schedule, outcomes, ordering."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from customer_service.core import webhooks as hooks
from customer_service.core.webhooks import DeliveryState, Pending, RetryPolicy
from customer_service.errors import BadRequest

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy(base=5.0, cap=3600.0, hours=24.0)


# --- checks -------------------------------------------------------------------

@pytest.mark.parametrize("url", ["https://example.com/hooks", "http://127.0.0.1:8080/x?a=1",
                                 "HTTP://[::1]:9/h"])
def test_good_urls(url: str) -> None:
    assert hooks.check_url(url) == url


@pytest.mark.parametrize(("url", "why"), [
    ("ftp://example.com/x", "not an http:// or https:// URL"),
    ("example.com/hooks", "not an http:// or https:// URL"),
    ("http:///path", "has no host"),
    ("https://", "has no host"),
    ("http://example.com:99999/", "not a valid URL"),
    ("http://exa mple.com/", "contains spaces"),
    ("", "needs a URL"),
    ("http://user:pass@crm.example/h", "has a user name or password"),
    ("http://token@crm.example/h", "has a user name or password"),
    ("https://crm.example/h#part", "has a #fragment, which is never sent"),
    ("https://crm.example/h\x00", "contains control characters"),
])
def test_bad_urls_name_the_option(url: str, why: str) -> None:
    with pytest.raises(BadRequest, match=f"^URL: .*{why}"):
        hooks.check_url(url)


def test_events_are_checked_and_ordered() -> None:
    assert hooks.parse_events("conversation.closed, message.created,message.created") == (
        "message.created", "conversation.closed")
    with pytest.raises(BadRequest, match=r"^--events: unknown event 'message\.sent'; the events "
                                         r"are message\.created, conversation\.created"):
        hooks.parse_events("message.created,message.sent")
    with pytest.raises(BadRequest, match=r"^--events: name at least one"):
        hooks.parse_events(" , ")


def test_secrets() -> None:
    assert hooks.new_secret().startswith("whsec_") and hooks.new_secret() != hooks.new_secret()
    assert hooks.check_secret("s3cret") == "s3cret"
    for bad in ("", "   ", "with space", "x" * 300):
        with pytest.raises(BadRequest, match=r"^--secret: "):
            hooks.check_secret(bad)


# --- signatures ---------------------------------------------------------------

def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = hooks.event_body("evt_1", "ping", NOW, {"x": "你好"})
    assert json.loads(body) == {"id": "evt_1", "type": "ping",
                                "created_at": "2030-01-01T12:00:00.000Z", "data": {"x": "你好"}}
    expected = hmac.new(b"key", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert hooks.sign("key", 1700000000, body) == f"v1={expected}"
    headers = hooks.signed_headers("key", "evt_1", 1700000000, body, "1.2.3")
    assert headers["X-Webhook-Signature"] == f"v1={expected}"
    assert headers["User-Agent"] == "customer-service/1.2.3"
    assert headers["X-Webhook-Timestamp"] == "1700000000"


@given(secret=st.text(min_size=1, max_size=40), body=st.binary(max_size=200),
       stamp=st.integers(0, 2**40), skew=st.integers(-300, 300))
def test_verify_accepts_what_sign_makes_within_the_window(secret: str, body: bytes,
                                                          stamp: int, skew: int) -> None:
    signature = hooks.sign(secret, stamp, body)
    assert hooks.verify(secret, signature, str(stamp), body, stamp + skew)
    assert hooks.verify(secret, f"v1=00 {signature}", str(stamp), body, stamp)  # rotation
    assert not hooks.verify(secret + "x", signature, str(stamp), body, stamp)
    assert not hooks.verify(secret, signature, str(stamp), body + b"!", stamp)
    assert not hooks.verify(secret, signature, str(stamp + 1), body, stamp)


def test_verify_rejects_replays_and_junk() -> None:
    body = b"{}"
    signature = hooks.sign("k", 1000, body)
    assert not hooks.verify("k", signature, "1000", body, 1000 + 301)
    assert not hooks.verify("k", signature, "1000", body, 1000 - 301)
    assert not hooks.verify("k", signature, "soon", body, 1000)
    assert not hooks.verify("k", signature.replace("v1=", "v0="), "1000", body, 1000)


# --- retries ------------------------------------------------------------------

@given(attempts=st.integers(1, 200), draw=st.floats(0, 1))
def test_backoff_is_full_jitter_under_an_exponential_ceiling(attempts: int, draw: float) -> None:
    delay = hooks.backoff(attempts, POLICY, draw)
    ceiling = min(POLICY.cap, POLICY.base * 2 ** (attempts - 1))
    assert 0 <= delay <= ceiling
    assert delay == pytest.approx(draw * ceiling)


def decide(status: int | None, *, attempts: int = 1, retry_after: str | None = None,
           queued_at: datetime = NOW, draw: float = 1.0) -> hooks.AttemptResult:
    return hooks.decide(status=status, error="" if status else "ConnectError: refused",
                        retry_after_header=retry_after, attempts=attempts,
                        queued_at=queued_at, now=NOW, duration_ms=7, policy=POLICY, draw=draw)


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_2xx_is_delivered(status: int) -> None:
    result = decide(status)
    assert result.state is DeliveryState.DELIVERED and result.error == ""


@pytest.mark.parametrize("status", [None, 408, 429, 500, 502, 503, 504, 599])
def test_no_answer_408_429_and_5xx_are_retried(status: int | None) -> None:
    result = decide(status, attempts=3)
    assert result.state is DeliveryState.PENDING
    assert result.next_attempt_at == NOW + timedelta(seconds=20)  # 5 * 2**2, draw 1


@pytest.mark.parametrize("status", [301, 302, 400, 401, 403, 404, 410, 422])
def test_other_statuses_are_dead_at_once(status: int) -> None:
    result = decide(status)
    assert result.state is DeliveryState.DEAD and result.error == f"HTTP {status}"


def test_retry_after_seconds_and_dates_are_honoured_and_capped() -> None:
    assert decide(429, retry_after="120").next_attempt_at == NOW + timedelta(seconds=120)
    assert decide(503, retry_after="Tue, 01 Jan 2030 12:10:00 GMT").next_attempt_at == \
        NOW + timedelta(minutes=10)
    assert decide(429, retry_after="999999").next_attempt_at == NOW + timedelta(hours=1)
    # unreadable: the usual backoff; on a 500 it is not asked for
    assert decide(429, retry_after="soon").next_attempt_at == NOW + timedelta(seconds=5)
    assert decide(500, retry_after="120").next_attempt_at == NOW + timedelta(seconds=5)


@pytest.mark.parametrize(("base", "cap", "retry_after"), [
    (5.0, 1e12, None), (1e300, 1e300, None), (5.0, 1e12, "99999999999999"),
    (5.0, 1e12, "Fri, 31 Dec 9999 23:59:59 GMT")])
def test_a_huge_wait_is_a_dead_letter_not_an_overflow(base: float, cap: float,
                                                      retry_after: str | None) -> None:
    result = hooks.decide(status=503, error="", retry_after_header=retry_after, attempts=60,
                          queued_at=NOW, now=NOW, duration_ms=1,
                          policy=RetryPolicy(base=base, cap=cap, hours=24), draw=1.0)
    assert result.state is DeliveryState.DEAD and "gave up after 24 h" in result.error


def test_retries_end_after_the_retry_period() -> None:
    almost = NOW - timedelta(hours=23, minutes=59, seconds=59)
    assert decide(500, queued_at=almost, draw=0.0).state is DeliveryState.PENDING
    dead = decide(500, queued_at=almost, attempts=12)
    assert dead.state is DeliveryState.DEAD and dead.error.startswith("gave up after 24 h")


@given(attempts=st.lists(st.floats(0, 1), min_size=1, max_size=40))
def test_a_failing_receiver_is_dead_within_the_period_plus_one_cap(attempts: list[float]
                                                                   ) -> None:
    """However the draws fall, no retry is scheduled past ``queued_at + hours``."""
    moment = NOW
    for number, draw in enumerate(attempts, start=1):
        result = hooks.decide(status=503, error="", retry_after_header=None, attempts=number,
                              queued_at=NOW, now=moment, duration_ms=1, policy=POLICY,
                              draw=draw)
        if result.state is DeliveryState.DEAD:
            return
        assert result.next_attempt_at <= NOW + timedelta(hours=POLICY.hours)
        moment = result.next_attempt_at


# --- ordering -----------------------------------------------------------------

def pending(row_id: int, hook: int, conversation: int | None, *, due: int = 0,
            claimed: int | None = None) -> Pending:
    return Pending(row_id, hook, conversation, NOW + timedelta(seconds=due),
                   None if claimed is None else NOW + timedelta(seconds=claimed))


def test_only_the_oldest_pending_row_of_a_conversation_goes() -> None:
    rows = [pending(1, 1, 10), pending(2, 1, 10), pending(3, 1, 11), pending(4, 2, 10),
            pending(5, 1, None), pending(6, 1, None)]
    assert hooks.deliverable(rows, NOW) == [1, 3, 4, 5, 6]


def test_a_claimed_or_later_head_blocks_its_conversation() -> None:
    rows = [pending(1, 1, 10, claimed=5), pending(2, 1, 10), pending(3, 1, 11, due=5),
            pending(4, 1, 11), pending(5, 1, 12, claimed=-1)]
    assert hooks.deliverable(rows, NOW) == [5]


@given(st.lists(st.tuples(st.integers(1, 3), st.one_of(st.none(), st.integers(1, 4)),
                          st.integers(-2, 2)), max_size=40))
def test_deliverable_never_passes_an_older_pending_row(spec: list[tuple[int, int | None, int]]
                                                       ) -> None:
    rows = [pending(i + 1, hook, conv, due=due) for i, (hook, conv, due) in enumerate(spec)]
    chosen = set(hooks.deliverable(rows, NOW))
    for row in rows:
        if row.id in chosen and row.conversation_id is not None:
            assert not any(o.id < row.id and o.webhook_id == row.webhook_id
                           and o.conversation_id == row.conversation_id for o in rows)
        if row.id in chosen:
            assert row.next_attempt_at <= NOW
