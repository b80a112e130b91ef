"""``config init|check|docs``, prod.toml and the generated reference."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner, Result

from customer_service.cli import cli
from customer_service.config import Config, load_config
from customer_service.config_template import (
    REGENERATE_DOCS,
    iter_keys,
    render_reference_markdown,
    render_template,
)

CliRun = Callable[..., Result]

REPO = Path(__file__).resolve().parents[2]


def _all_keys_present(text: str) -> None:
    data = tomllib.loads(text)
    missing = [f"[{section}] {key}" for section, key, _, _ in iter_keys()
               if key not in data.get(section, {})]
    assert missing == []


def test_init_writes_a_commented_file_with_every_key(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["config", "init"])
    assert result.exit_code == 0, result.output
    path = tmp_path / "customer-service.toml"
    text = path.read_text()
    _all_keys_present(text)
    for _section, _key, field, _ in iter_keys():
        assert field.metadata["doc"].split(".")[0] in text  # each key carries its doc
    assert load_config(path, environ={}) == Config()  # every value is the default


def test_init_to_a_path_then_check_it(run: CliRun, tmp_path: Path) -> None:
    path = tmp_path / "sub" / "cs.toml"
    result = run("config", "init", str(path))
    assert result.exit_code == 0, result.output
    result = run("config", "check", str(path))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok")
    assert str(tmp_path / "sub" / "customer-service.db") in result.output


def test_init_refuses_to_overwrite_without_force(run: CliRun, tmp_path: Path) -> None:
    path = tmp_path / "cs.toml"
    path.write_text("# mine\n")
    result = run("config", "init", str(path))
    assert result.exit_code == 1
    assert "exists" in result.output and "--force" in result.output
    assert path.read_text() == "# mine\n"
    result = run("config", "init", "--force", str(path))
    assert result.exit_code == 0, result.output
    _all_keys_present(path.read_text())


def test_init_production_is_prod_toml(run: CliRun, tmp_path: Path) -> None:
    path = tmp_path / "prod.toml"
    assert run("config", "init", "--production", str(path)).exit_code == 0
    assert path.read_text() == render_template(production=True)
    assert "Production:" in path.read_text()


def test_check_uses_the_group_config(run: CliRun, config_path: Path) -> None:
    result = run("config", "check")
    assert result.exit_code == 0, result.output
    assert f"ok: {config_path}" in result.output
    assert "listen" in result.output and "127.0.0.1:0" in result.output
    assert "any (allowed_origins is empty)" in result.output


def test_check_lists_the_allowed_origins(run: CliRun) -> None:
    result = run("config", "check", env={
        "CUSTOMER_SERVICE_SERVER_ALLOWED_ORIGINS": "https://shop.example.com,https://*.help.example.org"})
    assert result.exit_code == 0, result.output
    assert "https://shop.example.com, https://*.help.example.org" in result.output


def test_check_reports_env_overrides(run: CliRun) -> None:
    result = run("config", "check", env={"CUSTOMER_SERVICE_LOG_LEVEL": "debug"})
    assert result.exit_code == 0, result.output
    assert "CUSTOMER_SERVICE_LOG_LEVEL" in result.output
    assert "debug" in result.output


def test_check_a_bad_file_exits_1_with_file_line_key(run: CliRun, tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[log]\nlevel = "info"\nformat = "xml"\n')
    result = run("config", "check", str(path))
    assert result.exit_code == 1
    assert f"{path}:3" in result.output and "format" in result.output
    assert "Traceback" not in result.output


def test_check_missing_file(run: CliRun, tmp_path: Path) -> None:
    result = run("config", "check", str(tmp_path / "missing.toml"))
    assert result.exit_code == 1
    assert "not found" in result.output


def test_docs_prints_the_reference(run: CliRun) -> None:
    result = run("config", "docs")
    assert result.exit_code == 0
    assert result.output == render_reference_markdown()


def test_reference_lists_every_key_with_type_default_and_doc() -> None:
    text = render_reference_markdown()
    for section, key, field, _ in iter_keys():
        assert f"## `[{section}]`" in text
        assert f"| `{key}` |" in text
        assert field.metadata["doc"] in text


def test_committed_reference_is_current() -> None:
    committed = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == render_reference_markdown(), (
        f"docs/configuration.md is out of date with customer_service/config.py; "
        f"regenerate it with: {REGENERATE_DOCS}")


def test_prod_toml_loads_and_has_every_key() -> None:
    path = REPO / "prod.toml"
    config = load_config(path, environ={})
    _all_keys_present(path.read_text(encoding="utf-8"))
    # As shipped it runs with nothing else installed.
    assert config.storage.backend == "sqlite"
    assert config.resolve_path(config.storage.sqlite_path).parent == REPO
    assert config.server.port == 8080
    assert config.ai.enabled is False


def test_init_defaults_to_the_config_option(tmp_path: Path) -> None:
    target = tmp_path / "chosen.toml"
    result = CliRunner().invoke(cli, ["--config", str(target), "config", "init"])
    assert result.exit_code == 0, result.output
    assert target.is_file()
    assert not (tmp_path / "customer-service.toml").exists()


def test_check_warns_about_an_ai_without_a_key(run: CliRun, tmp_path: Path) -> None:
    """A warning, not an error: a local upstream (Ollama, llama.cpp) needs no key."""
    path = tmp_path / "ai.toml"
    path.write_text('[ai]\nenabled = true\nbase_url = "http://127.0.0.1:11434/v1"\n')
    result = run("config", "check", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"ok: {path}\n")
    assert result.stderr == (
        "warning: [ai] enabled = true but no API key is set ([ai] api_key, "
        "CUSTOMER_SERVICE_AI_API_KEY or [ai] api_key_env): requests go without an "
        "Authorization header, which only upstreams that need no key accept (a local Ollama, "
        "llama.cpp or vLLM); http://127.0.0.1:11434/v1 may refuse them\n")


def test_check_does_not_warn_when_the_ai_has_a_key(run: CliRun, tmp_path: Path) -> None:
    path = tmp_path / "ai.toml"
    path.write_text('[ai]\nenabled = true\napi_key_env = "MY_KEY"\n')
    for env in ({"CUSTOMER_SERVICE_AI_API_KEY": "sk-1"}, {"MY_KEY": "sk-2"}):
        result = run("config", "check", str(path), env=env)
        assert result.exit_code == 0, result.output
        assert result.stderr == "", env
    off = tmp_path / "off.toml"
    off.write_text("[ai]\nenabled = false\n")
    result = run("config", "check", str(off))
    assert (result.exit_code, result.stderr) == (0, "")


def test_check_warns_about_a_bus_on_sqlite(run: CliRun, tmp_path: Path) -> None:
    path = tmp_path / "bus.toml"
    path.write_text('[bus]\nredis_url = "redis://127.0.0.1:6379/0"\n')
    result = run("config", "check", str(path))
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("warning: [bus] redis_url is set but [storage] backend is "
                                    "sqlite")
    assert result.stderr.count("\n") == 1  # one line, not wrapped at the console's width
