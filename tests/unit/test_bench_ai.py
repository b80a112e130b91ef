"""The pure parts of the AI benchmark (``bench/ai.py``): which system message ends a round
as a failure, the think-time pause, and the server config it writes. No event loop."""

from __future__ import annotations

import random
from pathlib import Path

from bench.ai import UNAVAILABLE, reply_failed, think_pause, write_config
from customer_service.config import AutoRepliesConfig, load_config


def message(role: str, content: str) -> dict[str, object]:
    return {"type": "message", "seq": 1, "sender": {"role": role, "name": ""}, "content": content}


def test_only_the_unavailable_message_says_the_reply_failed() -> None:
    assert reply_failed(message("system", UNAVAILABLE))
    # The greeting a new conversation gets is a system message too: before, it ended each
    # visitor's first round, and every later text became a follow-up to the reply before.
    assert not reply_failed(message("system", AutoRepliesConfig().welcome["en"]))
    assert not reply_failed(message("ai", UNAVAILABLE))
    assert not reply_failed(message("visitor", "benchmark question 1"))


def test_think_pause_averages_think_within_half_and_one_and_a_half() -> None:
    rng = random.Random(7)
    pauses = [think_pause(2.0, rng) for _ in range(2000)]
    assert all(1.0 <= p < 3.0 for p in pauses)
    assert abs(sum(pauses) / len(pauses) - 2.0) < 0.1
    assert think_pause(0.0, rng) == 0.0


def test_config_names_the_unavailable_message_and_the_caches(tmp_path: Path) -> None:
    path = write_config(tmp_path, 8080, "http://127.0.0.1:9/v1", 100, 64, 512, 0, 4)
    config = load_config(path, environ={})
    assert config.ai.unavailable_message == UNAVAILABLE
    assert config.ai.context_cache_mb == 0
    assert config.storage.sqlite_cache_mb == 4
    default = load_config(write_config(tmp_path, 8080, "http://127.0.0.1:9/v1", 100, 64, 512,
                                       None, None), environ={})
    assert default.ai.context_cache_mb == 64
    assert default.storage.sqlite_cache_mb == 64
