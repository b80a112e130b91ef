"""The README and docs/ stand alone and show what really happens.

Every relative link resolves to a file of the repository (and, with ``#``, to a
heading of it); the command examples run the command where the README's install
puts it, never a bare ``customer-service`` that is not on ``PATH``; and the
prompts shown for ``agents add`` are the ones the command prints.
"""

from __future__ import annotations

import os
import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from customer_service.cli import cli
from customer_service.core.openapi import WHO
from customer_service.server.rest_api import ROUTES

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md")])
COMMAND_DOCS = [REPO / "README.md", REPO / "docs" / "cli.md"]
INSTALLED = ".venv/bin/customer-service"
"""Where the README's first command (``python3 -m venv .venv && .venv/bin/pip install .``)
puts the console script."""


def _relative(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def _links(text: str) -> Iterator[str]:
    """Markdown link and image targets, and ``src``/``href`` of inline HTML."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # code blocks hold no links
    text = re.sub(r"`[^`\n]*`", "", text)
    yield from re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text)
    yield from re.findall(r"""\b(?:src|href)=["']([^"']+)["']""", text)


def _anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown file."""
    markdown = re.sub(r"```.*?```", "", markdown, flags=re.S)
    found: set[str] = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", markdown, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        candidate, n = slug, 0
        while candidate in found:
            n += 1
            candidate = f"{slug}-{n}"
        found.add(candidate)
    return found


@pytest.mark.parametrize("doc", DOCS, ids=_relative)
def test_every_relative_link_resolves_inside_the_repository(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    problems = []
    for link in _links(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", link):  # https:, mailto:...
            continue
        target, _, anchor = link.partition("#")
        path = (doc.parent / target).resolve() if target else doc
        if not path.is_relative_to(REPO):
            problems.append(f"{link}: outside the repository")
        elif not path.is_file():
            problems.append(f"{link}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(
                path.read_text(encoding="utf-8")):
            problems.append(f"{link}: no heading #{anchor} in {_relative(path)}")
    assert problems == [], f"{_relative(doc)}: {problems}"


def test_the_link_checker_sees_bad_links(tmp_path: Path) -> None:
    """The checker above would notice the mistakes it is there for."""
    text = ("[a](../shared/design.md) [b](docs/cli.md#nope) ![c](x.png) "
            '<img src="y.png"> `[d](ignored.md)`\n```\n[e](ignored.md)\n```\n')
    assert list(_links(text)) == ["../shared/design.md", "docs/cli.md#nope", "x.png", "y.png"]
    cli_anchors = _anchors((REPO / "docs" / "cli.md").read_text())
    assert "building-the-zipapp" in cli_anchors and "nope" not in cli_anchors
    assert "config-init-path---force---production" in cli_anchors


def _commands(doc: Path) -> Iterator[tuple[int, str]]:
    """(line number, command) of every shell command a code block shows: ``$ `` lines in
    ``console`` blocks, every line of ``sh`` blocks."""
    kind = None
    for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), start=1):
        fence = re.match(r"^```(\w*)", line)
        if fence:
            kind = None if kind is not None else fence.group(1) or "text"
            continue
        if kind == "console" and line.startswith("$ "):
            yield number, line[2:]
        elif kind in ("sh", "bash", "shell") and line.strip() and not line.startswith("#"):
            yield number, line


@pytest.mark.parametrize("doc", COMMAND_DOCS, ids=_relative)
def test_examples_run_the_command_where_the_install_puts_it(doc: Path) -> None:
    bare = []
    count = 0
    for number, command in _commands(doc):
        words = re.split(r"[\s|;&()$]+", command)
        for before, word in zip(["", *words], words, strict=False):
            if word == "customer-service" and before != "-u":  # sudo -u customer-service: a user
                bare.append(f"{_relative(doc)}:{number}: {command}")
            count += word.endswith("/customer-service")
    assert bare == [], "customer-service is not on PATH after the README's install"
    assert count >= 3


def test_the_readme_install_creates_the_command_its_examples_run() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    first = next(command for _, command in _commands(REPO / "README.md"))
    assert first.startswith("python3 -m venv .venv && .venv/bin/pip install . && ")
    assert f"{INSTALLED} " in first
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["customer-service"] == "customer_service.cli:main"
    assert readme.count(INSTALLED) >= 4


def test_the_zipapp_build_says_it_needs_shiv() -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert any(dep.startswith("shiv") for dep in extras["zipapp"])
    for doc in COMMAND_DOCS:
        commands = [command for _, command in _commands(doc)]
        build = next(i for i, c in enumerate(commands) if "tools/build_zipapp.py" in c)
        assert any("pip install" in c and "[zipapp]" in c for c in commands[:build]), doc


def _documented_runs(doc: Path) -> Iterator[tuple[list[str], list[str]]]:
    """(arguments, output lines) of each ``agents add`` example that prompts (no
    ``--password-stdin``), as the doc shows them."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("$ ") or " agents add " not in line or "--password-stdin" in line:
            continue
        words = shlex.split(line[2:].split("  #")[0])
        args = [w for w in words[1:] if not w.startswith("--config")]
        output = []
        for following in lines[i + 1:]:
            if following.startswith(("$ ", "```")):
                break
            output.append(following)
        yield args, output


@pytest.mark.parametrize("doc", COMMAND_DOCS, ids=_relative)
def test_the_prompts_shown_are_the_real_ones(doc: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    runs = list(_documented_runs(doc))
    assert runs, f"{_relative(doc)} shows no 'agents add' with its prompts"
    for name in [n for n in os.environ if n.startswith("CUSTOMER_SERVICE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setattr("customer_service.cli.agents._stdin_is_terminal", lambda: True)
    password = "correct horse battery"
    for index, (args, shown) in enumerate(runs):
        folder = tmp_path / str(index)  # a fresh database each: the examples start with id 1
        folder.mkdir()
        monkeypatch.chdir(folder)
        config = folder / "docs.toml"
        config.write_text('[storage]\nsqlite_path = "docs.db"\n')
        result = CliRunner().invoke(cli, ["--config", str(config), *args],
                                    input=f"{password}\n{password}\n", catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert [line.rstrip() for line in result.output.splitlines()] == shown


def test_the_api_md_scope_table_has_every_endpoint_a_token_may_call() -> None:
    """docs/api.md's "What each token may do" names every authenticated route, with the
    kinds the route table lets in (GET /api/v1/reports, open to read tokens, was missing)."""
    text = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
    table = text.split("## What each token may do", 1)[1].split("\n\n", 2)[1]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    answers = {"agent": 1, "write": 2, "read": 3}
    for route in ROUTES:
        if route.auth == "public":
            continue
        words = [w for w in route.openapi_path.split("/")[3:] if not w.startswith("{")]
        word = re.compile(rf"/{re.escape(words[-1])}(?=[`/])")
        found = [row for row in rows if route.method in row.split("|")[1]
                 and word.search(row.split("|")[1])]
        assert found, f"{route.method} {route.path} is not in docs/api.md's table"
        cells = [cell.strip() for cell in found[0].split("|")[1:-1]]
        for kind, column in answers.items():
            allowed = kind in WHO[route.auth]
            assert cells[column].startswith("yes") == allowed, (route.path, kind, cells)
