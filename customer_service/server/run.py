"""Start, serve and stop: the store, the bus, the committer, the hub and the transport.

``open_server`` gives a ready ``Server`` (store migrated, bus connected when
``[bus] redis_url`` is set, committer and sync task running); ``Server.serve`` runs the
transport (the native one, or hypercorn with ``[server] transport = "hypercorn"``)
until ``Server.shutdown`` is called, then closes every socket with 1001 and lets the
committer finish before returning. ``run_server`` is the blocking entry point the CLI
uses; it turns SIGINT/SIGTERM into a graceful shutdown, and with ``[server] workers``
above 1 runs that many worker processes instead (``server.workers``).
"""

from __future__ import annotations

import gc
import logging
import os
import secrets
import signal
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, cast

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from customer_service.ai.responder import open_ai_responder
from customer_service.config import Config, worker_count
from customer_service.core.login_failures import LoginLimits
from customer_service.core.models import AppendResult
from customer_service.errors import ListenError
from customer_service.logs import tag_logs
from customer_service.server.app import App
from customer_service.server.assigner import Assigner
from customer_service.server.campaign_scheduler import serve_campaign_scheduler
from customer_service.server.hub import Hub
from customer_service.server.limits import (
    LocalLoginThrottle,
    LoginThrottle,
    SharedLoginThrottle,
)
from customer_service.server.metrics import Metrics
from customer_service.server.outside_writes import serve_outside_writes
from customer_service.server.service import ChatService
from customer_service.server.sync import serve_sync
from customer_service.server.webhook_sender import WebhookSender
from customer_service.storage import Store, open_store
from customer_service.storage.committer import open_group_committer
from customer_service.transport.interface import ListenOptions
from customer_service.transport.native import serve_native

if TYPE_CHECKING:
    from customer_service.bus.redis import RedisBus

log = logging.getLogger(__name__)

StoreWrapper = Callable[[Store], Store]
GC_GEN0_THRESHOLD = 50_000


def new_instance_id(worker: int | None = None) -> str:
    """This process's name on the bus and in /healthz: host, pid, a random tag (a restarted
    process is a new instance), and the worker number when there are several."""
    host = socket.gethostname().split(".")[0][:40] or "host"
    suffix = f"-w{worker}" if worker is not None else ""
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}{suffix}"


class Server:
    def __init__(self, config: Config, service: ChatService, app: App, instance: str, *,
                 reuse_port: bool = False) -> None:
        self.config = config
        self.service = service
        self.app = app
        self.hub = service.hub
        self.instance = instance
        self.reuse_port = reuse_port
        self.urls: list[str] = []
        self._shutdown = trio.Event()

    @property
    def port(self) -> int:
        return int(self.urls[0].rsplit(":", 1)[1]) if self.urls else self.config.server.port

    @property
    def shutting_down(self) -> bool:
        return self._shutdown.is_set()

    def shutdown(self) -> None:
        """Begin a graceful shutdown (idempotent, callable from any task)."""
        self._shutdown.set()

    def _hypercorn_config(self) -> HypercornConfig:
        cfg = HypercornConfig()
        server = self.config.server
        host = f"[{server.host}]" if ":" in server.host else server.host
        cfg.bind = [f"{host}:{server.port}"]
        cfg.websocket_max_message_size = server.max_frame_bytes
        cfg.graceful_timeout = server.shutdown_timeout
        cfg.accesslog = None
        cfg.errorlog = logging.getLogger("hypercorn.error")
        cfg.backlog = 4096
        cfg.keep_alive_timeout = 30
        if self.reuse_port:
            cfg.workers = 2  # only makes hypercorn bind with SO_REUSEPORT; it forks nothing
        return cfg

    async def serve(self, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        """Serve until ``shutdown()``; report the bound URLs through ``task_status``.

        Returns once every connection has closed (or ``shutdown_timeout`` has passed).
        """

        async def stop_accepting() -> None:
            await self._shutdown.wait()
            log.info("shutting down: refusing new connections, closing sockets with 1001")
            self.hub.close_all(1001, "server going away; reconnect")

        async with trio.open_nursery() as nursery:
            server = self.config.server
            try:
                if server.transport == "native":
                    options = ListenOptions(server.host, server.port, server.max_frame_bytes,
                                            server.shutdown_timeout, reuse_port=self.reuse_port)
                    self.urls = await nursery.start(partial(
                        serve_native, self.app, options, shutdown_trigger=stop_accepting))
                else:
                    self.urls = await nursery.start(partial(
                        hypercorn_serve, cast(Any, self.app), self._hypercorn_config(),
                        shutdown_trigger=stop_accepting))
            except OSError as exc:
                raise ListenError(
                    f"cannot listen on {server.host}:{server.port}: {exc.strerror or exc} "
                    "(change [server] host or port, or stop what uses it)") from None
            log.info("serving on %s", ", ".join(self.urls))
            task_status.started(self.urls)


@asynccontextmanager
async def open_bus(config: Config, instance: str, deployment: str, metrics: Metrics, hub: Hub
                   ) -> AsyncIterator[RedisBus | None]:
    """The Redis bus when ``[bus] redis_url`` is set (None: one instance, no bus)."""
    if not config.bus.redis_url:
        yield None
        return
    from customer_service.bus.redis import open_redis_bus  # noqa: PLC0415 - coredis is heavy

    if config.storage.backend == "sqlite":
        log.warning("[bus] redis_url is set but [storage] backend is sqlite: instances on the "
                    "bus must share one database; use backend = \"mysql\" for several")
    async with open_redis_bus(config.bus, instance, deployment, metrics,
                              hub.local_presence) as bus:
        bus.receiver = hub.receive
        hub.bus = bus
        try:
            yield bus
        finally:
            hub.bus = None


@asynccontextmanager
async def open_server(config: Config, *, wrap_store: StoreWrapper | None = None,
                      worker: int | None = None, reuse_port: bool = False
                      ) -> AsyncIterator[Server]:
    """Open the store (migrated), the bus and the committer; yield a Server ready to
    ``serve``."""
    instance = new_instance_id(worker)
    if config.bus.redis_url or worker is not None:
        tag_logs(instance, show_in_text=True)
    async with open_store(config) as raw_store:
        applied = await raw_store.migrate()
        if applied:
            log.info("database migrated to version %s", applied[-1])
        store = wrap_store(raw_store) if wrap_store else raw_store
        metrics = Metrics()
        hub = Hub()
        deployment = await raw_store.deployment_token()
        async with open_bus(config, instance, deployment, metrics, hub) as bus:
            service = ChatService(config, store, hub, metrics)
            limits = LoginLimits(per_user=config.auth.login_failures_per_user,
                                 per_address=config.auth.login_failures_per_address,
                                 window=config.auth.login_failure_window)
            logins: LoginThrottle = (LocalLoginThrottle(limits) if bus is None
                                     else SharedLoginThrottle(bus, limits))

            def bus_status() -> str:
                return bus.status if bus is not None else "off"

            app = App(service, ai_status=service.ai_status, bus_status=bus_status,
                      logins=logins, instance=instance)
            # A campaign run here is leased as host:pid:instance: a restarted server (or
            # `campaigns run`) on this host sees the pid is gone and takes over at once.
            campaign_owner = f"{socket.gethostname()}:{os.getpid()}:{instance}"
            webhooks = (WebhookSender(store, config.webhooks, campaign_owner)
                        if config.webhooks.sender else None)  # docs/webhooks.md

            def on_commit(results: Sequence[AppendResult]) -> None:
                service.on_committed(results)
                if webhooks is not None:
                    webhooks.nudge()

            async with open_group_committer(store, config.storage.group_commit_max,
                                            on_commit=on_commit,
                                            drain_timeout=config.server.shutdown_timeout
                                            ) as committer, trio.open_nursery() as background:
                service.committer = committer
                await background.start(partial(serve_sync, hub, service, config,
                                               presence_reader=bus))
                await background.start(service.blocks.serve)
                service.assigner = Assigner(service)
                await background.start(service.assigner.serve)
                await background.start(service.availability.serve)
                await background.start(service.context.serve)
                await background.start(serve_outside_writes, hub, store, campaign_owner)
                if config.campaigns.scheduler:
                    await background.start(serve_campaign_scheduler, service, config,
                                           campaign_owner)
                if webhooks is not None:
                    await background.start(webhooks.serve)
                async with open_ai_responder(config, service) as responder:
                    service.ai = responder
                    yield Server(config, service, app, instance, reuse_port=reuse_port)
                service.ai = None
                background.cancel_scope.cancel()
        log.info("database closed")


async def _watch_signals(server: Server, force: trio.CancelScope) -> None:
    """First SIGINT/SIGTERM: graceful shutdown. A second one: stop at once."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if server.shutting_down:
                log.warning("second %s: stopping now", signal.Signals(signum).name)
                force.cancel()
                return
            log.info("%s received: graceful shutdown", signal.Signals(signum).name)
            server.shutdown()


def tune_garbage_collector() -> None:
    """Move start-up objects out of the collector's sight and collect young objects less
    often: a server allocating per frame otherwise spends much of its time in the cyclic
    collector (measured on the performance issue's relay: +35% at 200 connections, +75%
    at 2,000). Reference counting still frees almost everything at once."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 20, 20)


async def main(config: Config, banner: Callable[[str], None] | None = None, *,
               worker: int | None = None, reuse_port: bool = False) -> None:
    async with open_server(config, worker=worker, reuse_port=reuse_port) as server, \
            trio.open_nursery() as outer:
        outer.start_soon(_watch_signals, server, outer.cancel_scope)
        async with trio.open_nursery() as inner:
            urls = await inner.start(server.serve)
            tune_garbage_collector()
            if banner is not None:
                banner(urls[0])
        outer.cancel_scope.cancel()


def run_server(config: Config, banner: Callable[[str], None] | None = None) -> None:
    """Run the server until SIGINT/SIGTERM; return after a clean shutdown. With ``[server]
    workers`` above 1, run that many worker processes on the port (``server.workers``)."""
    count = worker_count(config.server)
    if count > 1:
        from customer_service.server.workers import run_workers  # noqa: PLC0415

        run_workers(config, count, banner)
        return
    trio.run(partial(main, config, banner))


def run_worker(config: Config, worker: int, banner: Callable[[str], None] | None) -> None:
    """One worker process's server (SO_REUSEPORT on the shared port)."""
    trio.run(partial(main, config, banner, worker=worker, reuse_port=True))

