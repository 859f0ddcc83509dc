"""`occupancy dashboard`: the dashboard beside the service. A real headless replay (its own process,
paced in real time) writes the log while the real app, driven by Pilot, only reads it."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import soundfile as sf

from occupancy.config import Config
from occupancy.engine.audio import read_audio
from occupancy.engine.store import finish_run, open_store, start_run, write_batch
from occupancy.errors import StorageError
from occupancy.models.files import default_model_path
from occupancy.sample import SAMPLE_AUDIO
from occupancy.ui.dashboard import HelpScreen, OccupancyApp, ReportScreen, short_path
from occupancy.ui.follow import QUIET_S, LogFollower
from tests.ui.test_dashboard import FIXED_NOW, FixedPipeline, drawn, fixed_app, fixed_events

REPO = Path(__file__).resolve().parents[2]
SECONDS = 12  # of the sample, replayed in real time by the "service"


def start_service(tmp_path: Path, db: Path) -> subprocess.Popen:
    clip = tmp_path / "clip.flac"
    sf.write(clip, read_audio(SAMPLE_AUDIO)[: SECONDS * 16000], 16000)
    return subprocess.Popen(
        [sys.executable, "-m", "occupancy.cli", "replay", clip, "--speed", "realtime", "--headless", "--db", db,
         "--start", "2026-11-25T14:00:00+00:00"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_windows(service: subprocess.Popen, db: Path, n: int) -> None:
    """Until the running service has logged `n` windows."""
    deadline = time.monotonic() + 60
    while windows_logged(db) < n:
        assert service.poll() is None, service.stderr.read()
        assert time.monotonic() < deadline, "the service logged nothing within 60 s"
        time.sleep(0.1)


def windows_logged(db: Path) -> int:
    if not Path(f"{db}-wal").exists():
        return 0
    connection = open_store(db, readonly=True)  # the writer is running: its -wal and -shm are there
    try:
        return connection.execute("SELECT count(*) FROM events").fetchone()[0]
    except sqlite3.OperationalError:  # the writer is still creating its tables
        return 0
    finally:
        connection.close()


def status(app: OccupancyApp) -> str:
    return str(app.main.query_one("#status").render())


async def until(pilot, condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await pilot.pause(0.1)
    await drawn(pilot)


@pytest.fixture
def service(tmp_path):
    """The "service": a headless replay of SECONDS of the sample in real time, in its own process,
    into tmp_path/service.db; yielded once it has logged two windows, killed at the end if still running."""
    if not default_model_path().is_file():
        pytest.skip("needs the shipped counter")
    db = tmp_path / "service.db"
    process = start_service(tmp_path, db)
    try:
        wait_for_windows(process, db, 2)
        yield process, db
    finally:
        process.kill()
        process.wait()


async def test_the_dashboard_follows_the_service_and_q_leaves_it_running(service, tmp_path):
    process, db = service
    config = Config()
    app = OccupancyApp(LogFollower(db), config, utc=True, watching=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.received >= 2)
        first = app.received
        await until(pilot, lambda: app.received >= first + 3)  # refreshing as rows arrive
        assert "watching run 1 (replay" in status(app)
        assert "watching" in app.title and str(db) in app.title
        assert app.main.query_one("#count").value != "-"
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.press("q")
    app.finish()
    assert process.poll() is None, "q stopped the service"  # it goes on counting

    app = OccupancyApp(LogFollower(db), config, utc=True, watching=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: "the service stopped" in status(app), timeout=60)
        assert app.received == SECONDS  # every window the service logged, from the newest run
    app.finish()
    assert process.wait(30) == 0, process.stderr.read()
    assert f"{SECONDS} windows logged" in process.stderr.read()
    # the writer removed its -wal and -shm when it closed; the dashboard left none behind
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("service.db")) == ["service.db"]


async def test_a_service_killed_mid_run_shows_as_a_quiet_log(service):
    process, db = service
    app = OccupancyApp(LogFollower(db), Config(), utc=True, watching=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.received >= 2)
        process.kill()  # kill -9: its run is never closed
        process.wait()
        await until(pilot, lambda: "the log is quiet" in status(app), timeout=QUIET_S + 10)
        assert "is the service running?" in status(app)
    app.finish()


async def test_a_log_nothing_writes_is_read_without_leaving_files_beside_it(tmp_path):
    db = tmp_path / "occupancy.db"
    events = fixed_events()
    store = open_store(db)
    run_id = start_run(store, source="microphone", device="USB Audio Device", model="counter", compute="cpu", hop_s=1.0)
    write_batch(store, run_id, events, {"overflows": 0, "dropped": 0, "restarts": 0})
    finish_run(store, run_id)
    store.close()
    before = db.stat().st_mtime_ns, sorted(os.listdir(tmp_path))
    app = OccupancyApp(LogFollower(db), Config(), utc=True, watching=True, clock=lambda: FIXED_NOW)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.received == len(events))
        await until(pilot, lambda: any(app.main.query_one("#hourly").means))  # the hours, read the same way
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, ReportScreen))
        assert app.screen.hours  # the hourly table, read without the writer's way of opening the log
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is app.main)
        assert "the service stopped at" in status(app)
    app.finish()
    assert (db.stat().st_mtime_ns, sorted(os.listdir(tmp_path))) == before


def test_an_open_run_without_new_windows_is_called_quiet(tmp_path):
    db = tmp_path / "occupancy.db"
    store = open_store(db)
    run_id = start_run(store, source="microphone", device="USB", model="counter", compute="cpu", hop_s=1.0)
    write_batch(store, run_id, fixed_events()[:5], {})
    store.close()
    now = [100.0]
    follower = LogFollower(db, clock=lambda: now[0])
    seen = []
    follower.subscribe(seen.append)
    follower.poll()
    assert len(seen) == 5 and follower.source.status.startswith("watching run 1 (microphone")
    now[0] += QUIET_S + 1
    follower.poll()
    assert len(seen) == 5 and follower.source.status.startswith("the log is quiet: no window for 11 s")


async def test_a_missing_log_is_raised_after_the_app_exits(tmp_path):
    app = OccupancyApp(LogFollower(tmp_path / "none.db"), Config(), watching=True)
    async with app.run_test(size=(80, 24)):
        pass
    with pytest.raises(StorageError, match="no occupancy log yet"):
        app.finish()


def test_the_dashboard_command_refuses_a_missing_log_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "occupancy.cli", "dashboard", "--db", tmp_path / "none.db"], cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2 and "none.db: no occupancy log yet" in result.stderr
    assert "Traceback" not in result.stderr


# --- item 5 of issue 27: the demo notice stays, the log path keeps its meaning ---------------------


class DemoSource:
    name = "sample.flac"
    kind = "demo"
    status = "replaying sample.flac"


async def test_the_no_microphone_notice_stays_on_the_dashboard(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pipeline = FixedPipeline(Path("occupancy.db"), fixed_events()[:30])
    pipeline.source = DemoSource()
    app = OccupancyApp(pipeline, Config(), clock=lambda: FIXED_NOW + timedelta(minutes=5), utc=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await drawn(pilot)
        notice = app.main.query_one("#notice")
        assert notice.display and "No microphone: this is a demo replay" in str(notice.render())
        await pilot.pause(1.0)  # still there after notifications have timed out and the view refreshed
        app.refresh_view()
        assert notice.display and notice.region.height >= 1
        app.save_screenshot("demo.svg", str(tmp_path))
    app = OccupancyApp(FixedPipeline(Path("mic.db"), fixed_events()[:30]), Config(), utc=True)  # a microphone
    async with app.run_test(size=(80, 24)) as pilot:
        await drawn(pilot)
        assert not app.main.query_one("#notice").display


def test_the_log_path_keeps_its_file_name_and_nearest_folders():
    home = os.path.expanduser("~")
    path = f"{home}/.local/share/occupancy/occupancy.db"
    assert short_path(path, 60) == "~/.local/share/occupancy/occupancy.db"
    assert short_path(path, 28) == "~/…/occupancy/occupancy.db"
    assert short_path("/var/lib/occupancy/occupancy.db", 28) == "/…/occupancy/occupancy.db"
    assert short_path("/var/lib/occupancy/a-very-long-log-file-name.db", 10) == "a-very-long-log-file-name.db"
    assert "…re/" not in short_path(path, 28)



def test_layout_80x24_demo(snap_compare, tmp_path, monkeypatch):
    """The demo's notice takes one line at 80 columns and the panels still fit (no scrolling)."""
    app = fixed_app(tmp_path, monkeypatch)
    app.pipeline.source = DemoSource()
    assert snap_compare(app, terminal_size=(80, 24), run_before=drawn)


def test_another_programs_database_is_refused_unchanged(tmp_path):
    foreign = tmp_path / "shop.db"
    with sqlite3.connect(foreign) as connection:
        connection.execute("CREATE TABLE till (amount REAL)")
    connection.close()
    before = foreign.read_bytes()
    with pytest.raises(StorageError, match="not an occupancy log"):
        LogFollower(foreign).start()
    assert foreign.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["shop.db"]
