"""The pure parts of the AI benchmark (``bench/ai.py``): which system message ends a round
as a failure, the think-time pause, and the server config it writes. No event loop."""

from __future__ import annotations

import random
from pathlib import Path

from bench.ai import UNAVAILABLE, ai_section, fds_needed, parse_args, reply_failed, think_pause
from bench.common import write_server_config
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


def write_config(folder: Path, cache_mb: int | None, sqlite_cache_mb: int | None,
                 **servers: object) -> Path:
    return write_server_config(folder, 8080, sqlite_cache_mb=sqlite_cache_mb,
                               extra=ai_section("http://127.0.0.1:9/v1", 100, 64, cache_mb),
                               **servers)  # type: ignore[arg-type]


def test_config_names_the_unavailable_message_and_the_caches(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, 0, 4), environ={})
    assert config.ai.unavailable_message == UNAVAILABLE
    assert config.ai.max_concurrent_streams == 100
    assert config.ai.context_cache_mb == 0
    assert config.storage.sqlite_cache_mb == 4
    default = load_config(write_config(tmp_path, None, None), environ={})
    assert default.ai.context_cache_mb == 64
    assert default.storage.sqlite_cache_mb == 64


def test_workers_config_is_mariadb_and_the_bus_with_the_ai_section(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, None, None, mysql_database="cs_bench_x",
                                      redis_url="redis://127.0.0.1:1/0", workers=2),
                         environ={})
    assert config.server.workers == 2
    assert config.storage.backend == "mysql"
    assert config.storage.mysql_database == "cs_bench_x"
    assert config.bus.redis_url == "redis://127.0.0.1:1/0"
    assert config.ai.mode == "always"


def test_workers_and_instances_imply_mariadb_and_the_bus() -> None:
    args = parse_args(["--workers", "2"])
    assert (args.mysql, args.bus, args.workers) == (True, True, 2)
    args = parse_args(["--instances", "2"])
    assert (args.mysql, args.bus, args.instances) == (True, True, 2)
    args = parse_args([])
    assert (args.mysql, args.bus) == (False, False)


def test_ten_thousand_conversations_fit_under_the_container_fd_limit() -> None:
    # One stream per conversation needed ~20,300 files in one server process (hard limit
    # 20,000): the streams are capped by default.
    args = parse_args(["--conversations", "10000"])
    assert args.streams == 512 and args.prewarm == 64
    assert fds_needed(args) < 20000
    small = parse_args(["--conversations", "30"])
    assert (small.streams, small.prewarm) == (30, 30)
    assert parse_args(["--streams", "8"]).prewarm == 8
