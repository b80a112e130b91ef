"""A real nginx, configured by deploy/nginx.conf, for tests.

Two jobs:

* :func:`check_config` runs ``nginx -t`` on a config whose upstream names (``app1``,
  ``app2``) only resolve inside docker compose, without writing under /etc or /var.
* :func:`render_loopback_conf` + :func:`run_nginx` (or both at once,
  :func:`nginx_in_front_of`) run nginx in front of server processes on loopback::

      with nginx_in_front_of(["127.0.0.1:8081", "127.0.0.1:8082"], tmp_path / "nginx") as nginx:
          httpx.get(f"{nginx.url}/healthz")     # through nginx, to one of the two
          nginx.access_log.read_text()          # which instance served it (upstream=...)

  The rendered config is deploy/nginx.conf with only what cannot work on loopback
  changed: the upstream servers, the listen address, worker_processes, and every file
  nginx writes (pid, logs, temp dirs), which all go to the given folder. Everything
  else (headers, timeouts, buffering, retries, body limit) is the deployed config.

Plain (not async) context managers: usable from sync tests and from trio tests alike
(starting nginx blocks for a few milliseconds). nginx is stopped by PID: SIGTERM to the
master, then SIGKILL to it and its workers if it has not exited within ``stop_timeout``.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

__all__ = [
    "DEPLOY_CONF",
    "REPO_ROOT",
    "ConfigCheck",
    "LoopbackConf",
    "NginxPortInUse",
    "RunningNginx",
    "check_config",
    "find_nginx",
    "free_port",
    "listen_port_of",
    "mount_namespace_works",
    "nginx_in_front_of",
    "render_loopback_conf",
    "require_nginx",
    "run_nginx",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY_CONF = REPO_ROOT / "deploy" / "nginx.conf"
CONF_NAME = "nginx.conf"
"""The file :func:`render_loopback_conf` writes in its folder and :func:`run_nginx` runs."""

_TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
_ADDRESS = re.compile(r"^(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9A-Fa-f:]+\]|[A-Za-z0-9.\-]+):\d{1,5}$")


class NginxPortInUse(RuntimeError):
    """nginx could not bind its listen port (another process took it meanwhile)."""


def find_nginx() -> str | None:
    """The nginx binary (PATH, then /usr/sbin/nginx as Debian installs it), or None."""
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


def require_nginx() -> str:
    """The nginx binary, or skip the calling test with the reason."""
    found = find_nginx()
    if found is None:
        pytest.skip("nginx is not installed (Debian: apt-get install nginx; .ci/run does it)")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


# --- rendering ---------------------------------------------------------------------------


def _directive(name: str) -> re.Pattern[str]:
    """A one-line directive ``name ...;`` (comments start with #, so never match)."""
    return re.compile(rf"^(?P<indent>[ \t]*){name}(?:[ \t]+(?P<args>[^;#\n]*))?;[^\n]*$", re.M)


def _drop(text: str, name: str) -> str:
    return _directive(name).sub("", text)


def _temp_path_lines(directory: Path, indent: str) -> str:
    return "".join(f"{indent}{kind}_temp_path {directory / (kind + '_temp')};\n"
                   for kind in _TEMP_PATHS)


def with_temp_paths(text: str, directory: Path) -> str:
    """``text`` with every nginx temp dir (request bodies, proxied responses...) under
    ``directory``, instead of the compiled-in ones (Debian: /var/lib/nginx/*)."""
    for kind in _TEMP_PATHS:
        text = _drop(text, f"{kind}_temp_path")
    http = re.search(r"^([ \t]*)http[ \t]*\{[^\n]*\n", text, re.M)
    if http is None:
        raise ValueError("the config has no http { } block")
    indent = http.group(1) + "    "
    return text[:http.end()] + _temp_path_lines(directory, indent) + text[http.end():]


def _replace_upstream_servers(text: str, upstreams: Sequence[str]) -> str:
    """Every ``server`` line of every ``upstream`` block replaced by ``upstreams``, keeping
    the parameters (max_fails=..., fail_timeout=...) of the block's first server line."""
    out: list[str] = []
    depth = 0
    upstream_depth: int | None = None
    replaced_in_block = False
    blocks = 0
    server = re.compile(r"^([ \t]*)server[ \t]+(\S+)([^;#\n]*);")
    for line in text.splitlines(keepends=True):
        code = line.split("#", 1)[0]
        if upstream_depth is None and re.match(r"^[ \t]*upstream[ \t]+\S+[ \t]*\{", code):
            upstream_depth = depth + 1
            replaced_in_block = False
            blocks += 1
        elif upstream_depth is not None and depth == upstream_depth:
            found = server.match(code)
            if found:
                if not replaced_in_block:
                    indent, params = found.group(1), found.group(3).rstrip()
                    out.extend(f"{indent}server {address}{params};\n" for address in upstreams)
                    replaced_in_block = True
                continue
        depth += code.count("{") - code.count("}")
        if upstream_depth is not None and depth < upstream_depth:
            if not replaced_in_block:
                raise ValueError("an upstream block without server lines")
            upstream_depth = None
        out.append(line)
    if blocks == 0:
        raise ValueError("the config has no upstream block")
    return "".join(out)


def _replace_listen(text: str, port: int) -> str:
    found = list(_directive("listen").finditer(text))
    if not found:
        raise ValueError("the config has no listen directive")
    first = found[0]
    # Later listens (say 443 ssl) would need certificates and privileged ports: dropped.
    for match in reversed(found[1:]):
        text = text[:match.start()] + text[match.end():]
    return f"{text[:first.start()]}{first.group('indent')}listen 127.0.0.1:{port};{text[first.end():]}"


def _replace_logs(text: str, directory: Path) -> str:
    def access(match: re.Match[str]) -> str:
        args = (match.group("args") or "").split()
        if args == ["off"]:
            return match.group(0)
        fmt = " ".join(args[1:])
        return f"{match.group('indent')}access_log {directory / 'access.log'}{' ' + fmt if fmt else ''};"

    text = _directive("access_log").sub(access, text)
    return _directive("error_log").sub(
        lambda m: f"{m.group('indent')}error_log {directory / 'error.log'} info;", text)


@dataclass(frozen=True)
class LoopbackConf:
    """A rendered config: ``directory / "nginx.conf"``, listening on 127.0.0.1:``port``."""

    directory: Path
    conf: Path
    port: int
    upstreams: tuple[str, ...]


def render_loopback_conf(directory: Path, upstreams: Sequence[str], listen_port: int, *,
                         source: Path = DEPLOY_CONF, worker_processes: int = 1) -> LoopbackConf:
    """Write ``directory/nginx.conf``: ``source`` (deploy/nginx.conf) for loopback.

    ``upstreams`` ("127.0.0.1:PORT" each) replace the upstream servers, nginx listens on
    127.0.0.1:``listen_port`` only, runs ``worker_processes`` workers, and writes its pid,
    error and access logs and temp files under ``directory``. ``user`` is dropped, or set
    to the current user when running as root (so workers can use the temp dirs under a
    root-only pytest folder). ``daemon`` is not set: :func:`run_nginx` passes ``daemon off``.
    """
    if not upstreams:
        raise ValueError("at least one upstream address is needed")
    for address in upstreams:
        if not _ADDRESS.match(address):
            raise ValueError(f"upstream {address!r} is not HOST:PORT")
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    text = source.read_text(encoding="utf-8")
    for name in ("user", "pid", "daemon", "master_process"):
        text = _drop(text, name)
    text, workers_set = _directive("worker_processes").subn(
        lambda m: f"{m.group('indent')}worker_processes {worker_processes};", text)
    text = _replace_upstream_servers(text, upstreams)
    text = _replace_listen(text, listen_port)
    text = _replace_logs(text, directory)
    text = with_temp_paths(text, directory)
    head = [f"# Rendered from {source} for loopback by tests/deploy/nginx.py.",
            f"pid {directory / 'nginx.pid'};"]
    if not workers_set:
        head.append(f"worker_processes {worker_processes};")
    if os.geteuid() == 0:
        head.append(f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};")
    if not _directive("error_log").search(text):
        head.append(f"error_log {directory / 'error.log'} info;")
    conf = directory / CONF_NAME
    conf.write_text("\n".join(head) + "\n" + text, encoding="utf-8")
    return LoopbackConf(directory=directory, conf=conf, port=listen_port, upstreams=tuple(upstreams))


def listen_port_of(conf: Path) -> int:
    """The port of the first ``listen 127.0.0.1:PORT`` in a rendered config."""
    found = re.search(r"^[ \t]*listen[ \t]+127\.0\.0\.1:(\d+)", conf.read_text(encoding="utf-8"), re.M)
    if found is None:
        raise ValueError(f"{conf} has no 'listen 127.0.0.1:PORT' (render it with render_loopback_conf)")
    return int(found.group(1))


# --- running -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RunningNginx:
    """An nginx started by :func:`run_nginx`."""

    process: subprocess.Popen[bytes]
    directory: Path
    port: int

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def error_log(self) -> Path:
        return self.directory / "error.log"

    @property
    def access_log(self) -> Path:
        return self.directory / "access.log"

    def logs(self) -> str:
        """nginx's own output, error log and access log, for assertion messages."""
        parts = []
        for path in (self.directory / "nginx.output", self.error_log, self.access_log):
            if path.exists():
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')}")
        return "\n".join(parts)


def _children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (nginx's workers), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 1 and fields[1] == str(pid):
            found.append(int(entry.name))
    return found


def _stop(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM (nginx's fast shutdown) to the master; SIGKILL to it and its workers
    when it has not exited within ``timeout``."""
    if process.poll() is not None:
        return
    workers = _children(process.pid)
    process.terminate()
    try:
        process.wait(timeout)
        return
    except subprocess.TimeoutExpired:
        pass
    workers = sorted(set(workers) | set(_children(process.pid)))
    process.kill()
    process.wait(timeout)
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _bind_failed(directory: Path, port: int) -> bool:
    text = ""
    for name in ("nginx.output", "error.log"):
        path = directory / name
        if path.exists():
            text += path.read_text(errors="replace")
    return f":{port} failed" in text and "bind()" in text


def _wait_listening(process: subprocess.Popen[bytes], directory: Path, port: int,
                    timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            output = (directory / "nginx.output").read_text(errors="replace")
            error = NginxPortInUse if _bind_failed(directory, port) else RuntimeError
            raise error(f"nginx exited with status {process.returncode} before listening on "
                        f"port {port}:\n{output}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                pass
        except OSError:
            pass
        else:
            # Something answers; make sure it is this nginx and not a process that took
            # the port first (nginx then retries bind() for a few seconds before exiting).
            if _bind_failed(directory, port):
                raise NginxPortInUse(f"port {port} is taken by another process")
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"nginx did not listen on 127.0.0.1:{port} within {timeout} s")
        time.sleep(0.02)


@contextlib.contextmanager
def run_nginx(conf_dir: Path, *, port: int | None = None, nginx: str | None = None,
              startup_timeout: float = 10.0, stop_timeout: float = 5.0) -> Iterator[RunningNginx]:
    """Run ``nginx -c conf_dir/nginx.conf -p conf_dir -g "daemon off;"`` until the block ends.

    ``conf_dir`` is a folder written by :func:`render_loopback_conf`; ``port`` defaults to
    its listen port. Returns once the port accepts connections; raises RuntimeError
    (:class:`NginxPortInUse` when the port was taken) if nginx exits or does not listen
    within ``startup_timeout``. nginx's stdout/stderr go to ``conf_dir/nginx.output``.
    Skips the calling test when nginx is not installed and ``nginx`` is not given.
    """
    conf_dir = conf_dir.resolve()
    conf = conf_dir / CONF_NAME
    if port is None:
        port = listen_port_of(conf)
    binary = nginx or require_nginx()
    with (conf_dir / "nginx.output").open("wb") as output:
        process = subprocess.Popen(
            [binary, "-c", str(conf), "-p", f"{conf_dir}/", "-g", "daemon off;"],
            stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT)
    try:
        _wait_listening(process, conf_dir, port, startup_timeout)
        yield RunningNginx(process=process, directory=conf_dir, port=port)
    finally:
        _stop(process, stop_timeout)


@contextlib.contextmanager
def nginx_in_front_of(upstreams: Sequence[str], directory: Path, *, attempts: int = 3,
                      source: Path = DEPLOY_CONF, worker_processes: int = 1,
                      startup_timeout: float = 10.0,
                      stop_timeout: float = 5.0) -> Iterator[RunningNginx]:
    """:func:`render_loopback_conf` on a free port, then :func:`run_nginx`; picks another
    port (up to ``attempts`` in all) when another process took it in between."""
    binary = require_nginx()
    with contextlib.ExitStack() as stack:
        for attempt in range(1, attempts + 1):
            rendered = render_loopback_conf(directory, upstreams, free_port(), source=source,
                                            worker_processes=worker_processes)
            try:
                running = stack.enter_context(run_nginx(
                    rendered.directory, port=rendered.port, nginx=binary,
                    startup_timeout=startup_timeout, stop_timeout=stop_timeout))
            except NginxPortInUse:
                if attempt == attempts:
                    raise
                continue
            yield running
            return


# --- nginx -t ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigCheck:
    """What ``nginx -t`` said, and how the upstream names were made to resolve."""

    returncode: int
    output: str
    method: Literal["namespace", "substituted"]
    command: tuple[str, ...]


def _compiled_temp_dirs(binary: str) -> list[Path]:
    """The parent folders of nginx's compiled-in temp paths (Debian: /var/lib/nginx)."""
    info = subprocess.run([binary, "-V"], capture_output=True, text=True, timeout=30,
                          check=False)
    found = re.findall(r"--http-[a-z]+-temp-path=(\S+)", info.stdout + info.stderr)
    return sorted({Path(path).parent for path in found if Path(path).parent.is_dir()})


def _namespace_works(unshare: str, hosts: Path, name: str) -> bool:
    probe = subprocess.run(
        [unshare, "--mount", "--propagation", "private", "--", "sh", "-c",
         'mount --bind "$0" /etc/hosts && exec getent hosts "$1"', str(hosts), name],
        capture_output=True, text=True, timeout=30, check=False)
    return probe.returncode == 0 and name in probe.stdout


def mount_namespace_works(workdir: Path) -> bool:
    """Whether :func:`check_config` can use a private mount namespace here (root, or a
    container allowed to unshare and mount); ``workdir`` receives a probe hosts file."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    workdir.mkdir(parents=True, exist_ok=True)
    hosts = workdir / "hosts.probe"
    hosts.write_text(Path("/etc/hosts").read_text() + "\n127.0.0.1 customer-service-probe\n")
    return _namespace_works(unshare, hosts, "customer-service-probe")


def check_config(conf: Path, workdir: Path, *, resolve: Sequence[str] = ("app1", "app2"),
                 nginx: str | None = None, allow_namespace: bool = True) -> ConfigCheck:
    """``nginx -t`` on ``conf``, with the host names ``resolve`` pointing at 127.0.0.1.

    Preferred (``method == "namespace"``): the file itself is tested, in a private mount
    namespace (``unshare --mount``, needs root) where /etc/hosts is a bind-mounted copy
    that maps the names to 127.0.0.1, and where a folder under ``workdir`` is mounted over
    the parent of nginx's compiled-in temp dirs (nginx -t creates and chowns them). With
    ``-p workdir`` and ``-g "pid ...; error_log ...;"`` nothing is written outside
    ``workdir`` (``pid`` is left out when the config sets its own, as rendered ones do);
    the mounts vanish with the process.

    Fallback (``method == "substituted"``, when unshare/mount are not permitted or
    ``allow_namespace`` is false): a copy of the config in ``workdir`` with the names
    replaced by 127.0.0.1 and the temp dirs moved under ``workdir``.
    """
    binary = nginx or require_nginx()
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    main_args = f"error_log {workdir / 'error.log'};"
    if not _directive("pid").search(conf.read_text(encoding="utf-8")):  # a second one is an error
        main_args = f"pid {workdir / 'nginx.pid'}; {main_args}"
    hosts = workdir / "hosts"
    hosts.write_text(Path("/etc/hosts").read_text() + f"\n127.0.0.1 {' '.join(resolve)}\n")
    unshare = shutil.which("unshare")
    if allow_namespace and unshare and resolve and _namespace_works(unshare, hosts, resolve[0]):
        # sh -c SCRIPT $0 $1 ...: $0 is the hosts copy, then (private folder, folder it
        # hides) pairs, then the nginx command line, run by exec "$@" after the shift.
        script = 'mount --bind "$0" /etc/hosts'
        args = [str(hosts)]
        for number, temp_parent in enumerate(_compiled_temp_dirs(binary)):
            private = workdir / f"temp{number}"
            private.mkdir(exist_ok=True)
            script += f' && mount --bind "${{{len(args)}}}" "${{{len(args) + 1}}}"'
            args += [str(private), str(temp_parent)]
        script += f' && shift {len(args) - 1} && exec "$@"'
        command = [unshare, "--mount", "--propagation", "private", "--", "sh", "-c", script,
                   *args, binary, "-t", "-c", str(conf), "-p", f"{workdir}/", "-g", main_args]
        method: Literal["namespace", "substituted"] = "namespace"
    else:
        text = conf.read_text(encoding="utf-8")
        for name in resolve:
            text = re.sub(rf"(?m)^([ \t]*server[ \t]+){re.escape(name)}(?=[:\s;])", r"\g<1>127.0.0.1",
                          text)
        copy = workdir / "nginx.conf"
        copy.write_text(with_temp_paths(text, workdir), encoding="utf-8")
        command = [binary, "-t", "-c", str(copy), "-p", f"{workdir}/", "-g", main_args]
        method = "substituted"
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    return ConfigCheck(returncode=done.returncode, output=done.stdout + done.stderr,
                       method=method, command=tuple(command))
