"""Every script the pages load parses: a syntax error (two merges declaring the same name)
stops a whole script, e.g. the widget never shows. Checked with node when it is installed; the
browser tests catch the same in Chromium, this catches it in a second."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

WEB = Path(__file__).resolve().parents[2] / "customer_service" / "web"
NODE = shutil.which("node")
SCRIPTS = sorted(WEB.glob("*.js"))


def is_module(source: str) -> bool:
    return any(line.startswith(("import ", "export ")) for line in source.splitlines())


@pytest.mark.skipif(NODE is None, reason="node is not installed")
@pytest.mark.parametrize("script", SCRIPTS, ids=[path.name for path in SCRIPTS])
def test_script_parses(script: Path) -> None:
    assert NODE is not None
    source = script.read_text(encoding="utf-8")
    kind = "module" if is_module(source) else "commonjs"
    result = subprocess.run([NODE, f"--input-type={kind}", "--check"], input=source,
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, f"{script.name} does not parse:\n{result.stderr}"


def test_the_scripts_are_found() -> None:
    assert {"widget.js", "agent.js", "i18n.js"} <= {path.name for path in SCRIPTS}
