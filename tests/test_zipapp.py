"""Build the shiv zipapp as shiv.spec says, then run it as a user would.

Slow (pip installs every dependency into the build) and needs the package index,
so it is marked ``zipapp``: ``pytest -m 'not zipapp'`` skips it locally; CI runs it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.zipapp

REPO = Path(__file__).resolve().parents[1]
BUILD = [sys.executable, str(REPO / "tools" / "build_zipapp.py")]


def _build(output: Path) -> Path:
    subprocess.run([*BUILD, "--output", str(output)], check=True, cwd=REPO, timeout=900)
    assert output.is_file()
    assert os.access(output, os.X_OK)
    return output


@pytest.fixture(scope="module")
def zipapp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("dist") / "customer-service")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """Run the zipapp away from the source tree: no PYTHONPATH, its own SHIV_ROOT.

    ``/usr/bin/env python3`` in its shebang must find the Python that built it,
    so that interpreter's directory goes first on PATH.
    """
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CUSTOMER_SERVICE_") and k not in {"PYTHONPATH", "PYTHONHOME"}}
    env["SHIV_ROOT"] = str(tmp_path / "shiv-root")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _run(zipapp: Path, *args: str, env: dict[str, str], cwd: Path
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(zipapp), *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=120, check=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_help_and_version(zipapp: Path, env: dict[str, str], tmp_path: Path) -> None:
    done = _run(zipapp, "--help", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Usage: customer-service" in done.stdout
    for command in ("serve", "agents", "conversations", "db", "stats", "config"):
        assert command in done.stdout
    done = _run(zipapp, "--version", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("customer-service ")


def test_config_init_check_and_agents(zipapp: Path, env: dict[str, str], tmp_path: Path
                                      ) -> None:
    done = _run(zipapp, "config", "init", "cs.toml", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "cs.toml").is_file()
    done = _run(zipapp, "config", "check", "cs.toml", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok")
    # The migrations are package data read through importlib.resources: they must
    # be inside the zipapp for this to work.
    done = _run(zipapp, "--config", "cs.toml", "db", "migrate", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "applied migration 1" in done.stdout
    assert (tmp_path / "customer-service.db").is_file()


@pytest.fixture
def server(zipapp: Path, env: dict[str, str], tmp_path: Path
           ) -> Iterator[tuple[subprocess.Popen[str], int]]:
    assert _run(zipapp, "config", "init", "cs.toml", env=env, cwd=tmp_path).returncode == 0
    port = _free_port()
    proc = subprocess.Popen([str(zipapp), "--config=cs.toml", "serve", "--port", str(port)],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def test_serve_answers_healthz_serves_the_pages_and_stops_on_sigterm(
        server: tuple[subprocess.Popen[str], int], tmp_path: Path) -> None:
    proc, port = server
    url = f"http://127.0.0.1:{port}/healthz"
    deadline = time.monotonic() + 60  # the first run unpacks the zipapp into SHIV_ROOT
    status = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"serve exited with {proc.returncode}:\n{out}\n{err}")
        try:
            status = httpx.get(url, timeout=2).status_code
        except httpx.TransportError:
            status = None
        if status == 200:
            break
        time.sleep(0.2)
    assert status == 200, f"{url} never answered 200"
    base = f"http://127.0.0.1:{port}"
    page = httpx.get(f"{base}/agent", timeout=5)
    widget = httpx.get(f"{base}/widget.js", timeout=5)
    module = httpx.get(f"{base}/static/agent.js", timeout=5)
    assert page.status_code == 200 and "content-security-policy" in page.headers
    assert widget.status_code == 200 and "currentScript" in widget.text
    assert module.status_code == 200 and module.headers["content-type"].startswith("text/javascript")

    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"http://127.0.0.1:{port}/healthz" in out  # the banner
    assert (tmp_path / "customer-service.db").is_file()  # next to cs.toml


def test_build_is_reproducible(zipapp: Path, tmp_path: Path) -> None:
    """Same sources, same Python, same constraints: the same bytes."""
    again = _build(tmp_path / "customer-service")
    if again.read_bytes() != zipapp.read_bytes():
        with zipfile.ZipFile(zipapp) as first, zipfile.ZipFile(again) as second:
            a = {i.filename: i.CRC for i in first.infolist()}
            b = {i.filename: i.CRC for i in second.infolist()}
        differ = sorted(name for name in a.keys() | b.keys() if a.get(name) != b.get(name))
        pytest.fail(f"two builds differ in {differ or 'zip metadata only'} "
                    "(did the sources change between the builds?)")
