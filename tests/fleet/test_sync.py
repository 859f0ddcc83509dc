"""`occupancy sync` against a real PostgreSQL server: everything pushed, nothing twice, grown hours updated,
a sync cut in the middle (the process killed, the server stopped) caught up by the next, boxes told apart,
passwords never printed."""

from __future__ import annotations

import signal
import sys
import time
from datetime import timedelta

import psycopg
import pytest

from occupancy.cli import main
from occupancy.engine.store import open_store

from .conftest import PASSWORD
from .logs import (
    T0,
    box_config,
    central_count,
    central_hours,
    events_at,
    local_hours,
    log_run,
    occupancy,
    spawn,
    spread_hours,
)


def sync(config, url: str, *extra: str):
    proc = occupancy("--config", str(config), "sync", "--to", url, *extra)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_sync_pushes_every_hour_and_run_once_and_updates_an_hour_that_grew(tmp_path, central):
    config = box_config(tmp_path / "box", "Library", "Reading room")
    log = tmp_path / "box" / "occupancy.db"
    log_run(log, spread_hours(30))
    log_run(log, events_at(T0 + timedelta(hours=40), [1, 2, 2, 3]))
    first = sync(config, central)
    assert "synced 31 hours, 2 runs" in first.stdout
    assert central_hours(central, "Library", "Reading room") == local_hours(log)

    again = sync(config, central)
    assert "synced 0 hours, 0 runs" in again.stdout
    assert central_count(central, "hourly") == 31 and central_count(central, "runs") == 2

    # the last hour grows, a new hour starts, from a new run
    log_run(log, events_at(T0 + timedelta(hours=40, minutes=30), [3] * 50) + events_at(T0 + timedelta(hours=41), [1]))
    grown = sync(config, central)
    assert "synced 2 hours, 1 runs" in grown.stdout
    assert central_hours(central, "Library", "Reading room") == local_hours(log)
    with psycopg.connect(central) as conn:
        (windows,) = conn.execute("SELECT windows FROM occupancy.hourly WHERE hour_utc = %s",
                                  [T0 + timedelta(hours=40)]).fetchone()
    assert windows == 54


def test_a_replay_that_replaced_the_newest_events_is_pushed_again(tmp_path, central):
    """`replay --replace` deletes the newest events; the replacing run's events then reuse their ids."""
    config = box_config(tmp_path / "box", "Shop")
    log = tmp_path / "box" / "occupancy.db"
    log_run(log, events_at(T0, [0] * 20))
    sync(config, central)
    log_run(log, events_at(T0, [3] * 20), replace=True)
    db = open_store(log)
    assert db.execute("SELECT max(id) FROM events").fetchone()[0] == 20  # the ids were reused
    db.close()
    sync(config, central)
    assert central_hours(central, "Shop") == local_hours(log)
    assert central_hours(central, "Shop")[next(iter(local_hours(log)))][3] == 3  # peak_count of the new run


def test_events_are_pushed_only_when_asked_and_replaced_per_hour(tmp_path, central):
    config = box_config(tmp_path / "box", "Cafe")
    log = tmp_path / "box" / "occupancy.db"
    log_run(log, spread_hours(3, per_hour=10))
    sync(config, central)
    assert central_count(central, "events") == 0
    assert "30 events" in sync(config, central, "--events", "--full").stdout
    log_run(log, events_at(T0 + timedelta(hours=2, minutes=5), [2] * 5))
    sync(config, central, "--events")
    assert central_count(central, "events") == 35  # the grown hour's events replaced, not added twice


def test_the_venue_must_be_named_and_two_logs_cannot_claim_one_room(tmp_path, central):
    unnamed = box_config(tmp_path / "unnamed", "My venue")
    log_run(tmp_path / "unnamed" / "occupancy.db", spread_hours(2))
    proc = occupancy("--config", str(unnamed), "sync", "--to", central)
    assert proc.returncode == 2 and "monitor.venue" in proc.stderr and "Traceback" not in proc.stderr

    first, second = box_config(tmp_path / "a", "Gym", "Hall"), box_config(tmp_path / "b", "Gym", "Hall")
    for folder in ("a", "b"):
        log_run(tmp_path / folder / "occupancy.db", spread_hours(2))
    sync(first, central)
    proc = occupancy("--config", str(second), "sync", "--to", central)
    assert proc.returncode == 2 and "'Gym' room 'Hall' is already synced there from another log" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    sync(second, central, "--take-over")
    other_room = box_config(tmp_path / "c", "Gym", "Pool")
    log_run(tmp_path / "c" / "occupancy.db", spread_hours(1))
    sync(other_room, central)
    assert central_count(central, "boxes") == 2


def test_passwords_are_never_printed(tmp_path, postgres, central):
    config = box_config(tmp_path / "box", "Museum")
    log_run(tmp_path / "box" / "occupancy.db", spread_hours(2))
    database = central.partition("@/")[2].partition("?")[0]
    assert "synced 2 hours" in sync(config, postgres.url(database, PASSWORD)).stdout  # a right one in the URL
    wrong = postgres.url(database, "Wrong-Pw-9981")
    proc = occupancy("--config", str(config), "sync", "--to", wrong, env_extra={"PGPASSFILE": "/nonexistent"})
    assert proc.returncode == 2
    assert "Wrong-Pw-9981" not in proc.stderr + proc.stdout and "occupancy:***@" in proc.stderr
    assert "password authentication failed" in proc.stderr
    proc = occupancy("--config", str(config), "sync", "--to", postgres.url(database, PASSWORD).replace("host=", "host=/nowhere"))
    assert proc.returncode == 2 and PASSWORD not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_without_psycopg_sync_says_what_to_install(tmp_path, monkeypatch, capsys):
    config = box_config(tmp_path / "box", "Library")
    log_run(tmp_path / "box" / "occupancy.db", spread_hours(1))
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as in a venue install: import psycopg fails
    assert main(["--config", str(config), "sync", "--to", "postgresql://fleet@db.example/fleet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'occupancy[fleet]'" in err


def big_box(tmp_path, hours: int = 4000):
    config = box_config(tmp_path / "box", "Station", "Hall")
    log = tmp_path / "box" / "occupancy.db"
    log_run(log, spread_hours(hours, per_hour=1))
    return config, log


def wait_mid_sync(proc, url: str, total: int) -> int:
    """Poll the central store until some but not all hours arrived; that count."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        pushed = central_count(url, "hourly")
        if 0 < pushed < total:
            return pushed
        assert proc.poll() is None, f"the sync ended before it could be cut: {proc.communicate()}"
        time.sleep(0.01)
    raise AssertionError("the sync pushed nothing in 120 s")


def test_a_killed_sync_loses_nothing_and_the_next_catches_up(tmp_path, central):
    config, log = big_box(tmp_path)
    proc = spawn("--config", str(config), "sync", "--to", central, "--batch-hours", "10", "--events")
    pushed = wait_mid_sync(proc, central, 4000)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert pushed <= central_count(central, "hourly") < 4000
    log_run(log, events_at(T0 + timedelta(hours=5000), [2, 2]))  # the monitor went on meanwhile
    sync(config, central, "--events")
    assert central_hours(central, "Station", "Hall") == local_hours(log)
    assert central_count(central, "events") == 4002


def test_a_server_stopped_mid_sync_loses_nothing_and_the_next_catches_up(tmp_path, postgres, central):
    config, log = big_box(tmp_path)
    proc = spawn("--config", str(config), "sync", "--to", central, "--batch-hours", "10")
    wait_mid_sync(proc, central, 4000)
    postgres.stop("immediate")  # the network gone, the server crashed
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        postgres.start()
    assert proc.returncode == 2, err
    assert err.startswith("occupancy: error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert central_count(central, "hourly") < 4000
    sync(config, central)
    assert central_hours(central, "Station", "Hall") == local_hours(log)


def test_syncs_while_the_writer_logs_never_stop_it_and_miss_nothing(tmp_path, central):
    """The monitor's own writer thread logs windows as fast as it can while syncs run beside it."""
    from occupancy.engine.store import RunInfo, StoreWriter

    config = box_config(tmp_path / "box", "Station", "Platform")
    log = tmp_path / "box" / "occupancy.db"
    writer = StoreWriter(log, RunInfo(source="replay", device="test.wav", model="test", compute="cpu", hop_s=1.0),
                         flush_interval_s=0.05)
    writer.start()
    windows = iter(events_at(T0, [i % 4 for i in range(24 * 3600)]))  # more than the syncs leave time for
    syncs = 0
    while syncs < 3:
        for _ in range(2000):
            writer.put(next(windows))
        proc = spawn("--config", str(config), "sync", "--to", central)
        while proc.poll() is None:  # the writer goes on while the sync runs
            writer.put(next(windows))
            time.sleep(0.001)
        assert proc.returncode == 0, proc.communicate()
        syncs += 1
    writer.stop()
    assert writer.error is None
    sync(config, central)
    assert central_hours(central, "Station", "Platform") == local_hours(log)


def test_a_missing_or_malformed_store_url_is_a_one_line_error_without_its_password(tmp_path):
    config = box_config(tmp_path / "box", "Library")
    log_run(tmp_path / "box" / "occupancy.db", spread_hours(1))
    proc = occupancy("--config", str(config), "sync")
    assert proc.returncode == 2 and "storage.sync_url" in proc.stderr and proc.stderr.count("\n") == 1
    bad = box_config(tmp_path / "bad", "Library", sync_url="mysql://fleet:Hunter-22@db/fleet")
    proc = occupancy("--config", str(bad), "sync")
    assert proc.returncode == 2 and "storage.sync_url: must be a postgresql://" in proc.stderr
    assert "Hunter-22" not in proc.stderr
    proc = occupancy("--config", str(config), "sync", "--to", "mysql://fleet:Hunter-22@db/fleet")
    assert proc.returncode == 2 and "--to: must be a postgresql://" in proc.stderr and "Hunter-22" not in proc.stderr


def wait_until_equal(url: str, log, venue: str, room: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if central_hours(url, venue, room) == local_hours(log):
                return
        except psycopg.errors.UndefinedTable:  # the first sync has not made the schema yet
            pass
        assert time.monotonic() < deadline, "the central store never caught up"
        time.sleep(0.2)


def test_sync_every_keeps_going_through_a_server_outage(tmp_path, postgres, central):
    config = box_config(tmp_path / "box", "Depot", "Yard")
    log = tmp_path / "box" / "occupancy.db"
    log_run(log, spread_hours(5))
    proc = spawn("--config", str(config), "sync", "--to", central, "--every", "0.3")
    try:
        wait_until_equal(central, log, "Depot", "Yard")
        postgres.stop()
        log_run(log, events_at(T0 + timedelta(hours=10), [3, 3]))  # the monitor goes on while the server is away
        time.sleep(1.5)
        postgres.start()
        wait_until_equal(central, log, "Depot", "Yard")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert "retrying in 0.3 s" in err and "Traceback" not in err
