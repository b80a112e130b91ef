"""Group commit: many concurrent appends, one transaction.

Every caller of ``GroupCommitter.append`` puts its message and a result slot on
a bounded channel and waits. One writer task takes the first waiting item,
then whatever else is already queued (up to ``max_batch``) without waiting for
more, and stores the lot with one ``Store.append_messages`` call: one thread
hop, one transaction, one fsync. Under load batches grow by themselves; when
idle a message is committed alone, without added latency. A full channel
blocks callers, which is the back-pressure.

Failures: when the batch fails with ``NotFound`` (one message names an unknown
conversation, and the store then stores nothing of the batch), the writer
retries the batch one message at a time, so only the bad message's caller gets
``NotFound``; order is kept. NotFound is a client error and rare, so the
retry costs nothing in the common case and needs no extra query per batch. Any
other failure fails every caller of the batch with ``StorageError``.

After each committed transaction the writer calls ``on_commit`` (when given)
with the batch's results, synchronously and in commit order, before any of
its callers resumes: fan-out done there follows ``seq`` order and happens
before the sender's ack.

Cancellation: a caller cancelled while its item is still queued marks it
abandoned and the writer skips it, so it is not stored. Once a batch is in the
store's thread it completes; a caller cancelled then loses only the answer (its
client resends with the same id and gets the original ``seq``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

from customer_service.core.models import AppendResult, NewMessage
from customer_service.errors import CustomerServiceError, NotFound, StorageError
from customer_service.storage.base import Store

logger = logging.getLogger(__name__)

OnCommit = Callable[[Sequence[AppendResult]], None]

DRAIN_TIMEOUT = 10.0
"""Seconds the committer may spend at exit storing what is still queued."""


@dataclass(eq=False, slots=True)
class _Pending:
    message: NewMessage
    done: trio.Event = field(default_factory=trio.Event)
    abandoned: bool = False
    result: AppendResult | None = None
    error: CustomerServiceError | None = None

    def resolve(self, result: AppendResult) -> None:
        self.result = result
        self.done.set()

    def fail(self, error: CustomerServiceError) -> None:
        self.error = error
        self.done.set()


class GroupCommitter:
    """Build it with ``open_group_committer``."""

    def __init__(self, store: Store, max_batch: int, send: trio.MemorySendChannel[_Pending],
                 on_commit: OnCommit | None = None) -> None:
        self._store = store
        self._on_commit = on_commit
        self._max_batch = max(1, max_batch)
        self._send = send
        self._closed = False
        self.batches_committed = 0
        """Transactions committed (metrics)."""
        self.messages_committed = 0
        """Messages stored, not counting duplicates of earlier ones (metrics)."""

    @property
    def closed(self) -> bool:
        return self._closed

    async def append(self, message: NewMessage) -> AppendResult:
        """Store one message as part of the next batch; return once it is committed."""
        if self._closed:
            raise StorageError("the message committer is shut down")
        pending = _Pending(message)
        try:
            try:
                self._send.send_nowait(pending)  # the wait below is the checkpoint
            except trio.WouldBlock:
                await self._send.send(pending)
        except (trio.ClosedResourceError, trio.BrokenResourceError) as exc:
            raise StorageError("the message committer is shut down") from exc
        try:
            await pending.done.wait()
        finally:
            if not pending.done.is_set():
                pending.abandoned = True
                # Its sender gave up waiting (its deadline passed): the database is not
                # taking writes in time, whatever the batch's fate (/healthz).
                self._store.write_health.failed(time.monotonic())
        if pending.error is not None:
            raise pending.error
        if pending.result is None:
            raise StorageError("the message committer gave no result")
        return pending.result

    async def _write_all(self, receive: trio.MemoryReceiveChannel[_Pending]) -> None:
        """The writer: runs until the send side is closed and the queue is empty."""
        batch: list[_Pending] = []
        try:
            async for first in receive:
                batch = [] if first.abandoned else [first]
                while len(batch) < self._max_batch:
                    try:
                        pending = receive.receive_nowait()
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                    if not pending.abandoned:
                        batch.append(pending)
                if batch:
                    await self._commit(batch)
                batch = []
        finally:
            for pending in batch:
                if not pending.done.is_set():
                    pending.fail(StorageError("the message committer stopped; message not stored"))
            self._fail_queued(receive)

    async def _commit(self, batch: list[_Pending]) -> None:
        try:
            results = await self._store.append_messages([p.message for p in batch])
        except NotFound as exc:
            if len(batch) == 1:
                batch[0].fail(NotFound(exc.message))
            else:
                await self._commit_one_by_one(batch)
        except CustomerServiceError as exc:
            logger.warning("group commit of %d messages failed: %s", len(batch), exc)
            for pending in batch:
                pending.fail(StorageError(f"storing the message failed: {exc.message}"))
        except Exception:
            logger.exception("group commit of %d messages failed", len(batch))
            for pending in batch:
                pending.fail(StorageError("storing the message failed"))
        else:
            self._record(batch, results)

    async def _commit_one_by_one(self, batch: list[_Pending]) -> None:
        for pending in batch:
            try:
                results = await self._store.append_messages([pending.message])
            except NotFound as exc:
                pending.fail(NotFound(exc.message))
            except CustomerServiceError as exc:
                logger.warning("storing a message failed: %s", exc)
                pending.fail(StorageError(f"storing the message failed: {exc.message}"))
            except Exception:
                logger.exception("storing a message failed")
                pending.fail(StorageError("storing the message failed"))
            else:
                self._record([pending], results)

    def _record(self, batch: list[_Pending], results: list[AppendResult]) -> None:
        self.batches_committed += 1
        if len(results) != len(batch):
            logger.error("the store returned %d results for %d messages", len(results), len(batch))
            for pending in batch:
                pending.fail(StorageError("the store returned a wrong number of results"))
            return
        if self._on_commit is not None:
            try:
                self._on_commit(results)
            except Exception:
                logger.exception("on_commit failed for a batch of %d messages", len(results))
        for pending, result in zip(batch, results, strict=True):
            if not result.duplicate:
                self.messages_committed += 1
            pending.resolve(result)

    @staticmethod
    def _fail_queued(receive: trio.MemoryReceiveChannel[_Pending]) -> None:
        """Answer whatever the writer will never get to (it was cancelled, or crashed)."""
        while True:
            try:
                pending = receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
            pending.fail(StorageError("the message committer is shut down"))
        receive.close()


@asynccontextmanager
async def open_group_committer(
        store: Store, max_batch: int, *, on_commit: OnCommit | None = None,
        drain_timeout: float = DRAIN_TIMEOUT) -> AsyncIterator[GroupCommitter]:
    """Run the writer for the duration of the block.

    At exit the committer stops accepting, then stores everything already
    queued before returning, so a graceful shutdown loses no acked message,
    even when the exit is caused by a cancellation. The drain is shielded but
    bounded by ``drain_timeout``; callers still queued after that get
    ``StorageError``.
    """
    send, receive = trio.open_memory_channel[_Pending](4 * max(1, max_batch))
    committer = GroupCommitter(store, max_batch, send, on_commit)
    writer_scope = trio.CancelScope(shield=True)
    writer_done = trio.Event()

    async def writer() -> None:
        try:
            with writer_scope:
                await committer._write_all(receive)
        finally:
            writer_done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        try:
            yield committer
        finally:
            committer._closed = True
            send.close()
            with trio.move_on_after(drain_timeout, shield=True):
                await writer_done.wait()
            if not writer_done.is_set():
                logger.warning("the message committer did not drain within %g s", drain_timeout)
            writer_scope.cancel()
