"""docs/identity.md's examples compute the hash the server expects: each is run (Python
here, Node.js and openssl when installed) and must give the known answer the page states."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from customer_service.core.identity import expected_hash

DOC = Path(__file__).resolve().parents[2] / "docs" / "identity.md"
SECRET = "s3cret-identity-key-0123"
KNOWN = "2caefd02f84e0e15cbc29ea2c1c67ff39a43eb93fa10136b8c18a30bee184f0b"
ENV = {**os.environ, "CUSTOMER_SERVICE_IDENTITY_SECRET": SECRET}


def block(language: str) -> str:
    """The one code block of ``language`` in the page."""
    found = re.findall(rf"^```{language}\n(.*?)^```", DOC.read_text(encoding="utf-8"),
                       flags=re.M | re.S)
    assert len(found) == 1, f"expected one ```{language} block in {DOC.name}"
    return str(found[0])


def test_the_page_states_the_known_answer() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert f"`{SECRET}`" in text and "`user-42`" in text and f"`{KNOWN}`" in text
    assert expected_hash(SECRET, "user-42") == KNOWN


def test_the_python_example(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUSTOMER_SERVICE_IDENTITY_SECRET", SECRET)
    scope: dict[str, object] = {}
    exec(compile(block("python"), str(DOC), "exec"), scope)  # our own docs, on purpose
    chat_user_hash = scope["chat_user_hash"]
    assert callable(chat_user_hash)
    assert chat_user_hash("user-42") == KNOWN
    assert chat_user_hash("Zoë 🌍") == expected_hash(SECRET, "Zoë 🌍")


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_the_node_example() -> None:
    program = block("js") + (
        '\nconsole.log(chatUserHash("user-42"));\nconsole.log(chatUserHash("Zoë 🌍"));'
        "\nconsole.log(chatUserHash(42));\n")
    out = subprocess.run(["node", "-e", program], env=ENV, capture_output=True, text=True,
                         check=True, timeout=30).stdout.split()
    assert out == [KNOWN, expected_hash(SECRET, "Zoë 🌍"), expected_hash(SECRET, "42")]


@pytest.mark.skipif(shutil.which("php") is None, reason="PHP is not installed")
def test_the_php_example() -> None:
    program = block("php").replace("<?php", "") + '\necho chat_user_hash("user-42");\n'
    out = subprocess.run(["php", "-r", program], env=ENV, capture_output=True, text=True,
                         check=True, timeout=30).stdout
    assert out.strip() == KNOWN


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_the_shell_check() -> None:
    out = subprocess.run(["sh", "-c", block("sh")], env=ENV, capture_output=True, text=True,
                         check=True, timeout=30).stdout
    assert out.split()[-1] == KNOWN
