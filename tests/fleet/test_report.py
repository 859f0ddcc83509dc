"""`occupancy report --from postgresql://...` on two boxes synced into a real PostgreSQL: each venue's report
equals the one its own log gives, and the fleet table agrees with them, in every format."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest

from .conftest import new_database
from .logs import T0, box_config, events_at, log_run, occupancy, spread_hours

ZONE = {"TZ": "America/New_York"}  # the reports in a local zone with an offset: PostgreSQL must agree with Python


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, postgres):
    """Two boxes with a few days of traffic each (and one stretch over capacity), synced with their events
    (read only by the tests: made once)."""
    boxes = {}
    folder = tmp_path_factory.mktemp("fleet")
    with new_database(postgres) as central:
        for name, room, shift in (("Library", "Reading room", 0), ("Cafe", "", 5)):
            config = box_config(folder / name, name, room)
            log = folder / name / "occupancy.db"
            log_run(log, spread_hours(80, per_hour=40, start=T0 + timedelta(hours=shift)))
            log_run(log, events_at(T0 + timedelta(hours=100 + shift), [3] * 90 + [0] * 30))
            proc = occupancy("--config", str(config), "sync", "--to", central, "--events")
            assert proc.returncode == 0, proc.stderr
            boxes[name] = config
        yield central, boxes


def report(*argv: str, config=None) -> str:
    first = ["--config", str(config)] if config else []
    proc = occupancy(*first, "report", *argv, "--capacity-limit", "2", "--alert-seconds", "30", env_extra=ZONE)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_each_venue_reports_from_the_central_store_as_from_its_own_log(fleet):
    url, boxes = fleet
    central = json.loads(report("--from", url, "--venue", "Library", "--venue", "Cafe", "--format", "json",
                                "--by", "weekday-hour"))
    assert [r["venue"] for r in central["reports"]] == ["Cafe", "Library / Reading room"]
    for name, config in boxes.items():
        local = json.loads(report("--format", "json", "--by", "weekday-hour", config=config))
        mine = next(r for r in central["reports"] if r["venue"].startswith(name))
        for key in ("timezone", "since", "until", "periods", "busiest", "quietest", "weekdays", "alerts", "gaps"):
            assert mine[key] == local[key], key
        assert max(a["duration_s"] for a in mine["alerts"]) >= 89  # the 90 s over the limit, from the synced events


def test_the_fleet_table_agrees_with_the_venues_reports_in_every_format(fleet, tmp_path):
    url, boxes = fleet
    whole = json.loads(report("--from", url, "--format", "json"))
    assert whole["reports"] == []  # no venue named: the table alone, whatever the fleet's size
    rooms = {(r["venue"], r["room"]): r for r in whole["rooms"]}
    assert set(rooms) == {("Library", "Reading room"), ("Cafe", "")}
    for name, config in boxes.items():
        local = json.loads(report("--format", "json", "--by", "weekday-hour", "--top", "3", config=config))
        room = next(r for (venue, _), r in rooms.items() if venue == name)
        assert [s["period"] for s in room["busiest"]] == [p["period"] for p in local["busiest"]]
        assert room["hours"] == len(local["periods"]) and room["hours"] > 0
        covered = sum(p["minutes_covered"] for p in local["periods"])
        assert room["monitored_hours"] == pytest.approx(covered / 60, abs=1e-3)
        assert 0 < room["coverage"] < 1 and len(room["by_hour"]) == 24

    table = report("--from", url)
    assert "Fleet report: 2 rooms in 2 venues" in table and "Reading room" in table and "***" not in table
    markdown = report("--from", url, "--format", "markdown", "--venue", "Cafe")
    assert "| Venue | Room |" in markdown and "# Traffic report: Cafe" in markdown
    rows = list(csv.DictReader(io.StringIO(report("--from", url, "--format", "csv"))))
    assert {r["venue"] for r in rows} == {"Library", "Cafe"} and all(r["busiest"] for r in rows)

    picture = tmp_path / "fleet.png"
    report("--from", url, "--plot", str(picture))
    assert picture.read_bytes().startswith(b"\x89PNG") and picture.stat().st_size > 10_000


def test_unknown_venues_and_empty_stores_are_one_line_errors(fleet, postgres):
    url, _ = fleet
    proc = occupancy("report", "--from", url, "--venue", "Nowhere")
    assert proc.returncode == 2 and "--venue 'Nowhere': no such venue" in proc.stderr and "Cafe" in proc.stderr
    proc = occupancy("report", "--from", postgres.url("postgres"))
    assert proc.returncode == 2 and "run `occupancy sync --to`" in proc.stderr
    proc = occupancy("report", "--from", url, "--since", "2030-01-01")
    assert proc.returncode == 1 and "no traffic stored" in proc.stderr
