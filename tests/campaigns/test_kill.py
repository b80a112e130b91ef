"""``kill -9`` the ``campaigns run`` process three times during a 5,000-contact campaign,
resuming each time: every contact ends with exactly one message, and the report agrees."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import trio

from customer_service.storage import open_store
from tests.campaigns.helpers import (
    add_contacts,
    check_exactly_once,
    config_at,
    new_campaign,
    write_config,
)
from tests.fakes.openai_server import Script, open_fake_openai

CONTACTS = 5000
CONCURRENCY = 64


def sent(db: Path, campaign_id: int) -> int:
    with sqlite3.connect(db, timeout=10) as connection:
        (count,) = connection.execute(
            "SELECT COUNT(*) FROM campaign_recipients WHERE campaign_id = ? AND state = 'sent'",
            (campaign_id,)).fetchone()
    return int(count)


async def test_kill_nine_three_times_then_resume(tmp_path: Path) -> None:
    rng = random.Random()
    async with open_fake_openai(script=Script(tokens=["Spring", " is", " here"],
                                              first_token_delay=0.02)) as fake:
        config_file = write_config(tmp_path, fake.base_url)
        db = tmp_path / "test.db"
        async with open_store(config_at(config_file)) as store:
            await store.migrate()
            await add_contacts(store, CONTACTS)
            campaign, total = await new_campaign(store, "Hi {name}", concurrency=CONCURRENCY,
                                                 rate=5000)
        assert total == CONTACTS
        command = [sys.executable, "-m", "customer_service", "--config", str(config_file),
                   "campaigns", "run", str(campaign.id), "--quiet"]
        env = {**os.environ, "PYTHONPATH": str(Path.cwd())}
        kills = 0
        log = tmp_path / "run.log"
        while True:
            with log.open("ab") as out:
                process = await trio.lowlevel.open_process(
                    command, stdout=out, stderr=subprocess.STDOUT, env=env)
            if kills == 3:
                with trio.fail_after(60):
                    code = await process.wait()
                assert code == 0, log.read_text()
                break
            before = sent(db, campaign.id)
            target = before + rng.randint(100, 1000)
            with trio.fail_after(30):
                while sent(db, campaign.id) < target:
                    assert process.returncode is None, log.read_text()
                    await trio.sleep(rng.uniform(0.01, 0.1))
            os.kill(process.pid, signal.SIGKILL)
            await process.wait()
            kills += 1
        assert "Campaign 1: finished. 5,000 sent" in log.read_text()
        # the AI is paid again only for the requests in flight at each kill
        assert CONTACTS <= len(fake.requests) <= CONTACTS + kills * CONCURRENCY
    assert check_exactly_once(db, campaign.id) == {"sent": CONTACTS}
