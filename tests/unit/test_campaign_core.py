"""The campaign cores: templates, audience matching, pacing and retries (no event loop)."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from customer_service.campaigns.ai_edge import EmptyReply, Generated, parse_completion
from customer_service.campaigns.lease import holder_is_dead, owner_id
from customer_service.core.campaign_audience import (
    AudienceError,
    matches,
    parse_attr,
    parse_attrs,
    parse_audience_lines,
)
from customer_service.core.campaign_pacing import (
    DEFAULT_PAUSE,
    MARGIN,
    Action,
    Failure,
    Pacer,
    RetryPolicy,
    budget_allows,
    classify_status,
)
from customer_service.core.campaign_template import (
    MissingField,
    TemplateError,
    parse_template,
    render,
    unknown_attributes,
)
from customer_service.core.models import Contact
from customer_service.errors import AiBadResponse

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def contact(**attributes: object) -> Contact:
    return Contact(id=1, external_id="u-1", name="Ada", email="ada@example.com", phone="",
                   tags=("vip",), attributes=dict(attributes), unsubscribed=False,
                   last_campaign_at=None, created_at=NOW, updated_at=NOW)


# --- templates ---------------------------------------------------------------------------

def test_template_renders_contact_fields_and_attributes() -> None:
    template = parse_template("Hi {name} ({external_id}), {attributes.plan}/{plan} "
                              "{seats} {vip} {{literal}} {phone}.")
    text = render(template, contact(plan="pro", seats=10, vip=True))
    assert text == "Hi Ada (u-1), pro/pro 10 true {literal} ."
    assert template.attributes == ("plan", "seats", "vip")


def test_template_missing_attribute_names_it() -> None:
    template = parse_template("Your {plan} plan")
    with pytest.raises(MissingField, match="'plan'"):
        render(template, contact())
    with pytest.raises(MissingField):
        render(template, contact(plan=None))


@pytest.mark.parametrize(("text", "error"), [
    ("Hi {name", "unbalanced '{' at character 4"),
    ("Hi name}", "unbalanced '}' at character 8"),
    ("Hi {}", "empty field"),
    ("Hi {a{b}", "unbalanced '{' at character 4"),
    ("{attributes.}", "names no attribute"),
])
def test_template_errors_say_where(text: str, error: str) -> None:
    with pytest.raises(TemplateError, match=error):
        parse_template(text)


def test_unknown_attributes_checks_the_sample() -> None:
    template = parse_template("{name} {plan} {city}")
    sample = [contact(plan="pro"), contact(plan="free")]
    assert unknown_attributes(template, sample) == ["city"]
    assert unknown_attributes(template, [*sample, contact(city="Oslo")]) == []


# --- audience ----------------------------------------------------------------------------

def test_attr_parsing_and_matching() -> None:
    assert parse_attr("plan=pro") == ("plan", "pro")
    assert parse_attr("expr=a=b") == ("expr", "a=b")
    with pytest.raises(AudienceError, match="expected key=value"):
        parse_attr("plan")
    with pytest.raises(AudienceError, match="given twice"):
        parse_attrs(["plan=pro", "plan=free"])
    attrs = parse_attrs(["plan=pro", "seats=10", "vip=true"])
    assert matches(contact(plan="pro", seats=10, vip=True), attrs)
    assert not matches(contact(plan="pro", seats=10.5, vip=True), attrs)
    assert not matches(contact(plan="pro", seats=10), attrs)
    assert matches(contact(), {})


def test_audience_file_lines() -> None:
    assert parse_audience_lines(["a", "", " b ", "# note", "a"]) == ["a", "b"]
    with pytest.raises(AudienceError, match="line 2"):
        parse_audience_lines(["a", "x" * 300])


# --- pacing ------------------------------------------------------------------------------

def drive(pacer: Pacer, until: float, step: float = 0.001) -> list[float]:
    """Send whenever the pacer allows, on a clock that moves by ``step``."""
    sent: list[float] = []
    now = 0.0
    while now < until:
        if pacer.delay(now) == 0:
            pacer.sent(now)
            sent.append(now)
        now += step
    return sent


def max_in_window(times: list[float], window: float = 1.0) -> int:
    best = 0
    start = 0
    for end, moment in enumerate(times):
        while moment - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_pacer_never_exceeds_the_rate_in_any_second() -> None:
    pacer = Pacer(10.0)
    sent = drive(pacer, 10.0)
    assert max_in_window(sent) <= 10
    assert len(sent) >= int(10 * 10 * MARGIN) - 1


def test_pacer_late_request_does_not_let_others_bunch() -> None:
    pacer = Pacer(5.0)
    pacer.sent(0.0)
    # nobody asked for 3 s: the next one goes at once, the one after a full interval later
    assert pacer.delay(3.0) == 0
    pacer.sent(3.0)
    assert pacer.delay(3.0) == pytest.approx(1 / (5 * MARGIN))


def test_429_pauses_everyone_halves_then_recovers() -> None:
    pacer = Pacer(20.0)
    pacer.sent(0.0)
    end = pacer.rate_limited(0.5, 2.0)
    assert end == 2.5
    assert pacer.current == 10.0
    assert pacer.delay(1.0) == pytest.approx(1.5)
    # the other 429s of requests sent before the pause change nothing
    pacer.rate_limited(0.6, 2.0)
    assert pacer.current == 10.0
    assert pacer.rate_limited_count == 2
    sent = drive(pacer, 30.0)
    assert sent[0] >= 2.5
    assert max_in_window(sent) <= 20
    assert pacer.current == 20.0  # back to the rate, additively
    early = [t for t in sent if t < 3.5]
    assert len(early) <= 11


def test_429_without_retry_after_and_floor() -> None:
    pacer = Pacer(16.0)
    now = 0.0
    for _ in range(10):
        now = pacer.rate_limited(now, None)
    assert pacer.current == 1.0
    assert now == pytest.approx(10 * DEFAULT_PAUSE)


def test_in_flight_figures() -> None:
    pacer = Pacer(1.0)
    pacer.begin(0.0)
    pacer.begin(0.0)
    pacer.end(1.0)
    pacer.end(2.0)
    assert pacer.max_in_flight == 2
    assert pacer.average_in_flight(2.0) == pytest.approx(1.5)


def test_retry_policy() -> None:
    policy = RetryPolicy(max_attempts=3, base_delay=0.5, max_delay=8.0, max_rate_limited=2)
    rng = random.Random(1)
    first = policy.decide(Failure.RETRYABLE, 1, 0, rng)
    assert first.action is Action.RETRY and 0.25 <= first.delay <= 0.5
    second = policy.decide(Failure.RETRYABLE, 2, 0, rng)
    assert 0.5 <= second.delay <= 1.0
    assert policy.decide(Failure.RETRYABLE, 3, 0).action is Action.GIVE_UP
    assert policy.decide(Failure.FINAL, 1, 0).action is Action.GIVE_UP
    assert policy.decide(Failure.RATE_LIMITED, 0, 1).action is Action.RETRY
    assert policy.decide(Failure.RATE_LIMITED, 0, 2).action is Action.GIVE_UP
    assert policy.decide(Failure.CONFIG, 0, 0).action is Action.STOP_CAMPAIGN
    assert [classify_status(s) for s in (429, 401, 404, 500, 503, 400)] == [
        Failure.RATE_LIMITED, Failure.CONFIG, Failure.CONFIG, Failure.RETRYABLE,
        Failure.RETRYABLE, Failure.FINAL]


def test_budget() -> None:
    assert budget_allows(0, 0, 100, None)
    assert budget_allows(800, 100, 100, 1000)
    assert not budget_allows(801, 100, 100, 1000)


# --- the AI edge's parsing and the lease holder ------------------------------------------

def test_completion_parsing() -> None:
    body = (b'{"choices":[{"message":{"role":"assistant","content":" Hi Ada! "}}],'
            b'"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}')
    assert parse_completion(body, 40) == Generated("Hi Ada!", 15)
    estimated = parse_completion(b'{"choices":[{"message":{"content":"12345678"}}]}', 8)
    assert estimated == Generated("12345678", 4)
    with pytest.raises(EmptyReply):
        parse_completion(b'{"choices":[{"message":{"content":" \\u200b "}}]}', 1)
    with pytest.raises(AiBadResponse, match="no choices"):
        parse_completion(b'{"choices":[]}', 1)
    with pytest.raises(AiBadResponse, match="malformed"):
        parse_completion(b"{not json", 1)


def test_a_dead_local_lease_holder_is_noticed() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    host = socket.gethostname()
    assert holder_is_dead(f"{host}:{child.pid}:abcd")
    assert not holder_is_dead(f"{host}:{os.getpid()}:abcd")  # alive (this process)
    assert not holder_is_dead(f"elsewhere:{child.pid}:abcd")  # another host: cannot tell
    assert not holder_is_dead("garbage")
    assert owner_id().startswith(f"{host}:{os.getpid()}:")
