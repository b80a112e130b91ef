"""``campaigns`` commands in-process (CliRunner): bad input gets one clear line; the
template campaign's whole life, from create to report."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner, Result

from customer_service.cli import cli
from customer_service.cli.campaigns import Pace, pace_of
from customer_service.core.models import CampaignStatus
from customer_service.storage import open_store
from tests.campaigns.helpers import add_contacts, check_exactly_once, config_at, write_config


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    path = write_config(tmp_path)

    async def fill() -> None:
        async with open_store(config_at(path)) as store:
            await store.migrate()
            await add_contacts(store, 30)
            await store.set_contact_unsubscribed("u000003", True)

    trio.run(fill)
    return path


def run(config_file: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config_file), "campaigns", *args],
                              catch_exceptions=False)


@pytest.mark.parametrize(("args", "message"), [
    (["--tag", "nope", "--template", "Hi {name}"], "no contacts match tag nope; nothing created"),
    (["--tag", "spring", "--attr", "plan=gold", "--template", "Hi"],
     "no contacts match tag spring and plan=gold"),
    (["--tag", "spring", "--prompt", "Tell {name} about {city}"],
     "the prompt names {city}, which no contact of the audience has"),
    (["--tag", "spring", "--template", "Hi {name"], "unbalanced '{' at character 4"),
    (["--tag", "spring", "--template", "Hi", "--at", "2020-01-01T03:00+00:00"],
     "is in the past"),
    (["--tag", "spring", "--template", "Hi", "--at", "2999-01-01T03:00"], "has no time zone"),
    (["--tag", "spring", "--template", "Hi", "--rate", "0"], "0.0 is not in the range 0<x<=10000"),
    (["--tag", "spring", "--template", "Hi", "--concurrency", "0"], "not in the range"),
    (["--tag", "spring", "--template", "Hi", "--sender", "agent:ghost"], "no agent 'ghost'"),
    (["--tag", "spring"], "give exactly one of --template, --prompt"),
    (["--tag", "spring", "--template", "a", "--prompt", "b"], "give exactly one of"),
    (["--tag", "spring", "--template", "Hi", "--attr", "plan"], "expected key=value"),
    # found by review: each of these was a traceback or a database error naming no option
    (["--tag", "spring", "--template", "Hi", "--rate", "nan"],
     "Invalid value for '--rate': nan is not a number of requests per second"),
    (["--tag", "spring", "--template", "Hi", "--at", "9999-12-31T23:59-05:00"],
     "Invalid value for '--at': '9999-12-31T23:59-05:00' is out of range"),
    (["--tag", "spring", "--template", "Hi", "--at", "2999-03-31T02:30", "--tz",
      "Europe/Paris"], "does not exist in Europe/Paris (the clocks skip that hour)"),
    (["--tag", "spring", "--template", "Hi", "--max-tokens-total", "9" * 25],
     "Invalid value for '--max-tokens-total'"),
    (["--tag", "spring", "--prompt", "Hi {name}", "--max-tokens-total", "10"],
     "10 tokens cannot pay for one reply ([ai] max_reply_tokens is 64)"),
    (["--tag", "spring", "--template", "Hi " * 2000],
     "Invalid value for '--template': 6,000 characters: a message is at most 4,000"),
])
def test_bad_input_is_one_clear_line_and_creates_nothing(config_file: Path, args: list[str],
                                                         message: str) -> None:
    result = run(config_file, "create", "bad", *args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert run(config_file, "list").output.strip() == "No campaigns."


def test_bad_files_and_names_are_one_clear_line(config_file: Path, tmp_path: Path) -> None:
    """Found by review: a binary --audience-file or --template-file was a
    UnicodeDecodeError traceback; a 300-character name a MySQL 'Data too long'."""
    (tmp_path / "bin.dat").write_bytes(b"u000001\n\xe6\x00\xff\n")
    cases = [
        (["bad", "--audience-file", "bin.dat", "--template", "Hi"],
         "Invalid value for '--audience-file': bin.dat is not UTF-8 text (byte 9)"),
        (["bad", "--tag", "spring", "--template-file", "bin.dat"],
         "Invalid value for '--template-file': bin.dat is not UTF-8 text"),
        (["N" * 256, "--tag", "spring", "--template", "Hi"],
         "Invalid value for 'NAME': the name is longer than 255 characters"),
    ]
    for args, message in cases:
        result = run(config_file, "create", *args)
        assert result.exit_code == 2, result.output
        assert message in result.output
    assert run(config_file, "list").output.strip() == "No campaigns."


def test_what_create_resume_and_report_say(config_file: Path, tmp_path: Path) -> None:
    """Found by review: rich ate '[campaigns]' as markup; ids of the audience file that are
    no contact were dropped without a word (a byte-order mark made the first one of them);
    'resume' promised a server would continue a campaign it never takes; 'report --csv'
    to a missing folder was a traceback."""
    (tmp_path / "ids.txt").write_bytes("\ufeffu000001\r\nu000002\nghost\n".encode())
    created = run(config_file, "create", "one", "--audience-file", "ids.txt", "--template", "Hi",
                  "--at", "2999-01-01T03:00Z")
    assert "Created campaign 1 'one': 2 recipients." in created.output
    assert "Left out 1 id(s) of ids.txt that are no contact (the first 'ghost')." in created.output
    assert "the server runs it then ([campaigns] scheduler)." in created.output

    assert run(config_file, "create", "two", "--tag", "spring", "--template", "Hi").exit_code == 0
    assert run(config_file, "pause", "2").exit_code == 0
    resumed = run(config_file, "resume", "2")
    assert "Resumed campaign 2: ready again." in resumed.output

    report = run(config_file, "report", "1", "--csv", str(tmp_path / "missing" / "r.csv"))
    assert report.exit_code == 2
    assert "Invalid value for '--csv': cannot write" in report.output
    assert "No such file or directory" in report.output


def test_prompt_needs_the_ai(tmp_path: Path, config_file: Path) -> None:
    path = write_config(tmp_path / ".." / tmp_path.name, ai=False)
    result = run(path, "create", "x", "--tag", "spring", "--prompt", "Hi {name}")
    assert result.exit_code == 2
    assert "--prompt needs the AI: set [ai] enabled = true" in result.output


def test_a_template_campaign_from_create_to_report(config_file: Path, tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("u000001\nu000003\nu000004\nnobody\n")
    result = run(config_file, "create", "spring-sale", "--audience-file", str(ids),
                 "--template", "Hello {name}, your plan: {plan}.", "--rate", "50")
    assert result.exit_code == 0, result.output
    assert "Created campaign 1 'spring-sale': 3 recipients." in result.output
    result = run(config_file, "create", "pro-only", "--tag", "spring", "--attr", "plan=pro",
                 "--template", "Hi {name}", "--at", "2999-01-01T03:00", "--tz", "Europe/Paris")
    assert "Created campaign 2 'pro-only': 15 recipients." in result.output
    assert "Scheduled for 2999-01-01 02:00 UTC" in result.output

    preview = run(config_file, "preview", "1", "--sample", "2")
    assert preview.exit_code == 0, preview.output
    assert "Hello Person 1, your plan: pro." in preview.output
    assert "nothing is stored or sent" in preview.output

    status = json.loads(run(config_file, "status", "1", "--json").output)
    assert status["status"] == "ready" and status["recipients"]["pending"] == 3

    assert run(config_file, "pause", "1").exit_code == 0
    refused = run(config_file, "run", "1")
    assert refused.exit_code == 1
    assert "campaign 1 is paused; 'campaigns resume 1' first" in refused.output
    assert "Resumed campaign 1: ready again." in run(config_file, "resume", "1").output

    done = run(config_file, "run", "1", "--quiet")
    assert done.exit_code == 0, done.output
    assert "Campaign 1: finished. 2 sent, 0 failed, 1 skipped, 0 pending" in done.output

    report_csv = tmp_path / "report.csv"
    report = run(config_file, "report", "1", "--csv", str(report_csv))
    assert "2 sent" in report.output and "unsubscribed" in report.output
    with report_csv.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["external_id"], r["state"]) for r in rows] == [
        ("u000001", "sent"), ("u000003", "skipped"), ("u000004", "sent")]
    assert all(r["message_seq"] for r in rows if r["state"] == "sent")
    as_json = json.loads(run(config_file, "report", "1", "--json").output)
    assert [r["state"] for r in as_json] == ["sent", "skipped", "sent"]
    assert check_exactly_once(tmp_path / "test.db", 1) == {"sent": 2, "skipped": 1}

    listing = json.loads(run(config_file, "list", "--json").output)
    assert [(c["id"], c["status"]) for c in listing] == [(2, "scheduled"), (1, "finished")]
    assert "campaign 1 is finished" in run(config_file, "cancel", "1").output
    assert "Cancelled campaign 2." in run(config_file, "cancel", "2").output
    assert "no campaign 9" in run(config_file, "status", "9").output


def test_status_from_another_shell_gives_the_pace_and_the_time_left(config_file: Path) -> None:
    """While a run goes on elsewhere (here: its first deliveries written straight to the
    store), ``status`` measures the recent pace and the time left from the database."""
    created = run(config_file, "create", "paced", "--tag", "spring", "--template", "Hi {name}")
    assert created.exit_code == 0, created.output

    async def half_sent() -> int:
        async with open_store(config_at(config_file)) as store:
            await store.claim_campaign(1, "elsewhere:1:x", 60, datetime.now(UTC))
            await store.set_campaign_status(1, CampaignStatus.RUNNING)
            pending = await store.recipients_to_send(1, 0, 10)
            for recipient, _contact in pending:
                await store.deliver_campaign_message(1, recipient.contact_id, "Hi", 0,
                                                     datetime.now(UTC))
            return sum((await store.recipient_counts(1)).values())

    total = trio.run(half_sent)
    status = json.loads(run(config_file, "status", "1", "--json").output)
    assert status["status"] == "running" and status["lease_owner"] == "elsewhere:1:x"
    assert status["recipients"]["sent"] + status["recipients"]["skipped"] == 10  # u000003
    assert status["per_second"] > 0
    assert status["eta_seconds"] >= 0
    assert status["total"] == total
    text = run(config_file, "status", "1").output
    assert "recipients/s over the last" in text and "time left:" in text


def test_pace_of_a_campaign() -> None:
    assert pace_of(120, 60.0, 600) == Pace(2.0, 60.0, 300.0)
    assert pace_of(0, 60.0, 5).eta is None  # nothing done lately: no pace to go by
    assert pace_of(0, 60.0, 0).eta == 0.0
    assert pace_of(3, 0.0, 1).per_second == 0.0
