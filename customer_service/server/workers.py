"""``[server] workers = N``: N server processes on one port, each a full instance on the bus.

The supervisor (the process the command started) forks the workers before any event
loop or thread exists; each binds the port with SO_REUSEPORT, so the kernel spreads
new connections over them, and each joins the bus as its own instance: a visitor on
one worker and an agent on another chat as they would across machines.

The supervisor forwards SIGINT/SIGTERM to every worker and waits for them to shut
down gracefully. A worker that dies is started again (after a short pause), unless
workers keep dying right after starting (the database or the port is unusable): then
the supervisor stops the rest and exits with an error.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from types import FrameType

from customer_service.config import Config
from customer_service.errors import CustomerServiceError, the_error

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
EARLY_EXIT = 5.0
"""A worker that exits within this many seconds of starting failed to start."""
EARLY_EXITS_ALLOWED = 3
RESTART_DELAY = 1.0
STOP_GRACE = 5.0
"""Seconds beyond ``shutdown_timeout`` the supervisor waits before killing workers."""


def _reserve_port(host: str) -> socket.socket:
    """Bind (without listening) a SO_REUSEPORT socket on a free port, so every worker can
    bind the same port; it receives no connections (only listening sockets do)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host or "0.0.0.0", 0))
    return sock


def _die_with(supervisor: int) -> None:
    """Have the kernel send SIGTERM to this worker when the supervisor dies (Linux), so a
    killed supervisor leaves no workers holding the port; elsewhere, nothing."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != supervisor:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _worker_main(config: Config, number: int, banner: Callable[[str], None] | None,
                 supervisor: int) -> None:
    from customer_service.server.run import run_worker  # noqa: PLC0415

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # Blocked by the supervisor around the fork, so that a signal arriving meanwhile did
    # not run the supervisor's handler in this process; pending ones now take effect.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    _die_with(supervisor)
    try:
        run_worker(config, number, banner)
    except (CustomerServiceError, BaseExceptionGroup) as exc:
        import trio  # noqa: PLC0415

        error = the_error(exc, besides=(trio.Cancelled,))
        if error is None:
            raise
        log.error("worker %d could not run: %s", number, error.message)
        sys.exit(1)


class Supervisor:
    def __init__(self, config: Config, count: int, banner: Callable[[str], None] | None
                 ) -> None:
        self.config = config
        self.count = count
        self.banner = banner
        self.context = multiprocessing.get_context("fork")
        self.workers: dict[int, tuple[BaseProcess, float]] = {}
        self.stopping = False
        self.early_exits = 0
        self.failed = False

    def start(self, number: int) -> None:
        process = self.context.Process(
            target=_worker_main, name=f"customer-service worker {number}",
            args=(self.config, number, self.banner if number == 1 else None, os.getpid()))
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        self.workers[number] = (process, time.monotonic())
        log.info("worker %d started (pid %s)", number, process.pid)

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.stopping:
            log.warning("second %s: killing the workers", signal.Signals(signum).name)
            for process, _ in self.workers.values():
                process.kill()
            return
        log.info("%s received: stopping %d workers", signal.Signals(signum).name,
                 len(self.workers))
        self.stop(signum)

    def stop(self, signum: int = signal.SIGTERM) -> None:
        self.stopping = True
        for process, _ in self.workers.values():
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signum)

    def run(self) -> int:
        for number in range(1, self.count + 1):
            self.start(number)
        stop_deadline: float | None = None
        while self.workers:
            sentinels = {process.sentinel: number
                         for number, (process, _) in self.workers.items()}
            for sentinel in multiprocessing.connection.wait(list(sentinels), timeout=0.5):
                if isinstance(sentinel, int):
                    self._reap(sentinels[sentinel])
            if self.stopping and stop_deadline is None:
                stop_deadline = (time.monotonic() + self.config.server.shutdown_timeout
                                 + STOP_GRACE)
            if stop_deadline is not None and time.monotonic() > stop_deadline:
                for process, _ in self.workers.values():
                    log.warning("worker %s did not stop in time; killing it", process.name)
                    process.kill()
                stop_deadline = time.monotonic() + STOP_GRACE
        return 1 if self.failed else 0

    def _reap(self, number: int) -> None:
        process, started = self.workers.pop(number)
        process.join()
        if self.stopping:
            log.info("worker %d stopped (exit code %s)", number, process.exitcode)
            return
        early = time.monotonic() - started < EARLY_EXIT
        self.early_exits = self.early_exits + 1 if early else 0
        log.error("worker %d (pid %s) exited with code %s", number, process.pid,
                  process.exitcode)
        if self.early_exits >= EARLY_EXITS_ALLOWED:
            log.error("workers keep exiting right after they start; stopping")
            self.failed = True
            self.stop()
            return
        time.sleep(RESTART_DELAY)
        if not self.stopping:  # a SIGTERM may have come during the pause
            self.start(number)


def run_workers(config: Config, count: int, banner: Callable[[str], None] | None) -> None:
    """Run ``count`` worker processes until SIGINT/SIGTERM; raise when they could not run."""
    reserved = None
    if config.server.port == 0:
        reserved = _reserve_port(config.server.host)
        config = config.with_changes(server__port=reserved.getsockname()[1])
    supervisor = Supervisor(config, count, banner)
    previous = {signum: signal.signal(signum, supervisor.on_signal)
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        log.info("starting %d worker processes on port %d", count, config.server.port)
        failed = supervisor.run()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if reserved is not None:
            reserved.close()
    if failed:
        raise CustomerServiceError(
            "the worker processes could not run; their errors are in the log above")
