"""The deployment artifacts, checked without a container engine.

* docker-compose.yml: ``docker-compose config`` (Debian's docker-compose 1.29 validates a
  file without an engine) and the resolved services: what the apps are configured with is
  loaded through the real config loader.
* deploy/nginx.conf: ``nginx -t`` on the file itself, in a private mount namespace whose
  /etc/hosts maps app1/app2 to 127.0.0.1 (see ``tests/deploy/nginx.py: check_config``,
  which falls back to a substituted copy where unshare/mount are not permitted); then a
  real nginx with that config in front of small loopback servers: forwarded headers,
  the WebSocket tunnel, failover, the body limit.
* Dockerfile and .dockerignore: parsed; COPY sources exist and are not ignored, the user
  is not root, and the HEALTHCHECK command itself is run against a loopback /healthz.
* docs/deploy.md: its links and its systemd unit.

Each tool's test skips, with the reason, when the tool is not installed.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from customer_service.config import load_config
from customer_service.config_template import env_var, iter_keys

from .nginx import (
    DEPLOY_CONF,
    REPO_ROOT,
    _children,
    check_config,
    free_port,
    mount_namespace_works,
    nginx_in_front_of,
    render_loopback_conf,
    require_nginx,
    run_nginx,
)

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
DEPLOY_DOC = REPO_ROOT / "docs" / "deploy.md"
APP_SERVICES = ("app1", "app2")
CONFIG_ENV_NAMES = frozenset(env_var(section, key) for section, key, _, _ in iter_keys())
# Variables docker-compose.yml reads; unset for the tests so the defaults apply.
COMPOSE_VARIABLES = ("MARIADB_PASSWORD", "PUBLIC_URL", "APP_WORKERS", "CHAT_SUBNET")


# --- docker-compose --------------------------------------------------------------------------


def _docker_compose() -> str:
    found = shutil.which("docker-compose")
    if found is None:
        pytest.skip("docker-compose is not installed (Debian: apt-get install docker-compose; "
                    ".ci/run does it)")
    return found


def _compose_config(tmp_path: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    """``docker-compose -f docker-compose.yml config``, hermetic: no .env file, none of
    the file's variables from the caller's environment unless given here."""
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    environ = {k: v for k, v in os.environ.items()
               if k not in COMPOSE_VARIABLES and not k.startswith(("COMPOSE_", "DOCKER_"))}
    environ.update(variables)
    return subprocess.run(
        [_docker_compose(), "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config"],
        cwd=REPO_ROOT, env=environ, capture_output=True, text=True, timeout=120, check=False)


def _yaml_to_data(text: str) -> Any:
    """Parse YAML with the interpreter that runs docker-compose (it needs PyYAML; the
    project's venv does not have it and need not)."""
    script = Path(_docker_compose()).read_bytes()[:200].split(b"\n", 1)[0].decode(errors="replace")
    if not (script.startswith("#!") and "python" in script):
        pytest.skip(f"docker-compose is not a Python script ({script[:60]!r}): no YAML parser")
    interpreter = shlex.split(script[2:])
    done = subprocess.run(
        [*interpreter, "-c", "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"],
        input=text, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        pytest.skip(f"docker-compose's Python cannot parse YAML: {done.stderr.strip()[-200:]}")
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The resolved compose file (``docker-compose config``, defaults for every variable)."""
    done = _compose_config(tmp_path_factory.mktemp("compose"))
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = _yaml_to_data(done.stdout)
    return data


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # "KEY=value" form
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def test_docker_compose_config_validates(tmp_path: Path) -> None:
    done = _compose_config(tmp_path)
    assert done.returncode == 0, done.stderr
    # An unset variable without a default, or an unknown key, is a warning in 1.29.
    assert "WARNING" not in done.stderr, done.stderr
    assert re.search(r"^services:$", done.stdout, re.M)
    for service in ("mariadb", "redis", *APP_SERVICES, "nginx"):
        assert re.search(rf"^  {service}:$", done.stdout, re.M), service


def test_compose_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"mariadb", "redis", "app1", "app2", "nginx"}
    app1, app2 = services["app1"], services["app2"]
    # One definition (the x-app anchor) for both: they differ in nothing but their name.
    assert app1 == app2
    context = app1["build"]["context"] if isinstance(app1["build"], dict) else app1["build"]
    assert Path(context).resolve() == REPO_ROOT
    # Only nginx is reachable from outside; the apps are configured by environment alone.
    for name in APP_SERVICES:
        assert "ports" not in services[name]
        assert "volumes" not in services[name]
        assert "command" not in services[name]
    assert services["mariadb"]["image"].startswith("mariadb:11")
    assert services["redis"]["image"].startswith("redis:7")


def test_compose_app_environment_names_are_config_keys(compose: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        env = _environment(compose["services"][name])
        assert env, name
        unknown = sorted(set(env) - CONFIG_ENV_NAMES)
        assert not unknown, f"{name}: not CUSTOMER_SERVICE_<SECTION>_<KEY> of a config key: {unknown}"


def test_compose_file_names_only_config_keys() -> None:
    """The same, on the file's text, so it holds even where docker-compose is missing."""
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    names = set(re.findall(r"\bCUSTOMER_SERVICE_[A-Z0-9_]+", text))
    assert "CUSTOMER_SERVICE_STORAGE_BACKEND" in names
    assert names <= CONFIG_ENV_NAMES, sorted(names - CONFIG_ENV_NAMES)
    assert re.search(r"^x-app: &app$", text, re.M)
    for name in APP_SERVICES:
        assert re.search(rf"^  {name}:\n    <<: \*app$", text, re.M), name


def test_compose_app_environment_is_a_valid_config(compose: dict[str, Any]) -> None:
    """What the apps get loads through the real loader into the intended deployment."""
    services = compose["services"]
    env = _environment(services["app1"])
    config = load_config(None, environ=env)
    assert config.server.host == "0.0.0.0"
    assert config.storage.backend == "mysql"
    assert config.storage.mysql_host == "mariadb"
    assert config.bus.redis_url == "redis://redis:6379/0"
    assert config.log.format == "json"
    # The database, user and password are the ones the mariadb service creates.
    db_env = _environment(services["mariadb"])
    assert config.storage.mysql_database == db_env["MARIADB_DATABASE"]
    assert config.storage.mysql_user == db_env["MARIADB_USER"]
    assert config.storage.mysql_password == db_env["MARIADB_PASSWORD"] == "change-me"
    # X-Forwarded-For is trusted from the whole compose network, where nginx lives.
    (subnet,) = [ipaddress.IPv4Network(entry["subnet"])
                 for entry in compose["networks"]["chat"]["ipam"]["config"]]
    trusted = [ipaddress.ip_network(entry, strict=False) for entry in config.server.trusted_proxies]
    assert any(isinstance(network, ipaddress.IPv4Network) and subnet.subnet_of(network)
               for network in trusted), (subnet, trusted)
    for name in ("mariadb", "redis", *APP_SERVICES, "nginx"):
        assert list(services[name]["networks"]) == ["chat"], name


def test_compose_variables_reach_the_apps_and_the_database(tmp_path: Path) -> None:
    done = _compose_config(tmp_path, MARIADB_PASSWORD="s3cret-from-env", APP_WORKERS="auto",
                           CHAT_SUBNET="10.99.0.0/24")
    assert done.returncode == 0, done.stderr
    services = _yaml_to_data(done.stdout)["services"]
    assert _environment(services["mariadb"])["MARIADB_PASSWORD"] == "s3cret-from-env"
    for name in APP_SERVICES:
        config = load_config(None, environ=_environment(services[name]))
        assert config.storage.mysql_password == "s3cret-from-env"
        assert config.server.workers == "auto"
        assert config.server.trusted_proxies == ["10.99.0.0/24"]


def test_compose_start_order_waits_for_healthy_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in APP_SERVICES:
        depends = services[name]["depends_on"]
        assert depends == {"mariadb": {"condition": "service_healthy"},
                           "redis": {"condition": "service_healthy"}}, name
    assert "healthcheck.sh" in services["mariadb"]["healthcheck"]["test"]
    assert services["redis"]["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]
    assert set(services["nginx"]["depends_on"]) == set(APP_SERVICES)


def test_compose_nginx_mounts_deploy_conf(compose: dict[str, Any]) -> None:
    nginx = compose["services"]["nginx"]
    assert nginx["image"].startswith("nginx:")
    mounts = []
    for volume in nginx["volumes"]:
        if isinstance(volume, str):
            source, target, *mode = volume.split(":")
            mounts.append((Path(source).resolve(), target, "ro" in mode))
        else:
            mounts.append((Path(volume["source"]).resolve(), volume["target"],
                           bool(volume.get("read_only"))))
    assert (DEPLOY_CONF, "/etc/nginx/nginx.conf", True) in mounts
    ports = [(str(p["published"]), str(p["target"])) if isinstance(p, dict)
             else tuple(str(p).split(":")[-2:]) for p in nginx["ports"]]
    assert ("8080", "80") in ports


def test_nginx_upstreams_are_the_compose_apps(compose: dict[str, Any]) -> None:
    upstream = _block(DEPLOY_CONF.read_text(), r"upstream customer_service")
    servers = re.findall(r"^[ \t]*server[ \t]+([^\s;]+)", upstream, re.M)
    app_port = load_config(None, environ=_environment(compose["services"]["app1"])).server.port
    assert servers == [f"{name}:{app_port}" for name in APP_SERVICES]
    assert re.search(rf"^EXPOSE {app_port}$", DOCKERFILE.read_text(), re.M)


# --- nginx -t and the config's content -----------------------------------------------------


def test_nginx_t_passes_on_deploy_conf(tmp_path: Path) -> None:
    """``nginx -t`` on deploy/nginx.conf. Its upstreams app1/app2 resolve only inside
    compose, so :func:`check_config` runs nginx in a private mount namespace (``unshare
    --mount``, as root) where /etc/hosts is a bind-mounted copy mapping them to
    127.0.0.1; where unshare/mount are not permitted (an unprivileged container) it
    falls back to a copy of the config with the two names replaced by 127.0.0.1.
    Either way nothing is written outside tmp_path (``-p``, ``-g "pid ...; error_log
    ...;"``, and nginx's compiled-in temp dirs hidden behind a tmp folder)."""
    hosts_before = Path("/etc/hosts").read_bytes()
    result = check_config(DEPLOY_CONF, tmp_path / "nginx-t")
    assert result.returncode == 0, result.output
    assert "syntax is ok" in result.output
    assert "test is successful" in result.output
    # The host's /etc/hosts was never touched (the namespace's copy went away with it).
    assert Path("/etc/hosts").read_bytes() == hosts_before
    expected = "namespace" if mount_namespace_works(tmp_path / "probe") else "substituted"
    assert result.method == expected
    if result.method == "namespace":
        assert str(DEPLOY_CONF) in result.command  # the file itself, not a copy


def test_nginx_t_catches_a_broken_conf(tmp_path: Path) -> None:
    """The check is not vacuous: a typo, or an upstream name nobody maps, fails it."""
    broken = tmp_path / "typo.conf"
    broken.write_text(DEPLOY_CONF.read_text().replace("proxy_buffering off;", "proxy_bufering off;"))
    result = check_config(broken, tmp_path / "typo")
    assert result.returncode != 0
    assert "proxy_bufering" in result.output
    unresolved = check_config(DEPLOY_CONF, tmp_path / "unresolved", resolve=("app1",))
    assert unresolved.returncode != 0
    assert "app2" in unresolved.output


def test_nginx_t_fallback_on_a_substituted_copy(tmp_path: Path) -> None:
    result = check_config(DEPLOY_CONF, tmp_path / "copy", allow_namespace=False)
    assert result.method == "substituted"
    assert result.returncode == 0, result.output
    copy = (tmp_path / "copy" / "nginx.conf").read_text()
    assert "server 127.0.0.1:8080" in copy
    assert not re.search(r"^\s*server\s+app[12]:", copy, re.M)


def _block(text: str, header: str) -> str:
    """The body of the first ``header {`` block (braces balanced, comments dropped)."""
    code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    start = re.search(rf"{header}\s*\{{", code, re.M)
    assert start, header
    depth, index = 1, start.end()
    while depth:
        depth += {"{": 1, "}": -1}.get(code[index], 0)
        index += 1
    return code[start.end():index - 1]


def _seconds(value: str) -> int:
    found = re.fullmatch(r"(\d+)(ms|s|m|h|d)?", value)
    assert found, f"not an nginx/systemd time: {value!r}"
    number, unit = found.groups()
    return int(number) * {"ms": 0, None: 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def test_nginx_conf_has_what_websockets_need() -> None:
    text = DEPLOY_CONF.read_text()
    assert re.search(r"^events\s*\{", text, re.M) and re.search(r"^http\s*\{", text, re.M)
    http_block = _block(text, r"^http")
    assert re.search(r"map \$http_upgrade \$connection_upgrade", http_block)
    server = _block(http_block, r"\bserver")
    assert re.search(r"^\s*listen 80;", server, re.M)
    # Set once at server level: a location with its own proxy_set_header would drop them.
    for header in (r"proxy_http_version 1\.1;",
                   r"proxy_set_header Upgrade \$http_upgrade;",
                   r"proxy_set_header Connection \$connection_upgrade;",
                   r"proxy_set_header Host \$host;",
                   r"proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;",
                   r"proxy_set_header X-Forwarded-Proto \$scheme;",
                   r"client_max_body_size 64k;",
                   r"proxy_next_upstream error timeout"):
        assert re.search(header, server), header
    for location in re.findall(r"location[^{]*\{[^}]*\}", server):
        assert "proxy_set_header" not in location, location
    sockets = _block(server, r"location /ws/")
    assert re.search(r"proxy_buffering off;", sockets)
    for timeout in ("proxy_read_timeout", "proxy_send_timeout"):
        found = re.search(rf"{timeout} (\w+);", sockets)
        assert found, timeout
        assert _seconds(found.group(1)) >= 1800, found.group(0)  # clients ping every ~25 s
    upstream = _block(http_block, r"upstream customer_service")
    assert len(re.findall(r"server \S+ max_fails=\d+ fail_timeout=\w+;", upstream)) == 2


# --- a real nginx in front of loopback servers (proves tests/deploy/nginx.py) ---------------


@dataclass
class Seen:
    """What a loopback upstream received."""

    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, method: str, path: str, headers: dict[str, str]) -> None:
        with self.lock:
            self.requests.append((method, path, headers))


class _Upstream(BaseHTTPRequestHandler):
    """Echoes the request headers as JSON; /ws/* upgrades and echoes raw bytes;
    /healthz answers with the server's ``health_status``."""

    protocol_version = "HTTP/1.1"
    server: _UpstreamServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.seen.add("GET", self.path, headers)
        if self.path == "/healthz":
            self._reply(self.server.health_status, b'{"status":"ok"}')
        elif self.path.startswith("/ws/") and headers.get("upgrade", "").lower() == "websocket":
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.end_headers()
            self.wfile.flush()
            self.close_connection = True
            try:
                while data := self.connection.recv(4096):
                    self.connection.sendall(data)
            except OSError:
                pass
        else:
            self._reply(200, json.dumps({"name": self.server.name, "headers": headers}).encode())

    def do_POST(self) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.seen.add("POST", self.path, headers)
        self.rfile.read(int(headers.get("content-length", "0")))
        self._reply(200, b"{}")


class _UpstreamServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, name: str) -> None:
        super().__init__(("127.0.0.1", 0), _Upstream)
        self.name = name
        self.seen = Seen()
        self.health_status = 200

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def upstreams() -> Iterator[list[_UpstreamServer]]:
    """Two loopback HTTP servers standing in for app1 and app2."""
    servers = [_UpstreamServer("app1"), _UpstreamServer("app2")]
    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
               for s in servers]
    for thread in threads:
        thread.start()
    try:
        yield servers
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
        for thread in threads:
            thread.join(5)


def _get(port: int, path: str, headers: dict[str, str] | None = None,
         method: str = "GET", body: bytes | None = None) -> tuple[int, bytes, dict[str, str]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read(), {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()


def test_nginx_in_front_forwards_client_address(tmp_path: Path,
                                                upstreams: list[_UpstreamServer]) -> None:
    with nginx_in_front_of([upstreams[0].address], tmp_path / "nginx") as nginx:
        status, body, _ = _get(nginx.port, "/api/v1/whatever", {"Host": "chat.example.com"})
        assert status == 200, nginx.logs()
        seen = json.loads(body)["headers"]
        assert seen["x-forwarded-for"] == "127.0.0.1"
        assert seen["x-forwarded-proto"] == "http"
        assert seen["host"] == "chat.example.com"
        # A plain request carries no Connection header upstream (the map's '' case), so
        # the upstream connection stays open for the next request.
        assert "connection" not in seen
        assert "upgrade" not in seen
        # A client's own X-Forwarded-For is kept, nginx's peer appended: the server
        # believes only the part added by its trusted proxies.
        status, body, _ = _get(nginx.port, "/", {"X-Forwarded-For": "203.0.113.9"})
        assert json.loads(body)["headers"]["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
        assert "upstream=" + upstreams[0].address in nginx.access_log.read_text()


def test_nginx_in_front_tunnels_websockets(tmp_path: Path, upstreams: list[_UpstreamServer]) -> None:
    with nginx_in_front_of([upstreams[0].address], tmp_path / "nginx") as nginx, \
            socket.create_connection(("127.0.0.1", nginx.port), timeout=10) as sock:
        sock.sendall(b"GET /ws/visitor HTTP/1.1\r\nHost: chat.example.com\r\n"
                     b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     b"Sec-WebSocket-Version: 13\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(4096)
            assert chunk, answer
            answer += chunk
        head, _, rest = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        # Bytes flow both ways through the tunnel, unbuffered.
        for payload in (b"first frame", b"second frame" * 100):
            sock.sendall(payload)
            echoed = rest
            while len(echoed) < len(payload):
                chunk = sock.recv(65536)
                assert chunk
                echoed += chunk
            assert echoed == payload
            rest = b""
        ((method, path, headers),) = upstreams[0].seen.requests
        assert (method, path) == ("GET", "/ws/visitor")
        assert headers["upgrade"] == "websocket"
        assert headers["connection"].lower() == "upgrade"
        assert headers["x-forwarded-for"] == "127.0.0.1"


def test_nginx_in_front_balances_and_retries(tmp_path: Path, upstreams: list[_UpstreamServer]) -> None:
    with nginx_in_front_of([s.address for s in upstreams], tmp_path / "nginx") as nginx:
        names = []
        for _ in range(8):
            status, body, _ = _get(nginx.port, "/")
            assert status == 200, nginx.logs()
            names.append(json.loads(body)["name"])
        assert set(names) == {"app1", "app2"}
        # An instance whose database is down answers /healthz with 503: the request is
        # retried on the other instance, and the client sees the healthy one.
        upstreams[0].health_status = 503
        for _ in range(4):
            status, body, _ = _get(nginx.port, "/healthz")
            assert status == 200, nginx.logs()
        assert any(path == "/healthz" for _, path, _ in upstreams[0].seen.requests)
        assert sum(path == "/healthz" for _, path, _ in upstreams[1].seen.requests) == 4


def test_nginx_in_front_fails_over_and_limits_bodies(tmp_path: Path,
                                                     upstreams: list[_UpstreamServer]) -> None:
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there: an instance that is down
    live = upstreams[0]
    with nginx_in_front_of([dead, live.address], tmp_path / "nginx") as nginx:
        for _ in range(6):
            status, body, _ = _get(nginx.port, "/")
            assert status == 200, nginx.logs()  # the refused connection is retried on live
            assert json.loads(body)["name"] == "app1"
        assert "connect() failed" in nginx.error_log.read_text(), nginx.logs()
        # Bodies over the server's 64 KiB limit stop at nginx; smaller ones pass.
        status, _, _ = _get(nginx.port, "/api/v1/login", method="POST", body=b"x" * 100_000,
                            headers={"Content-Type": "application/json"})
        assert status == 413
        status, _, _ = _get(nginx.port, "/api/v1/login", method="POST", body=b"x" * 60_000)
        assert status == 200
        assert [m for m, _, _ in live.seen.requests].count("POST") == 1
        # /metrics is per instance: kept off the proxy.
        status, _, _ = _get(nginx.port, "/metrics")
        assert status == 403
        assert all(path != "/metrics" for _, path, _ in live.seen.requests)


def test_render_loopback_conf_keeps_everything_local(tmp_path: Path) -> None:
    rendered = render_loopback_conf(tmp_path / "r", ["127.0.0.1:9001", "127.0.0.1:9002"], 18080)
    text = rendered.conf.read_text()
    code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    assert not re.search(r"\bapp[12]\b", code)
    assert re.findall(r"^\s*listen\s+(\S+);", text, re.M) == ["127.0.0.1:18080"]
    assert re.findall(r"^\s*server\s+(\S+)\s+max_fails=3 fail_timeout=3s;", text, re.M) == [
        "127.0.0.1:9001", "127.0.0.1:9002"]
    written = re.findall(r"^\s*(?:pid|error_log|access_log|\w+_temp_path)\s+(\S+)", text, re.M)
    assert len(written) >= 8
    assert all(path.startswith(str(rendered.directory)) for path in written), written
    assert not re.search(r"^\s*daemon\b", text, re.M)
    # Everything else is the deployed config.
    assert "proxy_read_timeout 1h;" in text and "client_max_body_size 64k;" in text
    result = check_config(rendered.conf, tmp_path / "t", resolve=(), allow_namespace=False)
    assert result.returncode == 0, result.output


def test_run_nginx_stops_master_and_workers(tmp_path: Path) -> None:
    require_nginx()
    port = free_port()
    rendered = render_loopback_conf(tmp_path / "n", [f"127.0.0.1:{free_port()}"], port,
                                    worker_processes=2)
    with run_nginx(rendered.directory) as nginx:
        assert nginx.port == port
        assert (rendered.directory / "nginx.pid").read_text().strip() == str(nginx.pid)
        status, _, headers = _get(port, "/")  # no upstream listening: nginx's own 502
        assert status == 502 and headers["server"] == "nginx"
        workers = _children(nginx.pid)
        assert len(workers) == 2
    assert nginx.process.returncode is not None
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


# --- Dockerfile and .dockerignore ----------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int
    stage: int  # -1 before the first FROM


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined (comment lines inside dropped)."""
    instructions: list[Instruction] = []
    buffer, start, stage = "", 0, -1
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        keyword, _, args = (buffer + stripped).partition(" ")
        buffer = ""
        if keyword.upper() == "FROM":
            stage += 1
        instructions.append(Instruction(keyword.upper(), args.strip(), start, stage))
    assert not buffer, "the Dockerfile ends in a continuation line"
    return instructions


def _words(args: str) -> list[str]:
    return json.loads(args) if args.startswith("[") else shlex.split(args)


def _dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """(exclude?, regex) per line, in Docker's syntax: * within a name, ** across folders."""
    patterns = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        line = line.lstrip("!").strip("/")
        regex = ""
        for part in re.split(r"(\*\*/?|\*|\?)", line):
            regex += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
                part, re.escape(part))
        patterns.append((not negate, re.compile(regex + "(?:/.*)?")))
    return patterns


def dockerignored(relative: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether the build context leaves ``relative`` out (the last matching line wins)."""
    ignored = False
    for exclude, pattern in patterns:
        if pattern.fullmatch(relative):
            ignored = exclude
    return ignored


@pytest.fixture(scope="module")
def dockerfile() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text())


def test_dockerfile_is_multi_stage_on_python_slim(dockerfile: list[Instruction]) -> None:
    args = dict(i.args.split("=", 1) for i in dockerfile if i.keyword == "ARG" and i.stage == -1)
    stages = [i for i in dockerfile if i.keyword == "FROM"]
    assert len(stages) == 2
    images = [re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], _words(s.args)[0]) for s in stages]
    assert images == ["python:3.11-slim", "python:3.11-slim"]
    assert _words(stages[0].args)[1:] == ["AS", "builder"]
    builder_runs = " ".join(i.args for i in dockerfile if i.keyword == "RUN" and i.stage == 0)
    assert "pip wheel" in builder_runs
    # The final stage takes only the installed result from the builder.
    final_copies = [_words(i.args) for i in dockerfile if i.keyword == "COPY" and i.stage == 1]
    assert final_copies and all(words[0] == "--from=builder" for words in final_copies)


def test_dockerfile_runs_as_non_root(dockerfile: list[Instruction]) -> None:
    users = [i.args for i in dockerfile if i.keyword == "USER" and i.stage == 1]
    assert users, "the final stage sets no USER: it would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    created = " ".join(i.args for i in dockerfile if i.keyword == "RUN" and i.stage == 1)
    assert re.search(rf"useradd .*--uid {re.escape(user)}\b", created), created


def test_dockerfile_entrypoint_and_environment(dockerfile: list[Instruction]) -> None:
    final = {i.keyword: i.args for i in dockerfile if i.stage == 1}
    assert json.loads(final["ENTRYPOINT"]) == ["customer-service"]
    assert json.loads(final["CMD"]) == ["serve"]
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    assert re.search(r'^customer-service = "customer_service\.cli:main"$', pyproject, re.M)
    assert final["EXPOSE"] == "8080"
    env: dict[str, str] = {}
    for instruction in dockerfile:
        if instruction.keyword == "ENV" and instruction.stage == 1:
            for word in shlex.split(instruction.args):
                name, _, value = word.partition("=")
                env[name] = value
    assert env["CUSTOMER_SERVICE_SERVER_HOST"] == "0.0.0.0"
    names = {name for name in env if name.startswith("CUSTOMER_SERVICE_")}
    assert names <= CONFIG_ENV_NAMES, names - CONFIG_ENV_NAMES
    config_env = {name: env[name] for name in names}
    assert load_config(None, environ=config_env).server.host == "0.0.0.0"


def test_dockerfile_copy_sources_exist_and_are_in_the_context(dockerfile: list[Instruction]) -> None:
    patterns = _dockerignore_patterns()
    checked = 0
    for instruction in dockerfile:
        if instruction.keyword not in ("COPY", "ADD"):
            continue
        words = _words(instruction.args)
        if any(word.startswith("--from=") for word in words):
            continue  # from another stage, not from the repository
        sources = [w for w in words if not w.startswith("--")][:-1]
        assert sources, instruction
        for source in sources:
            path = REPO_ROOT / source
            assert path.exists(), f"Dockerfile:{instruction.line}: COPY {source}: not in the repo"
            files = [path] if path.is_file() else [
                p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
            assert files, source
            for file in files:
                relative = file.relative_to(REPO_ROOT).as_posix()
                assert not dockerignored(relative, patterns), f"{relative} is in .dockerignore"
                checked += 1
    assert checked > 20  # the whole customer_service package, web assets and migrations


def test_dockerignore_leaves_out_local_state() -> None:
    patterns = _dockerignore_patterns()
    for relative in (".venv/bin/python", ".git/HEAD", "dist/customer-service", "prod.db",
                     "customer-service.db-wal", "customer_service/__pycache__/config.cpython-311.pyc",
                     ".pytest_cache/v/cache", ".mypy_cache/3.11/x.json", "tests/conftest.py",
                     "customer_service.egg-info/PKG-INFO"):
        assert dockerignored(relative, patterns), relative
    for relative in ("pyproject.toml", "README.md", "customer_service/config.py",
                     "customer_service/web/widget.js", "tools/zipapp-constraints.txt"):
        assert not dockerignored(relative, patterns), relative


def test_dockerfile_healthcheck_hits_healthz_with_python(dockerfile: list[Instruction]) -> None:
    (check,) = [i.args for i in dockerfile if i.keyword == "HEALTHCHECK"]
    assert "curl" not in check and "wget" not in check
    options, _, command = check.partition("CMD ")
    assert re.search(r"--interval=\d+s", options) and re.search(r"--timeout=\d+s", options)
    argv = json.loads(command)
    assert argv[:2] == ["python", "-c"]
    assert "urllib.request" in argv[2] and "/healthz" in argv[2]


def test_dockerfile_healthcheck_command_works(dockerfile: list[Instruction], tmp_path: Path,
                                               upstreams: list[_UpstreamServer]) -> None:
    """The HEALTHCHECK command, run here against a loopback /healthz: exit 0 on 200, not 0
    on 503 (database down) and when nothing listens."""
    (check,) = [i.args for i in dockerfile if i.keyword == "HEALTHCHECK"]
    argv = json.loads(check.partition("CMD ")[2])
    server = upstreams[0]

    def run(port: int) -> int:
        environ = {"PATH": os.environ.get("PATH", ""), "CUSTOMER_SERVICE_SERVER_PORT": str(port)}
        return subprocess.run([sys.executable, *argv[1:]], env=environ, capture_output=True,
                              timeout=30, check=False).returncode

    port = int(server.address.rsplit(":", 1)[1])
    assert run(port) == 0
    server.health_status = 503
    assert run(port) != 0
    assert run(free_port()) != 0
    assert [path for _, path, _ in server.seen.requests] == ["/healthz", "/healthz"]


# --- docs/deploy.md ------------------------------------------------------------------------


def test_deploy_doc_links_resolve() -> None:
    text = DEPLOY_DOC.read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert links
    for link in links:
        assert "shared/" not in link, link
        if re.match(r"[a-z]+:", link) or link.startswith("#"):
            continue
        target = (DEPLOY_DOC.parent / link.split("#", 1)[0]).resolve()
        assert target.exists(), link
    assert "configuration.md" in " ".join(links)
    assert "[docs/deploy.md](docs/deploy.md)" in (REPO_ROOT / "README.md").read_text()


def _systemd_unit() -> str:
    found = re.search(r"```ini\n(# /etc/systemd/system/customer-service\.service\n.*?)```",
                      DEPLOY_DOC.read_text(), re.S)
    assert found, "docs/deploy.md shows no customer-service.service unit"
    return found.group(1)


def test_deploy_doc_systemd_unit() -> None:
    unit = _systemd_unit()
    settings: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if "=" in line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    for key in ("User", "EnvironmentFile", "ExecStart", "LimitNOFILE", "Restart",
                "TimeoutStopSec", "NoNewPrivileges", "ProtectSystem", "ReadWritePaths"):
        assert key in settings, key
    assert settings["Restart"] == ["on-failure"]
    assert int(settings["LimitNOFILE"][0]) >= 65536
    assert settings["ProtectSystem"] == ["strict"]
    # A stop must outlast the server's own graceful shutdown ([server] shutdown_timeout).
    shutdown = load_config(REPO_ROOT / "prod.toml", environ={}).server.shutdown_timeout
    assert _seconds(settings["TimeoutStopSec"][0]) > shutdown
    assert "--config=" in settings["ExecStart"][0]


def test_deploy_doc_systemd_unit_verifies(tmp_path: Path) -> None:
    """``systemd-analyze verify`` on the page's unit (with ExecStart pointed at a file
    that exists here), when systemd-analyze is installed. It reports an unknown key or a
    bad value as ``FILE:LINE: ...`` and goes on, so any such line is a failure."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    fake = tmp_path / "customer-service"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    unit = re.sub(r"^ExecStart=\S+", f"ExecStart={fake}", _systemd_unit(), flags=re.M)

    def complaints(text: str, name: str) -> list[str]:
        folder = tmp_path / name
        folder.mkdir()
        path = folder / "customer-service.service"
        path.write_text(text)
        done = subprocess.run([analyze, "verify", "--man=no", str(path)], capture_output=True,
                              text=True, timeout=60, check=False)
        return [line for line in (done.stdout + done.stderr).splitlines() if f"{path}:" in line]

    if not complaints(unit.replace("Restart=on-failure", "Restart=on-failure\nNoSuchKey=1"), "bad"):
        pytest.skip("systemd-analyze verify does not report unknown keys here")
    assert complaints(unit, "good") == []
