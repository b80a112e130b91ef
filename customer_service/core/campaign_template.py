"""Message and prompt templates of campaigns: ``Hello {name}, your {plan} plan...``.

Pure. A template is parsed once (``parse_template``) into literal text and fields;
rendering a contact is then a join. The fields:

- ``{name}``, ``{email}``, ``{phone}``, ``{external_id}``: the contact's own fields (an
  empty one renders empty);
- ``{attributes.KEY}``, or ``{KEY}`` for short when KEY is not one of the four above: the
  contact's attribute KEY. A string renders as it is, a number or ``true``/``false`` as
  JSON writes it, a list or object as compact JSON. A contact that lacks the attribute
  (or has ``null``) cannot be rendered: ``MissingField`` names it, and the runner marks
  that recipient ``failed`` with the reason (a message reading "your  plan" is worse
  than none).

``{{`` and ``}}`` stand for literal braces. An unbalanced brace or an empty field is a
``TemplateError`` naming the position.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from customer_service.core.models import Contact
from customer_service.errors import CustomerServiceError

CONTACT_FIELDS = ("name", "email", "phone", "external_id")
ATTRIBUTE_PREFIX = "attributes."


class TemplateError(CustomerServiceError):
    """A template that cannot be parsed, or whose fields no contact of the audience has."""

    code = "bad_request"
    http_status = 400


class MissingField(CustomerServiceError):
    """A contact lacks an attribute the template names."""

    code = "bad_request"
    http_status = 400

    def __init__(self, field: str) -> None:
        super().__init__(f"the contact has no attribute {field!r} (the template names it)")
        self.field = field


@dataclass(frozen=True, slots=True)
class Field:
    source: str
    """The text between the braces, as written (for messages)."""
    attribute: str | None
    """The attribute key, or None for one of ``CONTACT_FIELDS`` (then ``name`` says which)."""
    name: str


@dataclass(frozen=True, slots=True)
class Template:
    parts: tuple[str | Field, ...]

    @property
    def fields(self) -> tuple[Field, ...]:
        return tuple(part for part in self.parts if isinstance(part, Field))

    @property
    def attributes(self) -> tuple[str, ...]:
        """The attribute keys it names, each once, in order."""
        return tuple(dict.fromkeys(f.attribute for f in self.fields if f.attribute is not None))


def _field(source: str, position: int) -> Field:
    name = source.strip()
    if not name:
        raise TemplateError(f"empty field '{{}}' at character {position + 1}; write '{{{{' "
                            "for a literal brace")
    if name.startswith(ATTRIBUTE_PREFIX):
        key = name[len(ATTRIBUTE_PREFIX):]
        if not key:
            raise TemplateError(f"field {{{source}}} at character {position + 1} names no "
                                "attribute")
        return Field(source, key, key)
    if name in CONTACT_FIELDS:
        return Field(source, None, name)
    return Field(source, name, name)


def parse_template(text: str) -> Template:
    """Split ``text`` into literal pieces and fields; raise ``TemplateError``."""
    parts: list[str | Field] = []
    literal: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        char = text[i]
        if char == "{":
            if text.startswith("{{", i):
                literal.append("{")
                i += 2
                continue
            end = text.find("}", i + 1)
            nested = text.find("{", i + 1)
            if end < 0 or (0 <= nested < end):
                raise TemplateError(f"unbalanced '{{' at character {i + 1}: close the field "
                                    "with '}' or write '{{' for a literal brace")
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(_field(text[i + 1:end], i))
            i = end + 1
        elif char == "}":
            if text.startswith("}}", i):
                literal.append("}")
                i += 2
                continue
            raise TemplateError(f"unbalanced '}}' at character {i + 1}: write '}}}}' for a "
                                "literal brace")
        else:
            literal.append(char)
            i += 1
    if literal:
        parts.append("".join(literal))
    return Template(tuple(parts))


def value_text(value: object) -> str:
    """How an attribute value reads in a message (and in ``--attr`` matching)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def render(template: Template, contact: Contact) -> str:
    """The template filled in for ``contact``; raise ``MissingField``."""
    out: list[str] = []
    for part in template.parts:
        if isinstance(part, str):
            out.append(part)
        elif part.attribute is None:
            out.append(str(getattr(contact, part.name)))
        else:
            value = contact.attributes.get(part.attribute)
            if value is None:
                raise MissingField(part.attribute)
            out.append(value_text(value))
    return "".join(out)


def unknown_attributes(template: Template, sample: Iterable[Contact]) -> list[str]:
    """The attributes the template names that no contact of ``sample`` has (non-null)."""
    wanted = set(template.attributes)
    for contact in sample:
        if not wanted:
            break
        wanted -= {key for key in wanted if contact.attributes.get(key) is not None}
    return [key for key in template.attributes if key in wanted]
