"""``kill -9`` the ``campaigns run`` process three times during a 5,000-contact campaign,
resuming each time: every contact ends with exactly one message, and the report agrees."""

from __future__ import annotations

import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import trio

from customer_service.core.models import CampaignKind
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


async def test_ctrl_c_stops_the_run_with_one_line_and_run_continues(tmp_path: Path) -> None:
    """Found by review: Ctrl-C during ``campaigns run`` printed an exception-group traceback
    (the KeyboardInterrupt comes out of the runner's nurseries) and exited 1."""
    config_file = write_config(tmp_path, ai=False)
    db = tmp_path / "test.db"
    async with open_store(config_at(config_file)) as store:
        await store.migrate()
        await add_contacts(store, 60)
        campaign, _ = await new_campaign(store, "Hi {name}", kind=CampaignKind.TEMPLATE,
                                         rate=20)
    base = [sys.executable, "-m", "customer_service", "--config", str(config_file), "campaigns"]
    env = {**os.environ, "PYTHONPATH": str(Path.cwd())}
    process = await trio.lowlevel.open_process(
        [*base, "run", str(campaign.id), "--quiet"], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, env=env)
    with trio.fail_after(30):
        while sent(db, campaign.id) < 5:
            await trio.sleep(0.05)
        process.send_signal(signal.SIGINT)
        assert process.stdout is not None
        output = b""
        while chunk := await process.stdout.receive_some():
            output += chunk
        code = await process.wait()
    text = output.decode()
    assert code == 130, text
    assert "Traceback" not in text
    assert f"Interrupted. 'campaigns run {campaign.id}' continues where it stopped." in text
    assert 5 <= sent(db, campaign.id) < 60

    def cli(*args: str) -> str:
        return subprocess.run([*base, *args], capture_output=True, text=True, env=env,
                              check=True, timeout=30).stdout

    cli("pause", str(campaign.id))
    # started without --at: no server takes it, so 'resume' must not say one does
    resumed = " ".join(cli("resume", str(campaign.id)).split())
    assert resumed == (f"Resumed campaign {campaign.id}: its runner continues; with none left,"
                       f" run 'campaigns run {campaign.id}'.")
    with trio.fail_after(30):
        done = await trio.run_process([*base, "run", str(campaign.id), "--quiet"],
                                      capture_stdout=True, env=env)
    assert "finished. 60 sent" in done.stdout.decode()
    assert check_exactly_once(db, campaign.id) == {"sent": 60}


async def test_a_bus_that_is_down_stops_no_run_and_loses_no_message(tmp_path: Path) -> None:
    """``[bus] redis_url`` set, Redis not there: ``campaigns run`` still sends everything
    (committed; the servers' look in the database delivers it) and says the bus failed."""
    with socket.socket() as probe:  # a free port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config_file = write_config(tmp_path, ai=False)
    config_file.write_text(config_file.read_text()
                           + f'\n[bus]\nredis_url = "redis://127.0.0.1:{port}/0"\n'
                             'command_timeout = 0.3\n')
    async with open_store(config_at(config_file)) as store:
        await store.migrate()
        await add_contacts(store, 20)
        campaign, _ = await new_campaign(store, "Hi {name}", kind=CampaignKind.TEMPLATE,
                                         rate=200)
    env = {**os.environ, "PYTHONPATH": str(Path.cwd())}
    done = await trio.run_process(
        [sys.executable, "-m", "customer_service", "--config", str(config_file), "campaigns",
         "run", str(campaign.id), "--quiet"], capture_stdout=True, capture_stderr=True,
        env=env, check=False)
    output = (done.stdout + done.stderr).decode()
    assert done.returncode == 0, output
    assert "Campaign 1: finished. 20 sent" in output
    assert "the servers find them in the database" in output  # the bus failure, said once
    assert "Traceback" not in output
    assert check_exactly_once(tmp_path / "test.db", campaign.id) == {"sent": 20}
