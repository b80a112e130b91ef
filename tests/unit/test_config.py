"""The config loader: defaults, errors that name file/line/key, environment, paths."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest
import trio

from customer_service.config import Config, LogConfig, load_config, sections
from customer_service.config_template import (
    env_var,
    iter_keys,
    render_reference_markdown,
    render_template,
    toml_value,
)
from customer_service.errors import ConfigError, CustomerServiceError, ListenError, the_error


def write(tmp_path: Path, text: str, name: str = "cs.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(path: Path | None, environ: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={} if environ is None else environ)
    return info.value


# --- defaults ---------------------------------------------------------------------------

def test_defaults_run_with_nothing_installed() -> None:
    config = load_config(None, environ={})
    assert config == Config()
    assert config.source is None
    assert config.storage.backend == "sqlite"
    assert config.storage.sqlite_path == "customer-service.db"
    assert config.server.port == 8080
    assert config.server.host == "127.0.0.1"
    assert config.ai.enabled is False


def test_an_empty_file_is_the_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""), environ={})
    assert config == Config()
    assert config.source == str(tmp_path / "cs.toml")


def test_config_is_frozen() -> None:
    config = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.server.port = 1  # type: ignore[misc]


def test_values_are_read_and_typed(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nport = 9000\nmessage_timeout = 2\n'
                           '[log]\nformat = "json"\n[ai]\nenabled = true\n')
    config = load_config(path, environ={})
    assert config.server.port == 9000
    assert config.server.message_timeout == 2.0
    assert isinstance(config.server.message_timeout, float)  # an int is accepted for a float
    assert config.log.format == "json"
    assert config.ai.enabled is True


# --- errors name the file, the line and the key ---------------------------------------------

def test_unknown_section(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nport = 1\n\n[sever]\nport = 2\n')
    error = load_error(path)
    assert error.path == str(path) and error.line == 4 and error.key == "sever"
    assert str(error).startswith(f"{path}:4: ")
    assert "unknown section [sever]" in str(error)
    assert "server" in str(error)  # lists the known sections


def test_unknown_key_names_key_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, '# comment\n[storage]\nbackend = "sqlite"\nsqlite_pth = "x.db"\n')
    error = load_error(path)
    assert (error.path, error.line, error.key) == (str(path), 4, "storage.sqlite_pth")
    assert str(error).startswith(f"{path}:4: ")
    assert "unknown key 'sqlite_pth' in [storage]" in str(error)
    assert "sqlite_path" in str(error)  # lists the known keys


@pytest.mark.parametrize(("text", "key", "line", "words"), [
    ('[server]\nhost = "h"\nport = "80"\n', "server.port", 3, "integer"),
    ('[server]\nport = 80.5\n', "server.port", 2, "integer"),
    ('[server]\nport = true\n', "server.port", 2, "integer"),
    ('[server]\nmessage_timeout = "3"\n', "server.message_timeout", 2, "number"),
    ('[ai]\nenabled = "yes"\n', "ai.enabled", 2, "true or false"),
    ('[storage]\n\nsqlite_path = 5\n', "storage.sqlite_path", 3, "string"),
], ids=["str-for-int", "float-for-int", "bool-for-int", "str-for-float", "str-for-bool",
        "int-for-str"])
def test_wrong_type_names_key_and_line(tmp_path: Path, text: str, key: str, line: int,
                                       words: str) -> None:
    path = write(tmp_path, text)
    error = load_error(path)
    assert (error.key, error.line) == (key, line)
    assert str(error).startswith(f"{path}:{line}: ")
    assert words in str(error)
    assert key.split(".")[1] in str(error)


def test_a_section_that_is_not_a_table(tmp_path: Path) -> None:
    error = load_error(write(tmp_path, 'server = 1\n'))
    assert error.key == "server"
    assert "must be a table" in str(error)


@pytest.mark.parametrize(("section", "key", "good", "bad"), [
    ("storage", "backend", ["sqlite", "mysql"], "postgres"),
    ("log", "level", ["debug", "info", "warning", "error"], "verbose"),
    ("log", "format", ["text", "json"], "xml"),
])
def test_literal_values(tmp_path: Path, section: str, key: str, good: list[str],
                        bad: str) -> None:
    for value in good:
        config = load_config(write(tmp_path, f'[{section}]\n{key} = "{value}"\n'), environ={})
        assert getattr(getattr(config, section), key) == value
    path = write(tmp_path, f'[{section}]\n{key} = "{bad}"\n')
    error = load_error(path)
    assert error.key == f"{section}.{key}" and error.line == 2
    assert bad in str(error)
    for value in good:
        assert f'"{value}"' in str(error)  # says what is allowed


@pytest.mark.parametrize(("text", "key"), [
    ('[server]\nport = 70000\n', "server.port"),
    ('[server]\nmessage_timeout = 0\n', "server.message_timeout"),
    ('[server]\nmax_frame_bytes = 0\n', "server.max_frame_bytes"),
    ('[auth]\ntoken_ttl_hours = -1\n', "auth.token_ttl_hours"),
    ('[webhooks]\nretry_cap = 1e12\n', "webhooks.retry_cap"),
    ('[webhooks]\nretry_base = 1e300\n', "webhooks.retry_base"),
    ('[webhooks]\ntimeout = 0\n', "webhooks.timeout"),
    ('[webhooks]\nmax_in_flight = -1\n', "webhooks.max_in_flight"),
    ('[webhooks]\npoll_interval = nan\n', "webhooks.poll_interval"),
])
def test_out_of_range_values(tmp_path: Path, text: str, key: str) -> None:
    error = load_error(write(tmp_path, text))
    assert error.key == key and error.line == 2


def test_invalid_toml_gives_the_line_number(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nport = 8080\n\nhost = "unterminated\n')
    error = load_error(path)
    assert error.line == 4
    assert str(error).startswith(f"{path}:4: invalid TOML")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    error = load_error(path)
    assert error.path == str(path)
    assert str(error) == f"{path}: file not found (create one with 'customer-service config init')"


def test_config_error_is_a_customer_service_error() -> None:
    assert issubclass(ConfigError, CustomerServiceError)


# --- environment --------------------------------------------------------------------------

def test_env_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nport = 9000\n[storage]\nmysql_password = "in-file"\n')
    config = load_config(path, environ={
        "CUSTOMER_SERVICE_SERVER_PORT": "9100",
        "CUSTOMER_SERVICE_STORAGE_MYSQL_PASSWORD": "s3cr=t with spaces",  # bare string
        "CUSTOMER_SERVICE_AI_ENABLED": "true",
        "CUSTOMER_SERVICE_LOG_LEVEL": "debug",
        "CUSTOMER_SERVICE_SERVER_HOST": '"0.0.0.0"',  # or as a quoted TOML string
        "UNRELATED": "x",
    })
    assert config.server.port == 9100
    assert config.storage.mysql_password == "s3cr=t with spaces"
    assert config.ai.enabled is True
    assert config.log.level == "debug"
    assert config.server.host == "0.0.0.0"


def test_env_applies_to_the_embedded_defaults() -> None:
    config = load_config(None, environ={"CUSTOMER_SERVICE_STORAGE_BACKEND": "mysql"})
    assert config.storage.backend == "mysql"


def test_env_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUSTOMER_SERVICE_SERVER_PORT", "8181")
    assert load_config(None).server.port == 8181


@pytest.mark.parametrize(("name", "value"), [
    ("CUSTOMER_SERVICE_SERVER_PORT", "eighty"),
    ("CUSTOMER_SERVICE_SERVER_PORT", "80.5"),
    ("CUSTOMER_SERVICE_AI_ENABLED", "yes"),
    ("CUSTOMER_SERVICE_LOG_LEVEL", "loud"),
])
def test_env_bad_value_names_the_variable(tmp_path: Path, name: str, value: str) -> None:
    path = write(tmp_path, "")
    error = load_error(path, environ={name: value})
    assert name in str(error)
    assert "environment" in str(error)
    assert error.line is None  # the value is not in the file


# --- paths ----------------------------------------------------------------------------------

def test_relative_sqlite_path_resolves_next_to_the_file(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    path = write(tmp_path / "etc", '[storage]\nsqlite_path = "data/cs.db"\n')
    config = load_config(path, environ={})
    assert config.resolve_path(config.storage.sqlite_path) == tmp_path / "etc" / "data" / "cs.db"


def test_relative_config_path_resolves_against_the_file_not_the_cwd(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "etc").mkdir()
    write(tmp_path / "etc", "")
    monkeypatch.chdir(tmp_path)
    config = load_config(Path("etc/cs.toml"), environ={})
    resolved = config.resolve_path(config.storage.sqlite_path)
    assert resolved == tmp_path / "etc" / "customer-service.db"


def test_absolute_sqlite_path_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "abs.db"
    config = load_config(write(tmp_path, f'[storage]\nsqlite_path = "{target}"\n'), environ={})
    assert config.resolve_path(config.storage.sqlite_path) == target


def test_defaults_resolve_against_the_current_directory() -> None:
    assert Config().resolve_path("x.db") == Path("x.db")


# --- the generated template and reference -------------------------------------------------

def test_template_has_every_key_at_its_default() -> None:
    text = render_template()
    data = tomllib.loads(text)
    for section, key, _, _ in iter_keys():
        assert key in data[section], f"[{section}] {key} missing from the template"
        assert env_var(section, key) in text
    assert load_config(None, environ={}) == Config()
    sections = {section for section, _, _, _ in iter_keys()}
    assert set(data) == sections


def test_template_loads_to_the_defaults(tmp_path: Path) -> None:
    for production in (False, True):
        path = write(tmp_path, render_template(production=production))
        assert load_config(path, environ={}) == Config()


def test_reference_shows_type_default_and_env() -> None:
    text = render_reference_markdown()
    assert '| `port` | integer | `8080` | `CUSTOMER_SERVICE_SERVER_PORT` |' in text
    assert '| `backend` | one of "sqlite", "mysql" | `"sqlite"` |' in text
    assert toml_value(False) == "false" and toml_value(3.0) == "3.0"


# --- several instances --------------------------------------------------------------------

def test_workers_take_a_number_or_auto(tmp_path: Path) -> None:
    base = ('[bus]\nredis_url = "redis://127.0.0.1:6379/0"\n'
            '[storage]\nbackend = "mysql"\n[server]\n')
    assert load_config(write(tmp_path, base + "workers = 4\n"), environ={}).server.workers == 4
    assert load_config(write(tmp_path, base + 'workers = "auto"\n'),
                       environ={}).server.workers == "auto"
    for bad, why in [("0", "at least 1"), ('"AUTO"', 'integer or "auto"'),
                     ('"2"', 'integer or "auto"'), ("257", "at most 256")]:
        error = load_error(write(tmp_path, base + f"workers = {bad}\n"))
        assert why in error.message and error.key == "server.workers" and error.line == 6


def test_several_workers_need_the_bus_and_mysql(tmp_path: Path) -> None:
    error = load_error(write(tmp_path, "[server]\nworkers = 2\n"))
    assert "[server] workers = 2 needs [bus] redis_url" in error.message
    assert error.line == 2
    error = load_error(write(tmp_path, '[server]\nworkers = "auto"\n'
                                       '[bus]\nredis_url = "redis://h:6379/0"\n'))
    assert '[server] workers = "auto" needs [storage] backend = "mysql"' in error.message


@pytest.mark.parametrize(("url", "why"), [
    ("http://h:6379", "must start with redis://"),
    ("redis://", "needs a host"),
    ("redis://h:0", "port 0"),
    ("redis://h:6379/x", "databases are numbers"),
    ("unix://", "socket's path"),
])
def test_a_bad_redis_url_names_the_key_and_line(tmp_path: Path, url: str, why: str) -> None:
    error = load_error(write(tmp_path, f'[bus]\nnamespace = "cs"\nredis_url = "{url}"\n'))
    assert why in error.message and error.key == "bus.redis_url" and error.line == 3


def test_good_redis_urls_pass(tmp_path: Path) -> None:
    for url in ("redis://127.0.0.1:6379/0", "rediss://:secret@redis.internal:6380/2",
                "unix:///run/redis/redis.sock", "redis://h"):
        assert load_config(write(tmp_path, f'[bus]\nredis_url = "{url}"\n'),
                           environ={}).bus.redis_url == url


def test_heartbeats_must_fit_in_the_instance_timeout(tmp_path: Path) -> None:
    error = load_error(write(tmp_path, "[bus]\nheartbeat_interval = 5\n"))
    assert "instance_timeout (6) must be at least twice heartbeat_interval (5)" in error.message
    assert error.line == 2 and error.key == "bus.heartbeat_interval"


def test_trusted_proxies_are_checked_and_may_come_from_the_environment(tmp_path: Path) -> None:
    error = load_error(write(tmp_path, '[server]\ntrusted_proxies = ["10.0.0.1", "nope"]\n'))
    assert "'nope' is not an IP address or network" in error.message and error.line == 2
    config = load_config(None, environ={
        "CUSTOMER_SERVICE_SERVER_TRUSTED_PROXIES": "10.0.0.5, 192.168.0.0/16"})
    assert config.server.trusted_proxies == ["10.0.0.5", "192.168.0.0/16"]


@pytest.mark.parametrize(("entry", "problem"), [
    ("https://shop.example.com/", "has a path"),
    ("https://shop.example.com/chat", "has a path"),
    ("shop.example.com", "has no scheme"),
    ("ftp://shop.example.com", "has the scheme 'ftp'"),
    ("https://user@shop.example.com", "has user info"),
    ("https://*.com", "has a wildcard over a whole top-level domain"),
    ("https://shop.example.com:99999", "is not an origin"),
    ("https://", "has no host"),
])
def test_allowed_origins_entries_are_checked(tmp_path: Path, entry: str, problem: str) -> None:
    text = f'[server]\nallowed_origins = ["https://ok.example.com", "{entry}"]\n'
    error = load_error(write(tmp_path, text))
    assert f"cs.toml:2: [server] allowed_origins: {entry!r} {problem}" in error.message
    assert error.key == "server.allowed_origins" and error.line == 2


def test_allowed_origins_may_come_from_the_environment_as_a_comma_separated_list() -> None:
    config = load_config(None, environ={
        "CUSTOMER_SERVICE_SERVER_ALLOWED_ORIGINS": "https://shop.example.com, http://localhost:8080"})
    assert config.server.allowed_origins == ["https://shop.example.com", "http://localhost:8080"]
    assert load_config(None, environ={}).server.allowed_origins == []  # default: any origin
    error = load_error(None, {"CUSTOMER_SERVICE_SERVER_ALLOWED_ORIGINS": "shop.example.com"})
    assert error.message.startswith("CUSTOMER_SERVICE_SERVER_ALLOWED_ORIGINS (environment): "
                                    "[server] allowed_origins: 'shop.example.com' has no scheme")


def test_an_unknown_environment_variable_is_an_error_that_names_it() -> None:
    error = load_error(None, {"CUSTOMER_SERVICE_BUS_REDIS_ULR": "redis://h"})
    assert "CUSTOMER_SERVICE_BUS_REDIS_ULR" in error.message
    assert "did you mean CUSTOMER_SERVICE_BUS_REDIS_URL" in error.message
    assert load_config(None, environ={"CUSTOMER_SERVICE_CONFIG": "x.toml"}) == Config()


@pytest.mark.parametrize(("variable", "meant"), [
    ("CUSTOMER_SERVICE_SERVER_PROT", "CUSTOMER_SERVICE_SERVER_PORT"),
    ("CUSTOMER_SERVICE_STORAGE_MYSQL_PASWORD", "CUSTOMER_SERVICE_STORAGE_MYSQL_PASSWORD"),
    ("CUSTOMER_SERVICE_AI_APIKEY", "CUSTOMER_SERVICE_AI_API_KEY"),
])
def test_an_unknown_variable_suggests_the_closest_name(tmp_path: Path, variable: str,
                                                       meant: str) -> None:
    error = load_error(write(tmp_path, ""), {variable: "1"})
    assert f"unknown environment variable {variable} (did you mean {meant}?)" in error.message


@pytest.mark.parametrize(("name", "value", "wanted"), [
    ("CUSTOMER_SERVICE_SERVER_PORT", "abc", "expected an integer, got 'abc'"),
    ("CUSTOMER_SERVICE_SERVER_PORT", "80.5", "expected an integer, got '80.5'"),
    ("CUSTOMER_SERVICE_SERVER_MESSAGE_TIMEOUT", "soon", "expected a number, got 'soon'"),
    ("CUSTOMER_SERVICE_AI_ENABLED", "yes", "expected true or false, got 'yes'"),
    ("CUSTOMER_SERVICE_LOG_LEVEL", "loud",
     "expected one of \"debug\", \"info\", \"warning\", \"error\", got 'loud'"),
    ("CUSTOMER_SERVICE_SERVER_WORKERS", "many", "expected an integer or \"auto\", got 'many'"),
    ("CUSTOMER_SERVICE_SERVER_TRUSTED_PROXIES", "[1, 2]", "expected a list of strings, got '[1, 2]'"),
], ids=["word-for-int", "float-for-int", "word-for-float", "word-for-bool", "literal",
        "int-or-auto", "list"])
def test_a_bad_variable_says_which_and_what_type_it_expects(name: str, value: str,
                                                            wanted: str) -> None:
    error = load_error(None, {name: value})
    assert error.message == f"{name} (environment): {wanted}"
    assert "line" not in error.message and "column" not in error.message  # no TOML parser words
    assert error.path is None and error.line is None


def test_a_variable_out_of_range_says_the_bound() -> None:
    error = load_error(None, {"CUSTOMER_SERVICE_SERVER_PORT": "70000"})
    assert error.message == ("CUSTOMER_SERVICE_SERVER_PORT (environment) must be at most 65535,"
                             " not 70000")


def test_a_string_variable_is_taken_as_written() -> None:
    config = load_config(None, environ={"CUSTOMER_SERVICE_STORAGE_MYSQL_PASSWORD": "12345678",
                                        "CUSTOMER_SERVICE_AI_API_KEY": "true",
                                        "CUSTOMER_SERVICE_AI_NAME": '"Ada"'})
    assert config.storage.mysql_password == "12345678"
    assert config.ai.api_key == "true"
    assert config.ai.name == "Ada"  # a quoted TOML string is still read as TOML


@pytest.mark.parametrize(("text", "line", "key", "wanted"), [
    ("[server]\nport = 1\n\n[sever]\nport = 2\n", 4, "sever",
     "unknown section [sever] (did you mean 'server'?)"),
    ("[storage]\nsqlite_pth = \"x.db\"\n", 2, "storage.sqlite_pth",
     "unknown key 'sqlite_pth' in [storage] (did you mean 'sqlite_path'?)"),
    ("[server]\nhost = \"h\"\nprot = 1\n", 3, "server.prot",
     "unknown key 'prot' in [server] (did you mean 'port'?)"),
    ("[server]\nredis_url = \"redis://h\"\n", 2, "server.redis_url",
     "unknown key 'redis_url' in [server] (it belongs in [bus])"),
], ids=["section", "key", "short-key", "other-section"])
def test_an_unknown_name_in_the_file_suggests_the_closest(tmp_path: Path, text: str, line: int,
                                                           key: str, wanted: str) -> None:
    path = write(tmp_path, text)
    error = load_error(path)
    assert (error.path, error.line, error.key) == (str(path), line, key)
    assert str(error) == f"{path}:{line}: {wanted}"


def test_an_unknown_name_with_nothing_close_lists_the_known_ones(tmp_path: Path) -> None:
    path = write(tmp_path, "[log]\nzzzz = 1\n")
    keys = ", ".join(f.name for f in dataclasses.fields(LogConfig))
    assert str(load_error(path)) == f"{path}:2: unknown key 'zzzz' in [log] (known: {keys})"
    assert "level, format" in keys
    path = write(tmp_path, "[qqqq]\n")
    names = ", ".join(name for name, _ in sections())
    assert str(load_error(path)) == f"{path}:1: unknown section [qqqq] (known: {names})"
    assert names.startswith("server, storage, bus")


def test_the_error_behind_nested_groups_and_the_cancellations_it_caused() -> None:
    cancelled = trio.Cancelled._create(source="explicit")  # type: ignore[call-arg]
    error = ListenError("cannot listen")
    nested = BaseExceptionGroup("outer", [ExceptionGroup("inner", [error]),
                                          BaseExceptionGroup("bus", [cancelled])])
    assert the_error(nested, besides=(trio.Cancelled,)) is error
    assert the_error(nested) is None  # the cancellation counts unless set aside
    two = ExceptionGroup("two", [error, ValueError("bug")])
    assert the_error(two, besides=(trio.Cancelled,)) is None


def test_one_error_held_in_two_branches_is_still_one() -> None:
    error = ListenError("cannot listen")
    twice = ExceptionGroup("outer", [ExceptionGroup("a", [error]), ExceptionGroup("b", [error])])
    assert the_error(twice) is error


@pytest.mark.parametrize(("variable", "meant"), [
    ("CUSTOMER_SERVICE_CONFIGG", "CUSTOMER_SERVICE_CONFIG?"),
    ("CUSTOMER_SERVICE_server_port", "CUSTOMER_SERVICE_SERVER_PORT? variable names are upper"),
    ("CUSTOMER_SERVICE_BUS_REDIS_ULR", "CUSTOMER_SERVICE_BUS_REDIS_URL?"),
])
def test_a_misspelt_variable_is_matched_without_the_prefix_or_case(variable: str,
                                                                   meant: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"did you mean {meant}")):
        load_config(None, environ={variable: "1"})


def test_a_table_of_texts_per_language(tmp_path: Path) -> None:
    path = write(tmp_path, '[auto_replies]\nwelcome = { en = "Hello", "zh-CN" = "你好" }\n')
    assert load_config(path, environ={}).auto_replies.welcome == {"en": "Hello", "zh-CN": "你好"}
    environ = {"CUSTOMER_SERVICE_AUTO_REPLIES_AWAY": '{ en = "Back soon" }'}
    assert load_config(path, environ=environ).auto_replies.away == {"en": "Back soon"}


@pytest.mark.parametrize(("text", "words"), [
    ('[auto_replies]\nwelcome = "Hello"\n', "[auto_replies] welcome must be a table"),
    ('[auto_replies]\nwelcome = { en = 3 }\n', "[auto_replies] welcome.en must be a string"),
    ('[auto_replies]\nwelcome = { fr = "Bonjour" }\n',
     "[auto_replies] welcome: unknown language 'fr' (known: en, zh-CN)"),
    ('[web]\nexpected_reply = { de = "bald" }\n', "[web] expected_reply: unknown language 'de'"),
])
def test_a_bad_table_of_texts_names_the_key(tmp_path: Path, text: str, words: str) -> None:
    error = load_error(write(tmp_path, text))
    assert words in str(error)
    assert error.line == 2


def test_a_table_default_is_written_inline_and_reads_back() -> None:
    """A table default written as a sub-table would swallow the keys after it."""
    text = render_template()
    assert 'welcome = {en = "Hi! How can we help you today?"' in text
    data = tomllib.loads(text)
    assert data["auto_replies"]["closed"]["zh-CN"].startswith("我们现在不在工作时间")
    assert "title" in data["web"] and "welcome" not in data["web"]


def test_ai_http_client_takes_auto_or_httpx_and_names_the_key_otherwise(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, '[ai]\nhttp_client = "httpx"\n'),
                       environ={}).ai.http_client == "httpx"
    error = load_error(write(tmp_path, '[ai]\nhttp_client = "curl"\n'))
    assert error.message.endswith(
        ':2: [ai] http_client must be one of "auto", "httpx", not \'curl\'')


def test_an_ai_api_key_that_cannot_be_a_header_is_a_config_error(tmp_path: Path) -> None:
    # Unchecked, it failed every reply at request time (UnicodeEncodeError out of the
    # client, or a header-injection attempt with a line break in it).
    error = load_error(write(tmp_path, '[ai]\nenabled = true\napi_key = "sk-键"\n'))
    assert error.key == "ai.api_key"
    assert error.line == 3
    assert "[ai] api_key" in str(error) and "ASCII" in str(error)
    error = load_error(write(tmp_path, '[ai]\nenabled = true\n'),
                       {"CUSTOMER_SERVICE_AI_API_KEY": "sk-1\r\nX-Evil: 1"})
    assert error.key == "ai.api_key"
    error = load_error(write(tmp_path, '[ai]\nenabled = true\napi_key_env = "K"\n'),
                       {"K": "clé"})
    assert error.key == "ai.api_key_env" and "K" in str(error)
    assert load_config(write(tmp_path, '[ai]\nenabled = true\napi_key = "sk-A1_b.c~d+/="\n'),
                       environ={}).ai.api_key == "sk-A1_b.c~d+/="



def test_an_ai_base_url_with_a_query_is_a_config_error(tmp_path: Path) -> None:
    # Neither client keeps it: h11 dropped it, httpx put the path after it.
    error = load_error(write(tmp_path,
                             '[ai]\nenabled = true\nbase_url = "http://h/v1?api-version=1"\n'))
    assert error.key == "ai.base_url" and "query" in str(error)


@pytest.mark.parametrize(("url", "problem"), [
    ("http://h:99999/v1", "port"), ("http://h:abc/v1", "port"), ("http://h:0/v1", "port"),
    ("http://:8000/v1", "host")])
def test_an_ai_base_url_without_a_usable_host_or_port_is_a_config_error(
        tmp_path: Path, url: str, problem: str) -> None:
    # Unchecked: a port of 0 went to port 80, a bad port failed the server's start, an
    # empty host failed every reply.
    error = load_error(write(tmp_path, f'[ai]\nenabled = true\nbase_url = "{url}"\n'))
    assert error.key == "ai.base_url" and problem in str(error), str(error)
