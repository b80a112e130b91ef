"""The string tables of the widget, the chat page and the dashboard (web/lang-*.json):
the same keys in every language, every key the sources use present, the same {fields}
on both sides, and Chinese that is Chinese."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from customer_service.config import LANGUAGES
from customer_service.server.static import STRINGS_PLACEHOLDER, load_assets, string_tables

WEB = Path(__file__).resolve().parents[2] / "customer_service" / "web"
PREFIXES = ("widget.", "agent.", "page.")
KEY = r"(?:widget|agent|page)\.[A-Za-z0-9_.]+"
STRING = re.compile(r"""(["'`])((?:\\.|(?!\1).)*)\1""")
HTML_KEY = re.compile(rf"""data-i18n(?:-[a-z-]+)?="({KEY})\"""")
FIELD = re.compile(r"\{(\w+)\}")
CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")
SAME_IN_CHINESE = {"agent.brand", "widget.hours.email_placeholder"}
"""Keys whose Chinese text may be the English one (a product name, an example address)."""


def has_words(text: str) -> bool:
    """Whether ``text`` has letters besides its ``{fields}``: "✉ {email}" is the same in
    every language, and "{date} at {time}" may be "{date} {time}" in Chinese."""
    return re.search(r"[A-Za-z]", re.sub(r"\{\w+\}", "", text)) is not None


def table(language: str) -> dict[str, str]:
    loaded = json.loads((WEB / f"lang-{language}.json").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def sources() -> dict[str, str]:
    return {path.name: path.read_text(encoding="utf-8")
            for path in sorted([*WEB.glob("*.js"), *WEB.glob("*.html")])}


def test_there_is_one_table_per_language_and_no_other() -> None:
    assert sorted(p.name for p in WEB.glob("lang-*.json")) == sorted(
        f"lang-{language}.json" for language in LANGUAGES)


@pytest.mark.parametrize("language", LANGUAGES)
def test_tables_are_flat_string_tables_of_prefixed_keys(language: str) -> None:
    strings = table(language)
    assert strings, language
    for key, text in strings.items():
        assert key.startswith(PREFIXES) and re.fullmatch(KEY, key), f"{language}: key {key!r}"
        assert isinstance(text, str) and text.strip(), f"{language}: {key} is empty"


def test_every_language_has_exactly_the_english_keys() -> None:
    english = set(table("en"))
    for language in LANGUAGES:
        keys = set(table(language))
        assert keys - english == set(), f"{language} has keys English lacks: {sorted(keys - english)}"
        assert english - keys == set(), f"{language} lacks: {sorted(english - keys)}"


def test_fields_are_the_same_in_every_language() -> None:
    english = table("en")
    for language in LANGUAGES:
        for key, text in table(language).items():
            assert sorted(FIELD.findall(text)) == sorted(FIELD.findall(english[key])), (
                f"{language}: {key}: {text!r} has other {{fields}} than {english[key]!r}")


def test_chinese_is_chinese() -> None:
    english = table("en")
    untranslated = [key for key, text in table("zh-CN").items()
                    if key not in SAME_IN_CHINESE and has_words(english[key])
                    and (text == english[key] or (has_words(text) and not CJK.search(text)))]
    assert untranslated == [], f"zh-CN texts that are not Chinese: {untranslated}"


def first_arguments(script: str) -> list[str]:
    """The source text of the first argument of every ``t(...)`` call in ``script``."""
    found = []
    for call in re.finditer(r"(?<![\w.$])t\(", script):
        depth, i, start = 0, call.end(), call.end()
        while i < len(script):
            char = script[i]
            if char in "\"'`":
                string = STRING.match(script, i)
                i = string.end() if string else i + 1
                continue
            if char in "([{":
                depth += 1
            elif char in ")]}" and depth:
                depth -= 1
            elif char in ",)" and not depth:
                break
            i += 1
        found.append(script[start:i])
    return found


def keys_used(name: str, text: str) -> list[str]:
    """The keys (and key prefixes, ending in ".") a page or script names: data-i18n
    attributes in HTML; in scripts the strings in t()'s first argument, which may pick a
    key by a condition (t(on ? "a.on" : "a.off")) or complete a prefix ("a.status." + state),
    and key-like strings of three parts or more anywhere."""
    if name.endswith(".html"):
        return HTML_KEY.findall(text)
    in_calls = [literal for argument in first_arguments(text)
                for _, literal in STRING.findall(argument) if re.fullmatch(KEY, literal)]
    # keys kept in a table first (["7d", "agent.blocks.duration.7d"]): three parts or more
    # (two, like "agent.name", may be something else: a canned reply's field)
    listed = [literal for _, literal in STRING.findall(text)
              if re.fullmatch(KEY, literal) and literal.count(".") >= 2 and not literal.endswith(".")]
    return in_calls + listed


def test_every_key_the_sources_use_is_in_the_english_table() -> None:
    english = table("en")
    used: dict[str, set[str]] = {}
    prefixes: dict[str, set[str]] = {}
    for name, text in sources().items():
        for key in keys_used(name, text):
            (prefixes if key.endswith(".") else used).setdefault(key, set()).add(name)
    assert used, "no keys found in the sources: the patterns are wrong"
    assert any(name.endswith(".html") for names in used.values() for name in names)
    assert "widget.status." in prefixes and "agent.blocks.duration.1h" in used  # (a list's key)
    missing = {key: sorted(names) for key, names in used.items() if key not in english}
    assert missing == {}, f"keys used but not in lang-en.json: {missing}"
    dead = {key: sorted(names) for key, names in prefixes.items()
            if not any(k.startswith(key) for k in english)}
    assert dead == {}, f"key prefixes that start no key: {dead}"


def test_calls_with_fields_use_keys_that_have_them() -> None:
    """t("key", { name }) fills {name}: a key called with fields must have those fields."""
    english = table("en")
    call = re.compile(rf"""\bt\(\s*"({KEY})"\s*,\s*\{{([^}}]*)\}}""")
    for name, text in sources().items():
        for key, given in call.findall(text):
            fields = {part.split(":")[0].strip() for part in given.split(",") if part.strip()}
            assert set(FIELD.findall(english.get(key, ""))) <= fields, (
                f"{name}: t({key!r}) fills {sorted(fields)}, the text needs "
                f"{sorted(set(FIELD.findall(english.get(key, ''))))}")


def test_the_server_puts_both_tables_into_the_scripts() -> None:
    assets = load_assets()
    tables = json.loads(string_tables({f"lang-{lang}.json": (WEB / f"lang-{lang}.json").read_bytes()
                                       for lang in LANGUAGES}))
    assert set(tables) == set(LANGUAGES)
    for path in ("/widget.js", "/static/i18n.js"):
        body = assets[path].body
        assert STRINGS_PLACEHOLDER not in body, path
        assert json.dumps(tables["zh-CN"]["widget.input.send"], ensure_ascii=False).encode() in body, path
