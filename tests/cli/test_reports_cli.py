"""``reports`` (table, --json, --csv) and ``conversations export`` (jsonl, csv, stdout, no
progress bar off a terminal), on the hand-computed fixture (tests/reports_fixture.py),
and their clear one-line errors."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from customer_service.storage.base import Store
from tests.reports_fixture import Fixture, fill

CliRun = Callable[..., Result]
StoreCall = Callable[[Callable[[Store], Any]], Any]
RANGE = ("--since", "2026-11-02", "--until", "2026-11-03")


@pytest.fixture
def fixture(store_call: StoreCall) -> Fixture:
    found: Fixture = store_call(fill)
    return found


def test_the_table_shows_the_figures_and_the_groups(run: CliRun, fixture: Fixture) -> None:
    result = run("reports", *RANGE, "--by", "agent")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Report 2026-11-02T00:00:00+00:00 .. 2026-11-04T00:00:00+00:00 (UTC)" in out
    assert "Conversations opened                    5" in out
    assert "Resolution time (median / p90)          45 min / 1 h 42 min  (4)" in out
    assert "First agent reply (median / p90)        2 min / 3 min 44 s  (3)" in out
    assert "Messages visitor / agent / ai / system  5 / 3 / 6 / 5" in out
    assert "By agent" in out and "Alice" in out and "(unassigned)" in out
    assert "November promo" in out


def test_a_long_agent_name_does_not_squeeze_the_figures(
        run: CliRun, store_call: StoreCall, add_agent: Callable[..., Result]) -> None:
    """A 45-character display name is cut with an ellipsis; the figures stay whole
    (they were cut to "1m30s/1…" for the name)."""
    add_agent("alice", "--name", "Alice Wonderland-Longname-Of-The-Support-Team")
    store_call(fill)
    out = run("reports", *RANGE, "--by", "agent").output
    alice = next(line for line in out.splitlines() if line.startswith("│ Alice"))
    assert "1m30s/1m54s" in alice and "2/2/2/3" in alice, out
    assert "…" in alice, out


def test_json_is_the_report_struct(run: CliRun, fixture: Fixture) -> None:
    result = run("reports", *RANGE, "--by", "label", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["total"]["opened"] == 5
    assert data["total"]["resolution"] == {"count": 4, "median_ms": 2700000, "p90_ms": 6120000}
    assert [row["key"] for row in data["rows"]] == ["billing", "vip", ""]
    assert data["campaigns"][0]["replied"] == 1
    assert data["by"] == "label" and data["timezone"] == "UTC"


def test_csv_has_a_header_a_row_per_day_and_the_total(run: CliRun, fixture: Fixture) -> None:
    result = run("reports", *RANGE, "--by", "day", "--tz", "UTC", "--csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert [row["group"] for row in rows] == ["2026-11-02", "2026-11-03", "total"]
    assert rows[0]["first_response_agent_median_s"] == "155.000"
    assert rows[2]["resolution_p90_s"] == "6120.000"
    assert rows[1]["messages_ai"] == "3"


@pytest.mark.parametrize(("args", "message"), [
    (("--since", "2026-13-01"), "Error: --since: '2026-13-01' is not a date"),
    (("--since", "2026-11-05", "--until", "2026-11-01"),
     "Error: --until: '2026-11-01' ends the range before --since '2026-11-05' begins it"),
    (("--since", "2026-11-01", "--by", "week"),
     "Error: --by: 'week' is not one of agent, day, label"),
    (("--since", "2026-11-01", "--tz", "Mars/Base"), "Error: --tz: unknown time zone"),
    (("--since", "2026-11-01", "--json", "--csv"), "Error: --json and --csv: choose one"),
])
def test_bad_input_is_one_clear_line(run: CliRun, args: tuple[str, ...], message: str) -> None:
    result = run("reports", *args)
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith(message), result.output
    assert "Traceback" not in result.output


def test_export_jsonl_writes_one_line_per_message(run: CliRun, fixture: Fixture,
                                                  tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    result = run("conversations", "export", *RANGE, "--format", "jsonl", str(target))
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in target.read_text("utf-8").splitlines()]
    assert len(lines) == 18
    first = lines[0]
    assert (first["conversation_id"], first["seq"], first["created_at"]) == (
        fixture.ids["C1"], 1, "2026-11-02T09:00:10.000Z")
    assert first["conversation"]["assigned_agent"] == "alice"
    assert first["conversation"]["labels"] == ["billing"]
    assert "Exported 18 messages" in result.output
    assert "━" not in result.output  # stderr is no terminal here: no progress bar


def test_export_csv_to_stdout_quietly(run: CliRun, fixture: Fixture) -> None:
    result = run("conversations", "export", *RANGE, "--format", "csv", "--quiet", "-")
    assert result.exit_code == 0, result.output
    raw = result.stdout_bytes
    assert raw.count(b"\r\n") == 19 and raw.endswith(b"\r\n")  # RFC 4180 line ends
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8"), newline="")))
    assert len(rows) == 18
    c7 = [row for row in rows if row["conversation_id"] == str(fixture.ids["C7"])]
    assert c7[0]["campaign_id"] == str(fixture.campaign_id)
    assert c7[0]["contact_external_id"] == "user-0"
    assert rows[2]["sender_role"] == "agent" and rows[2]["sender_name"] == "alice"


def test_export_refuses_to_overwrite_unless_forced(run: CliRun, fixture: Fixture,
                                                   tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("keep me")
    result = run("conversations", "export", *RANGE, "--format", "csv", str(target))
    assert result.exit_code == 2
    assert f"Invalid value for 'FILE': {target} exists (--force overwrites it)" in (
        result.output)
    assert target.read_text() == "keep me"
    forced = run("conversations", "export", *RANGE, "--format", "csv", "--force", "-q",
                 str(target))
    assert forced.exit_code == 0, forced.output
    assert target.read_text("utf-8").startswith("conversation_id,seq,created_at")


def test_export_bad_input(run: CliRun, tmp_path: Path) -> None:
    result = run("conversations", "export", "--since", "soon", "--format", "csv", "-")
    assert result.exit_code == 1
    assert result.output.strip().startswith("Error: --since: 'soon' is not a date")
    result = run("conversations", "export", "--since", "2026-11-01", "--format", "xml", "-")
    assert result.exit_code == 2 and "'xml' is not one of 'jsonl', 'csv'" in result.output
    empty = run("conversations", "export", "--since", "2025-01-01", "--until", "2025-01-02",
                "--format", "jsonl", str(tmp_path / "empty.jsonl"))
    assert empty.exit_code == 0, empty.output
    assert (tmp_path / "empty.jsonl").read_bytes() == b""
