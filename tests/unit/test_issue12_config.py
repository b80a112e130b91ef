"""Bad ``[auto_replies]`` texts are refused when the config loads (``config check`` and the
server's start), naming the key, the file and the line, instead of reaching visitors as
a literal ``{back}`` or a message longer than any visitor may send."""

from __future__ import annotations

from pathlib import Path

import pytest

from customer_service.config import load_config
from customer_service.errors import ConfigError


@pytest.mark.parametrize(("body", "key", "line", "words"), [
    ('welcome = { en = "Hi, we are back {back}" }', "auto_replies.welcome", 2,
     "[auto_replies] welcome.en: {back} is filled in only in closed"),
    ('away = { zh-CN = "我们{back}回来" }', "auto_replies.away", 2,
     "[auto_replies] away.zh-CN: {back} is filled in only in closed"),
    ('closed = { en = "Back {when}" }', "auto_replies.closed", 2,
     "[auto_replies] closed.en: unknown field {when} (closed may hold {back}, the other "
     "messages no field)"),
    ('welcome = { en = "Hi {visitor.name}" }', "auto_replies.welcome", 2,
     "[auto_replies] welcome.en: unknown field {visitor.name}"),
    (f'away = {{ en = "{"x" * 4001}" }}', "auto_replies.away", 2,
     "[auto_replies] away.en is 4001 characters long: at most 4000 ([server] "
     "max_message_chars)"),
    ('[auto_replies.closed]\nen = "Back {when}"', "auto_replies.closed", 1,
     "unknown field {when}"),
])
def test_bad_auto_replies_name_the_key_file_and_line(tmp_path: Path, body: str, key: str,
                                                     line: int, words: str) -> None:
    path = tmp_path / "cs.toml"
    text = body if body.startswith("[") else f"[auto_replies]\n{body}\n"
    path.write_text(f"{text}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    error = info.value
    assert (error.key, error.line, error.path) == (key, line, str(path))
    assert words in error.message
    assert str(error).startswith(f"{path}:{line}: ")


def test_an_unknown_language_in_a_sub_table_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "cs.toml"
    path.write_text('[web]\ntitle = "Shop"\n\n[auto_replies.welcome]\nen = "Hi"\nfr = "Salut"\n',
                    encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert (info.value.key, info.value.line) == ("auto_replies.welcome", 4)


def test_good_auto_replies_load(tmp_path: Path) -> None:
    path = tmp_path / "cs.toml"
    path.write_text('[auto_replies]\nwelcome = { en = "Hi", zh-CN = "" }\n'
                    'closed = { en = "Back {back}.", zh-CN = "{back}回来" }\n', encoding="utf-8")
    config = load_config(path, environ={})
    assert config.auto_replies.closed["en"] == "Back {back}."
    assert config.auto_replies.welcome == {"en": "Hi", "zh-CN": ""}


def test_a_prechat_field_listed_twice_is_refused(tmp_path: Path) -> None:
    """The widget built one input per entry: two "name" inputs, and only one was sent."""
    path = tmp_path / "cs.toml"
    path.write_text('[web]\ntitle = "Shop"\nprechat_fields = ["name", "email", "name"]\n',
                    encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert (info.value.key, info.value.line) == ("web.prechat_fields", 3)
    assert str(info.value).endswith(":3: [web] prechat_fields lists 'name' more than once")
