"""Logging set-up: readable text for people, one JSON object per line for collectors."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from customer_service.config import LogConfig

_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record; ``extra=`` fields become keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(config: LogConfig) -> None:
    """Send logs to stderr in the configured format and level (replaces earlier handlers)."""
    handler = logging.StreamHandler(sys.stderr)
    if config.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.level.upper())
    for noisy in ("hypercorn.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # coredis logs every failed connection attempt with a long traceback (and "Connection
    # closed unexpectedly!" at INFO); the bus logs one line per outage of its own instead.
    logging.getLogger("coredis").setLevel(logging.CRITICAL)


class _InstanceTag(logging.Filter):
    def __init__(self, instance: str) -> None:
        super().__init__()
        self.instance = instance

    def filter(self, record: logging.LogRecord) -> bool:
        record.instance = self.instance
        return True


def tag_logs(instance: str, *, show_in_text: bool) -> None:
    """Name this process's instance in every record: a key of JSON logs, and with
    ``show_in_text`` (several instances or workers writing to one place) a ``[instance]``
    in text logs."""
    for handler in logging.getLogger().handlers:
        for old in [f for f in handler.filters if isinstance(f, _InstanceTag)]:
            handler.removeFilter(old)
        handler.addFilter(_InstanceTag(instance))
        if show_in_text and not isinstance(handler.formatter, JsonFormatter):
            handler.setFormatter(logging.Formatter(
                "%(asctime)s %(levelname)-7s [%(instance)s] %(name)s: %(message)s"))
