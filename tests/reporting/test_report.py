"""`occupancy report` on real SQLite logs written through the store's own writer API.

Expected numbers are computed here, independently, from the raw `events` table (plain SQL and
zoneinfo), never from the hourly rollup or the report's own helpers.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import json
import os
import sqlite3
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from tests.conftest import local_timezone
from occupancy.reporting import queries as report_queries
from occupancy.engine import store
from occupancy.cli import main
from occupancy.reporting.plot import FIGURE_DPI, FIGURE_INCHES, report_figure
from occupancy.reporting.summary import PERIOD_KEYS, SEX_KEYS, VOICES_KEYS, build_report, hourly_table
from occupancy.engine.store import event_row, migrations, open_store, start_run, write_batch
from occupancy.engine.events import CountEvent
from occupancy.engine.worker import Smoother

ZONE = "Europe/Berlin"  # UTC+1 in November: local hours differ from the log's, and days cut at 23:00 UTC
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@pytest.fixture(autouse=True)
def berlin(monkeypatch):
    """Run every test in a fixed local time zone, whatever the machine's."""
    yield from local_timezone(monkeypatch, ZONE)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def count_events(start: datetime, counts, hop: float = 1.0, women=None) -> list[CountEvent]:
    """One window per count, `hop` seconds apart, smoothed by the engine's own Smoother; `women`: how
    many of each count are women (the rest men), as model.sex logs them, or None for no estimate."""
    smoother = Smoother("median", 5)
    events = []
    for i, count in enumerate(counts):
        begin = start + timedelta(seconds=i * hop)
        probs = tuple(0.9 if c == count else 0.1 / 3 for c in range(4))
        sex = {} if women is None else {"women": int(women[i]), "men": int(count - women[i])}
        events.append(CountEvent(
            start=begin, end=begin + timedelta(seconds=1), seconds=hop, count=int(count), probabilities=probs,
            smoothed=smoother.add(int(count)), level_dbfs=-30.0, latency_ms=5.0, captured_at=0.0, **sex,
        ))
    return events


def log_counts(db: Database, start: datetime, counts, hop: float = 1.0, women=None) -> None:
    """Log count_events(...) as one run."""
    run_id = start_run(db, source="replay", device="test", model="test", compute="cpu", hop_s=hop)
    events = count_events(start, counts, hop, women)
    write_batch(db, run_id, events, {"windows": len(events)})


def random_counts(rng: np.random.Generator, minutes: float, weights) -> np.ndarray:
    return rng.choice(4, size=int(minutes * 60), p=np.asarray(weights) / sum(weights))


# (UTC start, minutes of windows, weights of counts 0..3): well-covered and LOW hours, a local day
# boundary (23:30 UTC is 00:30 the next day in Berlin), and the same weekday-hour on two Mondays.
TRAFFIC = [
    ("2026-11-23T08:00:00", 20, (6, 3, 1, 0)),
    ("2026-11-23T09:00:00", 5, (0, 0, 1, 9)),  # 5 minutes of a very busy hour: LOW, never "busiest"
    ("2026-11-23T12:10:00", 30, (2, 4, 3, 1)),
    ("2026-11-24T17:00:00", 40, (1, 2, 4, 3)),
    ("2026-11-24T23:30:00", 25, (8, 2, 0, 0)),
    ("2026-11-28T10:00:00", 60, (3, 3, 3, 1)),
    ("2026-11-30T08:00:00", 18, (2, 5, 2, 1)),
]


@pytest.fixture(scope="module")
def traffic_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "log.db"
    db = open_store(path)
    rng = np.random.default_rng(8)
    for start, minutes, weights in TRAFFIC:
        log_counts(db, utc(start), random_counts(rng, minutes, weights))
    db.close()
    return path


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("monitor:\n  venue: Cafe Test\n  capacity_limit: 2\n")
    return path


def report(capsys, *args: str, config=None) -> tuple[int, str, str]:
    code = main([*(["--config", str(config)] if config else []), "report", *args])
    out, err = capsys.readouterr()
    return code, out, err


def report_json(capsys, db, *args: str) -> dict:
    code, out, err = report(capsys, "--db", str(db), "--format", "json", *args)
    assert code == 0, err
    return json.loads(out)


# ---- expected values, straight from the events --------------------------------------------------------


def raw_events(db_path) -> list[dict]:
    with sqlite3.connect(db_path) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM events ORDER BY start_utc")]


def expected_periods(db_path, by: str, zone, min_coverage: float = 15.0, since=None, until=None) -> dict[str, dict]:
    """Per period label, what the report must show; the women/men keys only if some window in the range has them."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    labels = {}
    in_range = [
        e for e in raw_events(db_path)
        if not (since and datetime.fromisoformat(e["start_utc"]) < since)
        and not (until and datetime.fromisoformat(e["start_utc"]) >= until)
    ]
    any_estimate = any(e["women"] is not None for e in in_range)
    for event in in_range:
        moment = datetime.fromisoformat(event["start_utc"])
        hour = moment.replace(minute=0, second=0, microsecond=0).astimezone(zone)
        key, label = {
            "hour": (hour, f"{hour:%Y-%m-%d %H:%M}"),
            "day": (hour.date(), f"{hour:%Y-%m-%d}"),
            "weekday-hour": ((hour.weekday(), hour.hour), f"{WEEKDAYS[hour.weekday()]} {hour:%H:%M}"),
        }[by]
        event["utc_hour"] = moment.replace(minute=0, second=0, microsecond=0)
        groups[key].append(event)
        labels[key] = label
    result = {}
    for key in sorted(groups):
        events = groups[key]
        seconds = sum(e["seconds"] for e in events)
        hours = len({e["utc_hour"] for e in events})
        result[labels[key]] = {
            "hours": hours,
            "minutes_covered": seconds / 60,
            "mean_count": sum(e["count"] * e["seconds"] for e in events) / seconds,
            "peak_count": max(e["count"] for e in events),
            "speech_minutes": sum(e["seconds"] for e in events if e["count"] >= 1) / 60,
            "share_1plus": sum(e["seconds"] for e in events if e["count"] >= 1) / seconds,
            "share_2plus": sum(e["seconds"] for e in events if e["count"] >= 2) / seconds,
            "share_3plus": sum(e["seconds"] for e in events if e["count"] >= 3) / seconds,
            "low_coverage": seconds / 60 < min_coverage * hours,
        }
        if any_estimate:
            estimated = [e for e in events if e["women"] is not None]
            estimated_seconds = sum(e["seconds"] for e in estimated)
            result[labels[key]].update({
                "mean_women": sum(e["women"] * e["seconds"] for e in estimated) / estimated_seconds if estimated else None,
                "mean_men": sum(e["men"] * e["seconds"] for e in estimated) / estimated_seconds if estimated else None,
                "sex_minutes": estimated_seconds / 60,
            })
    return result


def assert_periods_match(rows: list[dict], expected: dict[str, dict]) -> None:
    assert [r["period"] for r in rows] == list(expected)
    for row in rows:
        for key, value in expected[row["period"]].items():
            assert row[key] == (None if value is None else pytest.approx(value, abs=1e-3)), (row["period"], key)


# ---- the numbers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("by", ["hour", "day", "weekday-hour"])
@pytest.mark.parametrize("use_utc", [False, True])
def test_periods_match_the_raw_events(capsys, traffic_db, by, use_utc):
    data = report_json(capsys, traffic_db, "--by", by, *(["--utc"] if use_utc else []))
    assert_periods_match(data["periods"], expected_periods(traffic_db, by, UTC if use_utc else ZoneInfo(ZONE)))
    assert data["timezone"] == ("UTC" if use_utc else "local time CET (UTC+01:00)")


def test_local_days_cut_at_local_midnight(capsys, traffic_db):
    days = [p["period"] for p in report_json(capsys, traffic_db, "--by", "day")["periods"]]
    utc_days = [p["period"] for p in report_json(capsys, traffic_db, "--by", "day", "--utc")["periods"]]
    assert "2026-11-25" in days and "2026-11-25" not in utc_days  # 23:30 UTC Tuesday is Wednesday in Berlin


def test_busiest_and_quietest_leave_out_low_coverage(capsys, traffic_db):
    data = report_json(capsys, traffic_db, "--top", "3")
    expected = expected_periods(traffic_db, "hour", ZoneInfo(ZONE))
    covered = sorted((p for p, e in expected.items() if not e["low_coverage"]), key=lambda p: expected[p]["mean_count"])
    low = [p for p, e in expected.items() if e["low_coverage"]]
    assert "2026-11-23 10:00" in low  # the 5-minute hour, the busiest of all by its few windows
    assert [p["period"] for p in data["busiest"]] == covered[::-1][:3]
    assert [p["period"] for p in data["quietest"]] == covered[:3]


def test_weekday_comparison(capsys, traffic_db):
    weekdays = {w["period"]: w for w in report_json(capsys, traffic_db)["weekdays"]}
    events = raw_events(traffic_db)
    for name in weekdays:
        mine = [e for e in events if WEEKDAYS[datetime.fromisoformat(e["start_utc"]).astimezone(ZoneInfo(ZONE)).weekday()] == name]
        days = {datetime.fromisoformat(e["start_utc"]).astimezone(ZoneInfo(ZONE)).date() for e in mine}
        seconds = sum(e["seconds"] for e in mine)
        speech = sum(e["seconds"] for e in mine if e["count"] >= 1) / 60
        assert weekdays[name]["days"] == len(days)
        assert weekdays[name]["mean_count"] == pytest.approx(sum(e["count"] * e["seconds"] for e in mine) / seconds, abs=1e-3)
        assert weekdays[name]["speech_minutes_per_day"] == pytest.approx(speech / len(days), abs=1e-3)
    assert list(weekdays) == ["Mon", "Tue", "Wed", "Sat"]
    assert weekdays["Mon"]["days"] == 2


def test_since_until_are_local_and_until_is_exclusive(capsys, traffic_db):
    data = report_json(capsys, traffic_db, "--since", "2026-11-24", "--until", "2026-11-28T11:00")
    zone = ZoneInfo(ZONE)
    expected = expected_periods(
        traffic_db, "hour", zone, since=datetime(2026, 11, 24, tzinfo=zone), until=datetime(2026, 11, 28, 11, tzinfo=zone)
    )
    assert_periods_match(data["periods"], expected)
    assert data["since"] == "2026-11-24T00:00:00+01:00" and data["until"] == "2026-11-28T11:00:00+01:00"


def test_gaps_are_whole_unmonitored_hours(capsys, traffic_db):
    gaps = report_json(capsys, traffic_db, "--utc")["gaps"]
    present = {datetime.fromisoformat(e["start_utc"]).replace(minute=0, second=0, microsecond=0) for e in raw_events(traffic_db)}
    runs = []  # [first missing hour, number of hours]
    moment = min(present)
    while moment < max(present):
        if moment not in present:
            if runs and runs[-1][0] + timedelta(hours=runs[-1][1]) == moment:
                runs[-1][1] += 1
            else:
                runs.append([moment, 1])
        moment += timedelta(hours=1)
    assert [(g["start"], g["hours"]) for g in gaps] == [(start.isoformat(), hours) for start, hours in runs]


def test_hourly_table_is_the_hour_report(capsys, traffic_db):
    """The dashboard's table: the same rows the command prints with --by hour."""
    rows = hourly_table(traffic_db, datetime(2026, 11, 23), datetime(2026, 11, 25))
    assert_periods_match(rows, expected_periods(
        traffic_db, "hour", ZoneInfo(ZONE),
        since=datetime(2026, 11, 23, tzinfo=ZoneInfo(ZONE)), until=datetime(2026, 11, 25, tzinfo=ZoneInfo(ZONE)),
    ))


# ---- capacity alerts --------------------------------------------------------------------------------


def stretches_above(db_path, limit: float) -> list[tuple[datetime, datetime, float]]:
    """Runs of consecutive logged windows with smoothed > limit: (first start, last end, peak)."""
    runs = [list(g) for above, g in itertools.groupby(raw_events(db_path), key=lambda r: r["smoothed"] > limit) if above]
    return [
        (datetime.fromisoformat(run[0]["start_utc"]), datetime.fromisoformat(run[-1]["end_utc"]), max(r["smoothed"] for r in run))
        for run in runs
    ]


def as_tuples(alerts: list[dict]) -> list[tuple[datetime, datetime, float]]:
    return [(datetime.fromisoformat(a["start"]), datetime.fromisoformat(a["end"]), a["peak_smoothed"]) for a in alerts]


@pytest.mark.parametrize("hop", [1.0, 0.5])
def test_capacity_alerts_are_stretches_above_the_limit(capsys, tmp_path, hop):
    path = tmp_path / "alerts.db"
    db = open_store(path)
    rng = np.random.default_rng(3)
    counts = np.concatenate([np.zeros(30), np.full(40, 3), np.zeros(3), np.full(40, 3), rng.choice(4, 300), np.zeros(20)])
    log_counts(db, utc("2026-11-26T18:00:00"), counts.astype(int), hop=hop)
    db.close()
    alerts = report_json(capsys, path, "--utc", "--capacity-limit", "1", "--alert-seconds", "0")["alerts"]
    expected = stretches_above(path, 1)
    assert len(expected) >= 2
    assert as_tuples(alerts) == expected
    for alert, (start, end, _) in zip(alerts, expected):
        assert alert["duration_s"] == pytest.approx((end - start).total_seconds())


def test_short_dips_and_flickers_are_not_alerts(capsys, tmp_path):
    """An evening over the limit with a 10-s lull is one alert; a 20-s burst later is none (--alert-seconds 60)."""
    path = tmp_path / "evening.db"
    db = open_store(path)
    segments = [(0, 30), (3, 40), (0, 10), (3, 40), (0, 200), (3, 20), (0, 30)]
    log_counts(db, utc("2026-11-27T20:00:00"), np.concatenate([np.full(n, c) for c, n in segments]).astype(int))
    db.close()
    runs = stretches_above(path, 2)
    assert len(runs) == 3  # the two halves of the evening, and the burst
    alerts = report_json(capsys, path, "--utc", "--capacity-limit", "2")["alerts"]
    assert as_tuples(alerts) == [(runs[0][0], runs[1][1], 3.0)]


def test_capacity_limit_comes_from_the_config(capsys, traffic_db, config_file):
    code, out, _ = report(capsys, "--db", str(traffic_db), config=config_file)
    assert code == 0
    assert "Capacity alerts (smoothed count above 2" in out
    code, out, _ = report(capsys, "--db", str(traffic_db))  # default limit 0: no alerts section
    assert code == 0 and "Capacity alerts" not in out


# ---- formats and pictures ------------------------------------------------------------------------------


def test_table_and_markdown_show_every_section(capsys, traffic_db, config_file):
    for fmt in ("table", "markdown"):
        code, out, _ = report(capsys, "--db", str(traffic_db), "--format", fmt, config=config_file)
        assert code == 0
        assert "Traffic report: Cafe Test" in out
        for title in ("Traffic by hour", "Busiest hours", "Quietest open hours", "Weekdays", "Capacity alerts", "Longest gaps"):
            assert title in out, (fmt, title)
        for label in expected_periods(traffic_db, "hour", ZoneInfo(ZONE)):
            assert label in out
        assert "LOW" in out
    assert "| 2026-11-23 09:00 | Mon |" in out


def test_csv_is_the_period_table(capsys, traffic_db):
    code, out, _ = report(capsys, "--db", str(traffic_db), "--format", "csv", "--by", "weekday-hour")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    expected = expected_periods(traffic_db, "weekday-hour", ZoneInfo(ZONE))
    assert [r["period"] for r in rows] == list(expected)
    for row in rows:
        assert float(row["mean_count"]) == pytest.approx(expected[row["period"]]["mean_count"], abs=1e-3)
        assert row["low_coverage"] == str(expected[row["period"]]["low_coverage"])


def test_plot_writes_one_png_of_the_documented_size(capsys, traffic_db, tmp_path):
    import matplotlib.image

    png = tmp_path / "week.png"
    code, _, _ = report(capsys, "--db", str(traffic_db), "--plot", str(png))
    assert code == 0
    image = matplotlib.image.imread(png)
    assert image.shape[:2] == (round(FIGURE_INCHES[1] * FIGURE_DPI), round(FIGURE_INCHES[0] * FIGURE_DPI))
    assert image[..., :3].std() > 0.05  # not a blank canvas


def test_unwritable_plot_is_a_one_line_error(capsys, traffic_db, tmp_path):
    code, _, err = report(capsys, "--db", str(traffic_db), "--plot", str(tmp_path / "no" / "such" / "dir.png"))
    assert code == 2 and "dir.png" in err and len(err.strip().splitlines()) == 1


# ---- awkward databases ------------------------------------------------------------------------------------


def test_empty_log_says_so_and_exits_1(capsys, tmp_path):
    path = tmp_path / "empty.db"
    open_store(path).close()
    code, out, err = report(capsys, "--db", str(path))
    assert code == 1 and out == ""
    assert err.strip() == f"occupancy: no traffic logged in {path}"


def test_range_without_traffic_exits_1(capsys, traffic_db):
    code, out, err = report(capsys, "--db", str(traffic_db), "--since", "2027-01-01")
    assert code == 1 and out == "" and "no traffic logged" in err and "since 2027-01-01" in err


def test_missing_file_is_a_one_line_error(capsys, tmp_path):
    code, _, err = report(capsys, "--db", str(tmp_path / "nothing.db"))
    assert code == 2 and "nothing.db" in err and len(err.strip().splitlines()) == 1


def test_foreign_database_is_refused(capsys, tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE events (ts TEXT, people INTEGER)")
    code, _, err = report(capsys, "--db", str(path))
    assert code == 2 and str(path) in err and "not an occupancy log" in err
    assert len(err.strip().splitlines()) == 1


def test_not_a_database_is_refused(capsys, tmp_path):
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are not the tables you are looking for\n" * 100)
    code, _, err = report(capsys, "--db", str(path))
    assert code == 2 and str(path) in err and len(err.strip().splitlines()) == 1


def test_log_not_created_yet_is_empty_and_left_alone(capsys, tmp_path):
    """A file a monitor is just creating (no schema yet): nothing to report, and the report writes nothing."""
    path = tmp_path / "new.db"
    db = Database(path)
    migrations.apply(db, stop_before=migrations.pending(db)[0].name)  # the migrations table, nothing else
    db.close()
    code, _, err = report(capsys, "--db", str(path))
    assert code == 1 and "no traffic logged" in err
    assert Database(path).table_names() == [migrations.migrations_table]


def test_older_schema_is_migrated(capsys, tmp_path, monkeypatch):
    """A log written before this version's newest migration is brought up to date, then reported."""
    path = tmp_path / "old.db"
    db = open_store(path)
    log_counts(db, utc("2026-11-27T19:00:00"), [2] * 1200)
    db.close()

    newer = Migrations("occupancy")  # this version's schema plus one more step than the file has
    newer()(store.m001_initial_schema)
    newer()(store.m002_sex_composition)
    newer()(store.m003_hourly_sex_composition)
    newer()(store.m004_distinct_voices)
    newer()(store.m005_sync_cursor)

    @newer()
    def m999_index_on_smoothed(db):
        db.execute("CREATE INDEX events_smoothed ON events(smoothed)")

    monkeypatch.setattr(store, "migrations", newer)
    monkeypatch.setattr(report_queries, "migrations", newer)
    assert [m.name for m in newer.pending(Database(path))] == ["m999_index_on_smoothed"]
    data = report_json(capsys, path, "--utc")
    assert [(p["period"], p["mean_count"]) for p in data["periods"]] == [("2026-11-27 19:00", 2.0)]
    assert newer.pending(Database(path)) == []
    assert "events_smoothed" in [i.name for i in Database(path)["events"].indexes]


def test_reads_while_a_writer_holds_a_transaction(capsys, tmp_path):
    """WAL: a report runs while the monitor's writer is mid-batch, and sees only committed windows."""
    path = tmp_path / "live.db"
    db = open_store(path)
    log_counts(db, utc("2026-11-25T14:00:00"), [1] * 600)
    db.execute("BEGIN IMMEDIATE")
    db.execute(  # the same ten minutes again, with 2 speakers: written but not committed
        "INSERT INTO events (run_id, start_utc, end_utc, seconds, count, smoothed, probabilities, level_dbfs, latency_ms) "
        "SELECT 1, start_utc, end_utc, seconds, 2, 2, probabilities, level_dbfs, latency_ms FROM events"
    )
    try:
        data = report_json(capsys, path, "--utc")
    finally:
        db.conn.rollback()
        db.close()
    assert [(p["period"], p["minutes_covered"], p["mean_count"]) for p in data["periods"]] == [("2026-11-25 14:00", 10.0, 1.0)]


def test_bad_date_is_a_usage_error(capsys, traffic_db):
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "--db", str(traffic_db), "--since", "last tuesday"])
    assert exit_info.value.code == 2
    assert "not an ISO date" in capsys.readouterr().err


def test_default_database_comes_from_the_config(capsys, traffic_db, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(f"storage:\n  database: {traffic_db}\n")
    code, out, _ = report(capsys, "--format", "json", config=config)
    assert code == 0 and json.loads(out)["database"] == str(traffic_db)
    assert os.path.isabs(json.loads(out)["database"])


# ---- women and men (model.sex) ------------------------------------------------------------------------

# (UTC start, minutes, weights of counts 0..3, whether the windows carry a women/men estimate): an hour
# all estimated, one estimated for its first 20 minutes only (the monitor restarted without --sex),
# and a day without any.
SEX_TRAFFIC = [
    ("2026-11-26T18:00:00", 30, (2, 4, 3, 1), True),
    ("2026-11-26T19:00:00", 20, (1, 3, 4, 2), True),
    ("2026-11-26T19:20:00", 30, (6, 3, 1, 0), False),
    ("2026-11-27T10:00:00", 30, (3, 3, 3, 1), False),
]


@pytest.fixture(scope="module")
def sex_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("sex") / "log.db"
    db = open_store(path)
    rng = np.random.default_rng(5)
    for start, minutes, weights, estimated in SEX_TRAFFIC:
        counts = random_counts(rng, minutes, weights)
        log_counts(db, utc(start), counts, women=rng.integers(0, counts + 1) if estimated else None)
    db.close()
    return path


@pytest.mark.parametrize("by", ["hour", "day", "weekday-hour"])
def test_women_and_men_match_the_raw_events(capsys, sex_db, by):
    data = report_json(capsys, sex_db, "--by", by, "--utc")
    expected = expected_periods(sex_db, by, UTC)
    assert_periods_match(data["periods"], expected)
    assert all(set(SEX_KEYS) <= set(p) for p in data["periods"] + data["weekdays"])
    if by == "hour":
        hours = {p["period"]: p for p in data["periods"]}
        assert hours["2026-11-26 19:00"]["sex_minutes"] == pytest.approx(20.0)  # 20 of its 50 minutes
        assert hours["2026-11-27 10:00"]["mean_women"] is None and hours["2026-11-27 10:00"]["sex_minutes"] == 0


def test_women_and_men_in_table_markdown_and_csv(capsys, sex_db):
    expected = expected_periods(sex_db, "hour", UTC)
    for fmt in ("table", "markdown"):
        code, out, _ = report(capsys, "--db", str(sex_db), "--format", fmt, "--utc")
        assert code == 0
        assert "Women/Men: women and men speaking at once, estimated" in out
        assert "averaged over the 50.0 min with an estimate" in out
        lines = [line.replace("|", " ").split() for line in out.splitlines()]
        headers = [cells for cells in lines if cells[:1] in (["Period"], ["Day"])]
        assert len(headers) == 4 and all(cells[-2:] == ["Women", "Men"] for cells in headers)  # 3 period tables, weekdays
        for label, want in expected.items():
            cells = next(cells for cells in lines if " ".join(cells).startswith(label))[-2:]
            if want["mean_women"] is None:
                assert cells == ["-", "-"], label
            else:
                assert cells == [f"{want['mean_women']:.2f}", f"{want['mean_men']:.2f}"], label
    code, out, _ = report(capsys, "--db", str(sex_db), "--format", "csv", "--utc")
    assert code == 0
    reader = csv.DictReader(io.StringIO(out))
    assert reader.fieldnames == [*PERIOD_KEYS, *SEX_KEYS]
    for row in reader:
        want = expected[row["period"]]
        if want["mean_women"] is None:
            assert (row["mean_women"], row["mean_men"], float(row["sex_minutes"])) == ("", "", 0.0)
        else:
            assert float(row["mean_women"]) == pytest.approx(want["mean_women"], abs=1e-3)
            assert float(row["mean_men"]) == pytest.approx(want["mean_men"], abs=1e-3)


def test_a_range_without_estimates_reports_exactly_as_before(capsys, sex_db, traffic_db):
    """No window with an estimate in the range: no women/men columns, keys or heading line at all."""
    for db, args in ((traffic_db, ()), (sex_db, ("--since", "2026-11-27"))):
        data = report_json(capsys, db, "--utc", *args)
        for period in data["periods"] + data["busiest"] + data["quietest"]:
            assert list(period) == list(PERIOD_KEYS)
        assert all(not set(SEX_KEYS) & set(w) for w in data["weekdays"])
        code, out, _ = report(capsys, "--db", str(db), "--format", "csv", "--utc", *args)
        assert code == 0 and out.splitlines()[0] == ",".join(PERIOD_KEYS)
        for fmt in ("table", "markdown"):
            code, out, _ = report(capsys, "--db", str(db), "--format", fmt, "--utc", *args)
            assert code == 0 and "Women" not in out and "Men" not in out


# (start, minutes, distinct voices or None: --voices off) of a log with the distinct-voices figure in part of its time
VOICES_TRAFFIC = [
    ("2026-11-26T18:00:00", 40, (1, 6)),
    ("2026-11-26T18:40:00", 30, None),
    ("2026-11-27T09:00:00", 20, (0, 3)),
]


@pytest.fixture(scope="module")
def voices_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("voices") / "log.db"
    db = open_store(path)
    rng = np.random.default_rng(7)
    for start, minutes, figures in VOICES_TRAFFIC:
        events = count_events(utc(start), random_counts(rng, minutes, (2, 4, 3, 1)))
        if figures:
            events = [dataclasses.replace(e, voices=int(v)) for e, v in zip(events, rng.integers(*figures, len(events)))]
        run_id = start_run(db, source="replay", device="test", model="test", compute="cpu", hop_s=1.0)
        write_batch(db, run_id, events, {"windows": len(events)})
    db.close()
    return path


@pytest.mark.parametrize("by", ["hour", "day", "weekday-hour"])
def test_distinct_voices_are_the_time_weighted_mean_and_peak_of_the_logged_figure(capsys, voices_db, by):
    data = report_json(capsys, voices_db, "--by", by, "--utc")
    label = {"hour": "%Y-%m-%d %H:00", "day": "%Y-%m-%d", "weekday-hour": "%a %H:00"}[by]
    figures = defaultdict(list)
    for event in raw_events(voices_db):
        figures[datetime.fromisoformat(event["start_utc"]).strftime(label)].append(event)
    assert [p["period"] for p in data["periods"]] == sorted(figures, key=[p["period"] for p in data["periods"]].index)
    for period in data["periods"]:
        heard = [e for e in figures[period["period"]] if e["voices"] is not None]
        seconds = sum(e["seconds"] for e in heard)
        assert period["distinct_voices_minutes"] == pytest.approx(seconds / 60, abs=1e-3)
        if heard:
            assert period["mean_distinct_voices"] == pytest.approx(sum(e["voices"] * e["seconds"] for e in heard) / seconds, abs=1e-3)
            assert period["peak_distinct_voices"] == max(e["voices"] for e in heard)
        else:
            assert period["mean_distinct_voices"] is None and period["peak_distinct_voices"] is None
    assert all(set(VOICES_KEYS) <= set(w) for w in data["weekdays"])


def test_distinct_voices_in_table_csv_and_a_second_heatmap(capsys, voices_db, tmp_path):
    code, out, _ = report(capsys, "--db", str(voices_db), "--utc")
    assert code == 0 and "Voices: different people heard within the monitor's voices_minutes" in out
    lines = [line.split() for line in out.splitlines()]
    headers = [cells for cells in lines if cells[:1] in (["Period"], ["Day"])]
    assert len(headers) == 4 and all(cells[-3:] == ["Voices", "Voices", "peak"] for cells in headers)
    first_row = {" ".join(cells[:2]): cells for cells in reversed(lines)}  # the first table's rows
    assert first_row["2026-11-26 19:00"][-2:] == ["-", "-"]  # only time without the figure
    assert first_row["2026-11-27 09:00"][-1] in {"0", "1", "2"}
    code, out, _ = report(capsys, "--db", str(voices_db), "--format", "csv", "--utc")
    assert csv.DictReader(io.StringIO(out)).fieldnames == [*PERIOD_KEYS, *VOICES_KEYS]

    titles = [ax.get_title() for ax in report_figure(build_report(voices_db, utc=True)).axes]
    assert [t.split(" (")[0] for t in titles if "by weekday and hour" in t] == [
        "Mean by weekday and hour", "Distinct voices by weekday and hour"]
    import matplotlib.image

    png = tmp_path / "voices.png"
    assert report(capsys, "--db", str(voices_db), "--plot", str(png))[0] == 0
    assert matplotlib.image.imread(png).shape[:2] == (round(FIGURE_INCHES[1] * FIGURE_DPI), round(FIGURE_INCHES[0] * FIGURE_DPI))


def test_without_the_figure_there_is_no_voices_column_nor_heatmap(capsys, traffic_db):
    code, out, _ = report(capsys, "--db", str(traffic_db), "--utc")
    assert code == 0 and "Voices" not in out
    titles = [ax.get_title() for ax in report_figure(build_report(traffic_db, utc=True)).axes]
    assert not any("Distinct voices" in t for t in titles)


# The hourly rollup as the previous version (schema m001 + m002) wrote it, frozen here.
PREVIOUS_ROLLUP = """
INSERT OR REPLACE INTO hourly (hour_utc, windows, seconds, count_sum, peak_count, person_seconds,
                               seconds_1plus, seconds_2plus, seconds_3plus)
SELECT substr(start_utc, 1, 13) || ':00:00.000+00:00', count(*), sum(seconds), sum(count),
       max(count), sum(count * seconds),
       sum(CASE WHEN count >= 1 THEN seconds ELSE 0 END),
       sum(CASE WHEN count >= 2 THEN seconds ELSE 0 END),
       sum(CASE WHEN count >= 3 THEN seconds ELSE 0 END)
FROM events GROUP BY 1
"""


def test_a_log_from_the_previous_version_keeps_everything_and_gains_its_women_and_men(capsys, tmp_path):
    """A log written by the previous version (events with and without estimates, an hour kept only in the
    rollup after retention) is migrated by the first report: no row or value is lost, and the hours
    already logged get their women and men from their events."""
    path = tmp_path / "previous.db"
    previous = Migrations("occupancy")
    previous()(store.m001_initial_schema)
    previous()(store.m002_sex_composition)
    db = Database(path)
    previous.apply(db)
    rng = np.random.default_rng(11)
    run_id = db["runs"].insert({"started_utc": "2026-11-26T18:00:00.000+00:00", "source": "replay", "device": "a",
                                "model": "counter-sex", "compute": "cpu", "hop_s": 0.5}).last_pk
    for start, minutes, weights, estimated in SEX_TRAFFIC:
        counts = random_counts(rng, minutes, weights)
        events = count_events(utc(start), counts, 0.5, rng.integers(0, counts + 1) if estimated else None)
        db["events"].insert_all({k: v for k, v in event_row(e, run_id).items() if k != "voices"} for e in events)
    db.execute(PREVIOUS_ROLLUP)
    retained = {"hour_utc": "2026-11-20T09:00:00.000+00:00", "windows": 7200, "seconds": 3600.0, "count_sum": 7200,
                "peak_count": 3, "person_seconds": 3600.0, "seconds_1plus": 1800.0, "seconds_2plus": 900.0,
                "seconds_3plus": 300.0}
    db["hourly"].insert(retained)  # its events were deleted by retention
    db.conn.commit()
    before = {table: list(db[table].rows) for table in ("runs", "events", "hourly")}
    db.close()

    data = report_json(capsys, path, "--utc")

    after = Database(path)
    assert [m.name for m in migrations.pending(after)] == []
    for table, rows in before.items():
        assert [{k: row[k] for k in rows[0]} for row in after[table].rows] == rows, table
    hourly = {row["hour_utc"][:13]: row for row in after["hourly"].rows}
    events = raw_events(path)
    for hour, row in hourly.items():
        estimated = [e for e in events if e["start_utc"].startswith(hour) and e["women"] is not None]
        assert row["women_seconds"] == pytest.approx(sum(e["women"] * e["seconds"] for e in estimated))
        assert row["men_seconds"] == pytest.approx(sum(e["men"] * e["seconds"] for e in estimated))
        assert row["sex_estimated_seconds"] == pytest.approx(sum(e["seconds"] for e in estimated))
    assert hourly["2026-11-20T09"]["sex_estimated_seconds"] == 0
    assert hourly["2026-11-26T19"]["sex_estimated_seconds"] == pytest.approx(20 * 60 * 0.5)  # hop 0.5 s
    expected = expected_periods(path, "hour", UTC)
    assert_periods_match([p for p in data["periods"] if p["period"] != "2026-11-20 09:00"], expected)
    assert data["periods"][0]["period"] == "2026-11-20 09:00" and data["periods"][0]["mean_women"] is None
    assert {row["distinct_voices_peak"] for row in hourly.values()} == {None}  # no figure was ever logged
    assert not any("distinct_voices" in key for key in data["periods"][0])
    after.close()


@pytest.mark.parametrize("flag", ["--min-coverage", "--alert-seconds"])
@pytest.mark.parametrize("value", ["nan", "inf", "-5", "ten"])
def test_report_thresholds_must_be_finite_numbers(capsys, traffic_db, flag, value):
    """NaN compares false with everything: as a threshold it would flag no hour and raise no alert."""
    with pytest.raises(SystemExit) as stop:
        main(["report", "--db", str(traffic_db), flag, value])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert flag in err and ("finite number" in err or "not a number" in err) and "Traceback" not in err
