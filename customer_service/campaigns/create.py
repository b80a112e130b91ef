"""Creating a campaign: check what it asks for, then materialise its audience in pages.

The audience is read twice, a page at a time (never all of it in memory): a first
pass stops at ``SAMPLE`` matching contacts, to refuse an empty audience and a
template field no contact has before anything is stored; the second writes the
recipients. The campaign is created ``paused`` and only becomes ``ready`` (or
``scheduled``) once all its recipients are in: a create that is interrupted leaves a
paused campaign nobody runs by mistake (cancel it and create it again).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import dataclass

from customer_service.core.campaign_audience import describe, matches
from customer_service.core.campaign_template import (
    Template,
    TemplateError,
    unknown_attributes,
)
from customer_service.core.models import Campaign, CampaignSpec, CampaignStatus, Contact
from customer_service.errors import CustomerServiceError
from customer_service.storage.base import Store

PAGE = 1000
SAMPLE = 1000


class NoAudience(CustomerServiceError):
    code = "bad_request"
    http_status = 400


@dataclass(frozen=True, slots=True)
class Audience:
    tags: tuple[str, ...] = ()
    attrs: dict[str, str] | None = None
    external_ids: Sequence[str] | None = None
    """From ``--audience-file`` (``file`` names it in messages)."""
    file: str | None = None

    def describe(self) -> str:
        return describe(self.tags, self.attrs or {}, self.file)


@dataclass(slots=True)
class Resolution:
    unknown_ids: int = 0
    first_unknown: str = ""


async def audience_pages(store: Store, audience: Audience, resolution: Resolution | None = None
                         ) -> AsyncGenerator[list[Contact], None]:
    """The audience's contacts, a page at a time, by id (the file's ids in file order)."""
    attrs = audience.attrs or {}
    tags = set(audience.tags)
    if audience.external_ids is not None:
        ids = audience.external_ids
        for start in range(0, len(ids), PAGE):
            page: list[Contact] = []
            chunk = ids[start:start + PAGE]
            found = {c.external_id: c for c in await store.contacts_by_external_ids(chunk)}
            for external_id in chunk:
                contact = found.get(external_id)
                if contact is None:
                    if resolution is not None:
                        resolution.unknown_ids += 1
                        resolution.first_unknown = resolution.first_unknown or external_id
                    continue
                if tags.issubset(contact.tags) and matches(contact, attrs):
                    page.append(contact)
            if page:
                yield page
        return
    after = 0
    while True:
        contacts = await store.list_contacts(after_id=after, limit=PAGE, tags=audience.tags)
        if not contacts:
            return
        after = contacts[-1].id
        chosen = [c for c in contacts if matches(c, attrs)]
        if chosen:
            yield chosen


async def sample(store: Store, audience: Audience) -> tuple[list[Contact], Resolution]:
    """Up to ``SAMPLE`` contacts of the audience (the first pass)."""
    found: list[Contact] = []
    resolution = Resolution()
    async with aclosing(audience_pages(store, audience, resolution)) as pages:
        async for page in pages:
            found.extend(page)
            if len(found) >= SAMPLE:
                break
    return found[:SAMPLE], resolution


def check_fields(templates: Sequence[tuple[str, Template]], contacts: Sequence[Contact]) -> None:
    """Refuse a template naming an attribute no sampled contact has."""
    for what, template in templates:
        missing = unknown_attributes(template, contacts)
        if missing:
            names = ", ".join("{" + key + "}" for key in missing)
            raise TemplateError(
                f"the {what} names {names}, which no contact of the audience has "
                f"(checked {len(contacts):,}); the fields are {{name}}, {{email}}, {{phone}}, "
                "{external_id} and the contacts' attributes")


async def create_campaign(store: Store, spec: CampaignSpec, audience: Audience,
                          templates: Sequence[tuple[str, Template]],
                          resolution: Resolution | None = None) -> tuple[Campaign, int]:
    """Check, create and materialise; return the campaign (ready or scheduled) and how
    many recipients it has. Raise ``NoAudience`` or ``TemplateError``. ``resolution``
    counts the ids of an audience file that are no contact (left out)."""
    contacts, sampled = await sample(store, audience)
    if not contacts:
        extra = ""
        if sampled.unknown_ids:
            extra = (f" ({sampled.unknown_ids:,} id(s) of the file are not contacts, "
                     f"the first {sampled.first_unknown!r})")
        raise NoAudience(f"no contacts match {audience.describe()}{extra}; nothing created")
    check_fields(templates, contacts)
    campaign = await store.create_campaign(spec, CampaignStatus.PAUSED)
    total = 0
    async for page in audience_pages(store, audience, resolution):
        total += await store.add_recipients(campaign.id, [c.id for c in page])
    final = CampaignStatus.SCHEDULED if spec.scheduled_at is not None else CampaignStatus.READY
    campaign = await store.set_campaign_status(campaign.id, final,
                                               expected=(CampaignStatus.PAUSED,))
    return campaign, total
