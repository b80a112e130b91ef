"""The ``Store`` contract for visitor context, run against every backend (see conftest.py):
a visit's facts and pages stored and updated, the pages capped, a new visit after a
silence, and the other conversations of a visitor and of its contact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from customer_service.core.models import NewMessage, Role
from customer_service.core.visitor_context import (
    EARLIER_LIMIT,
    MAX_PAGES,
    VISIT_GAP,
    ContextUpdate,
    PageSeen,
    VisitFacts,
)
from customer_service.storage.base import Store

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def hello(cid: int, when: datetime, url: str, *, referrer: str = "https://search.example/",
          timezone: str = "Europe/Paris", user_agent: str = CHROME,
          ip: str = "203.0.113.7") -> ContextUpdate:
    update = ContextUpdate(cid, when, VisitFacts(user_agent, ip, timezone, referrer))
    update.add_page(PageSeen(url, "", when))
    return update


def pages(cid: int, when: datetime, *urls: str) -> ContextUpdate:
    update = ContextUpdate(cid, when)
    for index, url in enumerate(urls):
        update.add_page(PageSeen(url, f"Title {url.rsplit('/', 1)[-1]}",
                                 when + timedelta(milliseconds=index)))
    return update


async def new_conversation(store: Store, token: str) -> tuple[int, int]:
    visitor = await store.create_visitor(f"hash-{token}", "Vera", "vera@example.com", "/")
    return visitor.id, (await store.current_conversation(visitor.id)).id


async def test_a_visit_stored_and_updated(store: Store) -> None:
    _, cid = await new_conversation(store, "a")
    assert (await store.conversation_context(cid)) is not None
    empty = await store.conversation_context(cid)
    assert empty is not None and empty.stored is None and empty.pages == ()
    assert empty.visitor is not None and empty.visitor.name == "Vera"
    assert empty.contact is None and empty.earlier == () and empty.earlier_total == 0

    await store.record_visitor_context([hello(cid, at(0), "https://shop.example/")])
    first = await store.conversation_context(cid)
    assert first is not None and first.stored is not None
    assert (first.stored.user_agent, first.stored.ip, first.stored.timezone,
            first.stored.referrer, first.stored.page) == (
        CHROME, "203.0.113.7", "Europe/Paris", "https://search.example/", "https://shop.example/")
    assert first.stored.visit_started_at == at(0)
    assert [p.url for p in first.pages] == ["https://shop.example/"]

    # pages later in the visit: the current page follows, the facts stay
    await store.record_visitor_context([pages(cid, at(60), "https://shop.example/cart",
                                              "https://shop.example/pay")])
    later = await store.conversation_context(cid)
    assert later is not None and later.stored is not None
    assert (later.stored.page, later.stored.title) == ("https://shop.example/pay", "Title pay")
    assert later.stored.referrer == "https://search.example/"
    assert later.stored.updated_at == at(60)
    assert [(p.url, p.title) for p in later.pages] == [
        ("https://shop.example/", ""), ("https://shop.example/cart", "Title cart"),
        ("https://shop.example/pay", "Title pay")]

    # a second tab's hello on the page it is on: new facts, no second copy of the page
    await store.record_visitor_context([hello(cid, at(90), "https://shop.example/pay",
                                              timezone="Asia/Tokyo", ip="2001:db8::1")])
    again = await store.conversation_context(cid)
    assert again is not None and again.stored is not None
    assert (again.stored.timezone, again.stored.ip) == ("Asia/Tokyo", "2001:db8::1")
    assert len(again.pages) == 3
    assert again.stored.visit_started_at == at(0)


async def test_a_silence_starts_a_new_visit(store: Store) -> None:
    _, cid = await new_conversation(store, "a")
    await store.record_visitor_context([hello(cid, at(0), "https://shop.example/a")])
    await store.record_visitor_context([pages(cid, at(10), "https://shop.example/b")])
    back = at(10) + VISIT_GAP
    await store.record_visitor_context([hello(cid, back, "https://shop.example/b",
                                              referrer="")])
    found = await store.conversation_context(cid)
    assert found is not None and found.stored is not None
    assert found.stored.visit_started_at == back
    assert found.stored.referrer == ""
    # only this visit's pages; the same URL as before counts as this visit's first page
    assert [(p.url, p.at) for p in found.pages] == [("https://shop.example/b", back)]


async def test_pages_are_capped(store: Store) -> None:
    _, cid = await new_conversation(store, "a")
    _, other = await new_conversation(store, "b")
    await store.record_visitor_context([hello(other, at(0), "https://shop.example/other")])
    for batch in range(3):
        urls = [f"https://shop.example/p{batch * 30 + i}" for i in range(30)]
        await store.record_visitor_context([pages(cid, at(batch), *urls)])
    found = await store.conversation_context(cid)
    assert found is not None
    assert len(found.pages) == MAX_PAGES
    assert found.pages[0].url == f"https://shop.example/p{90 - MAX_PAGES}"
    assert found.pages[-1].url == "https://shop.example/p89"
    untouched = await store.conversation_context(other)
    assert untouched is not None and [p.url for p in untouched.pages] == [
        "https://shop.example/other"]


async def test_one_batch_for_several_conversations_skips_unknown_ones(store: Store) -> None:
    _, first = await new_conversation(store, "a")
    _, second = await new_conversation(store, "b")
    await store.record_visitor_context([
        hello(second, at(0), "https://shop.example/two"),
        hello(second + 1000, at(0), "https://shop.example/nobody"),
        hello(first, at(0), "https://shop.example/one"),
    ])
    one, two = await store.conversation_context(first), await store.conversation_context(second)
    assert one is not None and one.stored is not None and one.stored.page.endswith("/one")
    assert two is not None and two.stored is not None and two.stored.page.endswith("/two")
    assert await store.conversation_context(second + 1000) is None
    await store.record_visitor_context([])


async def test_earlier_conversations_of_the_visitor_and_its_contact(store: Store) -> None:
    # device A signs in: contact "u1" with its conversation
    phone, phone_cid = await new_conversation(store, "phone")
    contact, contact_cid = await store.link_visitor(phone, "u1", "Sam", None)
    assert contact_cid.id == phone_cid
    # device B chats anonymously first, then signs in as the same user
    laptop, laptop_cid = await new_conversation(store, "laptop")
    await store.append_messages([NewMessage(laptop_cid, Role.VISITOR, laptop, "Sam", "hi",
                                            client_id="c1")])
    _, served = await store.link_visitor(laptop, "u1", None, None)
    assert served.id == phone_cid  # the contact's conversation continues
    # a stranger's conversation never shows
    await new_conversation(store, "stranger")

    found = await store.conversation_context(phone_cid)
    assert found is not None
    assert found.contact is not None and found.contact.external_id == "u1"
    assert [c.id for c in found.earlier] == [laptop_cid]
    assert found.earlier_total == 1
    brief = found.earlier[0]
    assert brief.status == "open" and brief.last_message_at is not None
    assert brief.created_at <= brief.last_message_at

    # and from the laptop's conversation, the contact's one (its visitor is linked now)
    other = await store.conversation_context(laptop_cid)
    assert other is not None and [c.id for c in other.earlier] == [phone_cid]
    assert other.earlier[0].last_message_at is None  # nothing written there
    assert other.contact is not None and other.contact.id == contact.id


async def test_earlier_conversations_are_listed_newest_first_and_counted(store: Store) -> None:
    visitor, _ = await new_conversation(store, "a")
    await store.link_visitor(visitor, "many", None, None)
    contact = await store.get_contact_by_external_id("many")
    assert contact is not None
    ids: list[int] = []
    for n in range(EARLIER_LIMIT + 3):
        other, cid = await new_conversation(store, f"d{n}")
        await store.link_visitor(other, "many", None, None)  # served the contact's own
        ids.append(cid)
    current = (await store.current_conversation(visitor)).id
    found = await store.conversation_context(current)
    assert found is not None
    assert found.earlier_total == EARLIER_LIMIT + 3
    assert [c.id for c in found.earlier] == sorted(ids, reverse=True)[:EARLIER_LIMIT]
