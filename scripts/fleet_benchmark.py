"""Fleet scale, measured: sync throughput, the fleet report's time and the central store's size.

    python scripts/fleet_benchmark.py --url postgresql://user@host/emptydb [--rooms 1000] [--days 365]

Needs an empty PostgreSQL database it may fill (docs/fleet.md shows a throw-away one). Two parts:

1. sync: one real local log (a year of hourly rows, written by the store's own writer, a few windows per
   hour) pushed by `sync_log` into the central store: hourly rows per second for the first sync, the time
   of a routine sync (one hour grown), and, with --events-hours N, per-window events per second.
2. scale: `--rooms` x `--days` x 24 hourly rows generated inside PostgreSQL (generate_series; pushing
   8.76 M rows through sync would measure this machine's SQLite writer, not the store), then the fleet
   report over every room timed, a single venue's full report timed, and the database's size.

Prints the figures and writes them as JSON (--out) for docs/fleet.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from occupancy.engine.events import CountEvent
from occupancy.engine.store import finish_run, open_store, start_run, write_batch
from occupancy.fleet.central import SCHEMA, connect, migrate
from occupancy.fleet.reader import fleet_report
from occupancy.fleet.sync import sync_log

T0 = datetime(2025, 1, 6, tzinfo=UTC)  # a Monday
ROOMS_PER_VENUE = 4


def window(start: datetime, count: int) -> CountEvent:
    return CountEvent(start=start, end=start + timedelta(seconds=1), seconds=1.0, count=count,
                      probabilities=tuple(float(k == count) for k in range(4)), smoothed=float(count),
                      level_dbfs=-40.0, latency_ms=5.0, captured_at=time.monotonic())


def make_log(path: Path, hours: int, per_hour: int, events_hours: int) -> None:
    """A log of `hours` hours with `per_hour` windows each, and its last `events_hours` hours full (3600 windows)."""
    db = open_store(path)
    run = start_run(db, source="replay", device="bench", model="bench", compute="cpu", hop_s=1.0)
    batch: list[CountEvent] = []
    for h in range(hours):
        start = T0 + timedelta(hours=h)
        full = h >= hours - events_hours
        for i in range(3600 if full else per_hour):
            batch.append(window(start + timedelta(seconds=i), (h + i) % 4))
        if len(batch) >= 20_000:
            write_batch(db, run, batch, {})
            batch = []
    write_batch(db, run, batch, {})
    finish_run(db, run)
    db.close()


def bench_sync(url: str, days: int, events_hours: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "box.db"
        hours = days * 24
        started = time.perf_counter()
        make_log(log, hours, per_hour=4, events_hours=0)
        built = time.perf_counter() - started
        first = sync_log(log, url, "Benchmark venue", "Local box")
        again = sync_log(log, url, "Benchmark venue", "Local box")
        db = open_store(log)
        run = start_run(db, source="replay", device="bench", model="bench", compute="cpu", hop_s=1.0)
        write_batch(db, run, [window(T0 + timedelta(hours=hours, seconds=i), 1) for i in range(60)], {})
        db.close()
        routine = sync_log(log, url, "Benchmark venue", "Local box")
        result = {
            "log_hours": hours, "log_build_s": round(built, 1),
            "first_sync_hours": first.hours, "first_sync_s": round(first.seconds, 2),
            "first_sync_hours_per_s": round(first.hours / first.seconds),
            "repeat_sync_hours": again.hours, "repeat_sync_s": round(again.seconds, 2),
            "routine_sync_hours": routine.hours, "routine_sync_s": round(routine.seconds, 2),
        }
        if events_hours:
            log = Path(folder) / "events.db"
            make_log(log, events_hours, per_hour=0, events_hours=events_hours)
            pushed = sync_log(log, url, "Benchmark venue", "Events box", events=True)
            conn = connect(url)
            (events_bytes,) = conn.execute(f"SELECT pg_total_relation_size('{SCHEMA}.events')").fetchone()
            conn.close()
            result.update(events=pushed.events, events_sync_s=round(pushed.seconds, 2),
                          events_per_s=round(pushed.events / pushed.seconds),
                          bytes_per_event_row=round(events_bytes / pushed.events))
    return result


def generate_fleet(conn, rooms: int, days: int) -> float:
    """rooms x days x 24 hourly rows made inside PostgreSQL: open 8-20 h, a midday peak, rooms of varied traffic."""
    started = time.perf_counter()
    with conn.transaction():
        conn.execute("SET LOCAL synchronous_commit = off")
        conn.execute(
            f"""INSERT INTO {SCHEMA}.boxes (venue, room, box, host, last_synced)
                SELECT format('Venue %%s', lpad(((n - 1) / {ROOMS_PER_VENUE} + 1)::text, 4, '0')),
                       format('Room %%s', (n - 1) %% {ROOMS_PER_VENUE} + 1), md5(n::text), 'generated', now()
                FROM generate_series(1, %s) AS n""", [rooms])
        conn.execute(
            f"""INSERT INTO {SCHEMA}.hourly (box_id, hour_utc, windows, seconds, count_sum, peak_count, person_seconds,
                                             seconds_1plus, seconds_2plus, seconds_3plus)
                SELECT b.id, t, 3600, 3600, round(3600 * m), 3, 3600 * m, 3600 * least(1, m), 1800 * least(1, m),
                       600 * least(1, m)
                FROM {SCHEMA}.boxes b
                CROSS JOIN generate_series(%s::timestamptz, %s::timestamptz - interval '1 hour', interval '1 hour') AS t
                CROSS JOIN LATERAL (SELECT CASE WHEN extract(hour FROM t) BETWEEN 8 AND 19
                    THEN (0.3 + 1.6 * exp(-power((extract(hour FROM t) - 13) / 3.0, 2))) * (0.6 + (b.id %% 7) / 7.0)
                    ELSE 0.02 END AS m) AS shape
                WHERE b.host = 'generated'""",
            [T0, T0 + timedelta(days=days)])
    conn.execute(f"ANALYZE {SCHEMA}.hourly")
    conn.commit()
    return time.perf_counter() - started


def bench_scale(url: str, rooms: int, days: int) -> dict:
    conn = connect(url)
    migrate(conn)
    generated = generate_fleet(conn, rooms, days)
    (rows,) = conn.execute(f"SELECT count(*) FROM {SCHEMA}.hourly").fetchone()
    hourly_bytes, database_bytes = conn.execute(
        f"SELECT pg_total_relation_size('{SCHEMA}.hourly'), pg_database_size(current_database())").fetchone()
    conn.close()
    options = dict(since=None, until=None, by="hour", utc=True, top=5, min_coverage=15.0, capacity_limit=0,
                   alert_seconds=60.0)
    started = time.perf_counter()
    fleet = fleet_report(url, [], **options)
    whole = time.perf_counter() - started
    started = time.perf_counter()
    venue = fleet_report(url, ["Venue 0001"], **options)
    one_venue = time.perf_counter() - started
    assert len(fleet.rooms) >= rooms and len(venue.reports) == ROOMS_PER_VENUE
    return {
        "rooms": rooms, "days": days, "hourly_rows": rows, "generate_s": round(generated, 1),
        "hourly_table_mb": round(hourly_bytes / 2**20), "database_mb": round(database_bytes / 2**20),
        "bytes_per_hourly_row": round(hourly_bytes / rows),
        "fleet_report_all_rooms_s": round(whole, 2), "fleet_report_one_venue_s": round(one_venue, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="an empty PostgreSQL database this benchmark may fill")
    parser.add_argument("--rooms", type=int, default=1000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--events-hours", type=int, default=24, help="hours of per-window events for the events sync")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    figures = {"machine": f"{platform.machine()}, {platform.python_version()}", "when": datetime.now(UTC).isoformat()}
    figures["sync"] = bench_sync(args.url, args.days, args.events_hours)
    print(json.dumps(figures["sync"]), flush=True)
    figures["scale"] = bench_scale(args.url, args.rooms, args.days)
    print(json.dumps(figures["scale"]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
