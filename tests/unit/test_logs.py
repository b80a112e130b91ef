"""Log output: JSON lines for collectors, text for people."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from customer_service.config import LogConfig
from customer_service.logs import JsonFormatter, configure_logging, tag_logs


def test_json_lines_carry_level_logger_message_and_extra_fields() -> None:
    record = logging.makeLogRecord({
        "name": "customer_service.server.sockets", "levelname": "WARNING",
        "levelno": logging.WARNING, "msg": "[%s] frame missed its %ss deadline",
        "args": ("c7", 3.0), "conversation_id": 42})
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "warning"
    assert line["logger"] == "customer_service.server.sockets"
    assert line["message"] == "[c7] frame missed its 3.0s deadline"
    assert line["conversation_id"] == 42
    assert line["ts"].endswith("+00:00")


def test_exceptions_are_kept_in_the_json_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None,
                                   exc_info=sys.exc_info())
    assert "ValueError: boom" in json.loads(JsonFormatter().format(record))["exception"]


def test_configure_logging_sets_format_and_level(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging(LogConfig(level="warning", format="json"))
        logging.getLogger("customer_service.test").info("hidden")
        logging.getLogger("customer_service.test").warning("shown %s", "once")
        lines = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
        assert [entry["message"] for entry in lines] == ["shown once"]
        configure_logging(LogConfig(level="info", format="text"))
        logging.getLogger("customer_service.test").info("plain %d", 1)
        assert "INFO    customer_service.test: plain 1" in capsys.readouterr().err
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])


def test_tag_logs_names_the_instance_in_text_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging(LogConfig(level="info", format="text"))
        tag_logs("host-1-abc", show_in_text=True)
        tag_logs("host-1-abc", show_in_text=True)  # twice: still one tag
        logging.getLogger("customer_service.test").info("hello %s", "there")
        assert "[host-1-abc] customer_service.test: hello there" in capsys.readouterr().err
        configure_logging(LogConfig(level="info", format="json"))
        tag_logs("host-2-def", show_in_text=True)
        logging.getLogger("customer_service.test").info("again")
        line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
        assert line["instance"] == "host-2-def" and line["message"] == "again"
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
