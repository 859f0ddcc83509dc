"""The dashboard: a real replay of the bundled sample through the real pipeline, key bindings, and
layout snapshots from a fixed sequence of events (so the pictures are reproducible)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import signal
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from textual.widgets import DataTable, Digits, Static

from occupancy.engine.capture import FileSource
from occupancy.config import Config, ModelConfig, MonitorConfig
from occupancy.ui.dashboard import (
    HealthPanel,
    HelpScreen,
    HistoryPlot,
    HourlyBars,
    LevelMeter,
    OccupancyApp,
    ProbabilityBars,
    ReportScreen,
    logging_to,
)
from occupancy.errors import StorageError
from occupancy.models import default_model_path, load_counter, sex_model_path
from occupancy.engine.pipeline import Pipeline
from occupancy.sample import SAMPLE_AUDIO, load_truth
from occupancy.engine.store import open_store, start_run, write_batch
from occupancy.engine.events import CountEvent

FIXED_NOW = datetime(2026, 11, 25, 14, 30, tzinfo=UTC)


def fixed_events() -> list[CountEvent]:
    """A deterministic day: one window a minute from 08:00, then every second for the last 10 min."""
    starts = [FIXED_NOW.replace(hour=8) + timedelta(minutes=m) for m in range(6 * 60 + 20)]
    starts += [starts[-1] + timedelta(seconds=s) for s in range(1, 600)]
    events = []
    for i, start in enumerate(starts):
        count = (i // 37 + i // 11) % 4 if start.hour != 12 else 0
        probs = [0.05] * 4
        probs[count] = 0.85
        events.append(
            CountEvent(
                start=start, end=start + timedelta(seconds=1), seconds=1.0, count=count,
                probabilities=tuple(probs), smoothed=float(min(3, count + 1)),
                level_dbfs=-30.0 + 10 * math.sin(i / 7), latency_ms=20.0 + i % 9, captured_at=0.0,
            )
        )
    return events


class FixedSource:
    name = "USB Audio Device"
    kind = "microphone"
    status = "capturing from USB Audio Device at 16000 Hz"


class FixedCounter:
    name = "counter"
    device = "cpu"
    classes = [0, 1, 2, 3]


class FixedPipeline:
    """Stands in for the Pipeline in layout tests: `start()` logs the fixed events into a real
    SQLite file and hands them to the subscribers, as the worker would."""

    source = FixedSource()
    counter = FixedCounter()
    error = None

    def __init__(self, db_path: Path, events: list[CountEvent]):
        self.db_path = db_path
        self.events = events
        self.subscribers = []

    def subscribe(self, callback) -> None:
        self.subscribers.append(callback)

    def start(self) -> None:
        db = open_store(self.db_path)
        run_id = start_run(db, source="microphone", device=self.source.name, model="counter", compute="cpu", hop_s=1.0)
        write_batch(db, run_id, self.events, self.input_stats())
        db.close()
        for event in self.events:
            for callback in self.subscribers:
                callback(event)

    def wait(self, timeout=None) -> bool:
        return False

    def input_stats(self) -> dict[str, int]:
        return {"overflows": 0, "dropped": 2, "restarts": 0}


def fixed_app(tmp_path: Path, monkeypatch, capacity_limit: int = 0) -> OccupancyApp:
    monkeypatch.chdir(tmp_path)  # a relative log path: the same text in every snapshot
    config = dataclasses.replace(Config(), monitor=MonitorConfig(capacity_limit=capacity_limit, venue="The Crown"))
    pipeline = FixedPipeline(Path("occupancy.db"), fixed_events())
    return OccupancyApp(pipeline, config, clock=lambda: FIXED_NOW, utc=True)


def shown_count(app: OccupancyApp) -> str:
    return app.main.query_one("#count", Digits).value


def as_shown(count: int) -> str:
    """How the big digits show a count: the top class means 'three or more'."""
    return "3+" if count == 3 else str(count)


async def drawn(pilot) -> None:
    """Let the posted events arrive, then draw them (instead of waiting for the refresh timer)."""
    await pilot.pause()
    pilot.app.refresh_view()
    await pilot.pause()


async def replayed(pilot) -> None:
    """Wait for the app's replay to end, close its pipeline (flushing the log, as quitting does), draw."""
    while not pilot.app.pipeline.wait(0):
        await pilot.pause(0.05)
    await asyncio.to_thread(pilot.app.pipeline.close)
    await drawn(pilot)


# --- a real replay of the bundled sample through the real pipeline ------------------------------

MODEL = default_model_path()
needs_model = pytest.mark.skipif(
    not MODEL.is_file(), reason="models/counter.safetensors is absent (train it with `occupancy train`)"
)
REPLAY_START = datetime(2026, 11, 25, 14, 59, 30, tzinfo=UTC)  # the sample spans two hours


@pytest.fixture(scope="module")
def counter():
    return load_counter(MODEL, device="cpu")


def replay_app(tmp_path: Path, counter, *, realtime: bool = False) -> OccupancyApp:
    config = Config()
    source = FileSource([SAMPLE_AUDIO], realtime=realtime, start=REPLAY_START)
    pipeline = Pipeline(config, source, counter, db_path=tmp_path / "occupancy.db")
    return OccupancyApp(pipeline, config, utc=True)


def logged(db_path: Path) -> tuple[list[dict], list[dict]]:
    """The events and hourly rows the log holds, read through a connection of our own."""
    db = open_store(db_path, readonly=True)
    try:
        events = list(db.query("SELECT * FROM events ORDER BY start_utc"))
        for row in events:
            row["probabilities"] = json.loads(row["probabilities"])
        return events, list(db.query("SELECT * FROM hourly ORDER BY hour_utc"))
    finally:
        db.close()


@needs_model
async def test_replay_of_the_sample_shows_the_logged_counts(tmp_path, counter):
    app = replay_app(tmp_path, counter)
    async with app.run_test(size=(80, 24)) as pilot:
        await replayed(pilot)
        events, hours = logged(app.db_path)
        assert len(events) == len(load_truth())  # one window per second of the sample
        last = events[-1]

        assert shown_count(app) == as_shown(last["count"])
        assert f"smoothed {last['smoothed']:.1f}" in str(app.query_one("#smoothed", Static).content)
        bars = app.query_one(ProbabilityBars)
        assert bars.probabilities == pytest.approx(last["probabilities"], abs=0.011)
        assert bars.render().plain.splitlines()[-1].lstrip().startswith("3+")

        end = datetime.fromisoformat(last["end_utc"])
        plot = app.query_one(HistoryPlot)
        assert [count for _, count, _ in plot.points] == [e["count"] for e in events]
        assert [age for age, _, _ in plot.points] == pytest.approx(
            [(end - datetime.fromisoformat(e["start_utc"])).total_seconds() for e in events]
        )

        assert [h["hour_utc"][11:13] for h in hours] == ["14", "15"]
        means = app.query_one(HourlyBars).means
        for row in hours:
            assert means[int(row["hour_utc"][11:13])] == pytest.approx(row["mean_count"], abs=0.005)
        busiest = max(hours, key=lambda row: row["mean_count"])
        assert f"busiest {busiest['hour_utc'][11:13]}:00" in str(app.query_one("#busiest", Static).content)

        assert app.query_one(LevelMeter).level == pytest.approx(last["level_dbfs"], abs=0.51)
        health = app.query_one(HealthPanel).health
        assert health.windows == len(events)
        assert health.latency_ms == pytest.approx(last["latency_ms"], abs=0.01)
        assert health.model == f"{counter.name} on cpu"
        assert f"finished: {len(events)} windows" in str(app.query_one("#status", Static).content)


@needs_model
async def test_quit_mid_replay_leaves_a_consistent_log(tmp_path, counter):
    app = replay_app(tmp_path, counter, realtime=True)
    async with app.run_test(size=(80, 24)) as pilot:
        while app.received < 3:
            await pilot.pause(0.1)
        await pilot.press("q")
    assert app.return_code == 0
    assert await asyncio.to_thread(app.finish) == 0
    events, hours = logged(app.db_path)
    assert app.received <= len(events) < len(load_truth())  # stopped early, nothing seen was lost
    assert sum(h["windows"] for h in hours) == len(events)
    db = open_store(app.db_path, readonly=True)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("SELECT stopped_utc FROM runs").fetchone()[0] is not None
    db.close()


async def test_a_log_that_cannot_be_opened_is_raised_after_the_app_exits(tmp_path):
    config = Config()
    source = FileSource([SAMPLE_AUDIO], start=REPLAY_START)
    app = OccupancyApp(Pipeline(config, source, FixedCounter(), db_path=tmp_path), config)  # a folder
    async with app.run_test(size=(80, 24)):
        pass
    assert isinstance(app.start_error, StorageError)
    with pytest.raises(StorageError):
        app.finish()


# --- keys -----------------------------------------------------------------------------------------


async def test_p_pauses_the_display_but_not_the_counting(tmp_path, monkeypatch):
    app = fixed_app(tmp_path, monkeypatch)
    async with app.run_test(size=(80, 24)) as pilot:
        await drawn(pilot)
        before = shown_count(app)
        event = dataclasses.replace(app.latest, count=(app.latest.count + 1) % 4)
        await pilot.press("p")
        assert "PAUSED" in app.sub_title
        app.pipeline.subscribers[0](event)
        await drawn(pilot)
        assert shown_count(app) == before
        assert app.latest == event
        await pilot.press("p")
        await drawn(pilot)
        assert shown_count(app) == as_shown(event.count)


async def test_question_mark_shows_help_and_escape_closes_it(tmp_path, monkeypatch):
    app = fixed_app(tmp_path, monkeypatch)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        app.pipeline.subscribers[0](dataclasses.replace(app.latest, count=(app.latest.count + 1) % 4))
        await drawn(pilot)  # the display behind the help keeps updating
        assert shown_count(app) == as_shown(app.latest.count)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_r_shows_the_hourly_table_from_the_log(tmp_path, monkeypatch):
    app = fixed_app(tmp_path, monkeypatch)
    async with app.run_test(size=(80, 24)) as pilot:
        await drawn(pilot)
        await pilot.press("r")
        assert isinstance(app.screen, ReportScreen)
        await drawn(pilot)  # the refresh timer goes on behind the report
        table = app.screen.query_one(DataTable)
        _, hours = logged(app.db_path)
        assert table.row_count == len(hours)
        assert len(table.columns) == len(ReportScreen.COLUMNS)  # no women/men without model.sex
        newest = table.get_row_at(0)
        assert newest[0].startswith(hours[-1]["hour_utc"][:13].replace("T", " ") + ":00")
        assert newest[2:4] == [f"{hours[-1]['mean_count']:.2f}", str(hours[-1]["peak_count"])]
        await pilot.press("escape")
        assert not isinstance(app.screen, ReportScreen)


async def test_a_refresh_that_fires_while_the_app_shuts_down_draws_nothing(tmp_path, monkeypatch):
    """Quitting removes the screens' widgets before it stops the app's timers (CI met the refresh
    timer in between): a late tick or a late hourly read must not raise."""
    app = fixed_app(tmp_path, monkeypatch)
    async with app.run_test(size=(80, 24)) as pilot:
        await drawn(pilot)
    assert not app.main.query("#status")  # the widgets are gone, as during the shutdown
    app.refresh_view()
    app._show_hours(app.read_hours())


async def test_q_quits(tmp_path, monkeypatch):
    app = fixed_app(tmp_path, monkeypatch)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("q")
        assert not app.is_running
    assert app.return_code == 0


async def test_sigterm_quits_like_q(tmp_path, monkeypatch):
    app = fixed_app(tmp_path, monkeypatch)
    async with app.run_test(size=(80, 24)) as pilot:
        signal.raise_signal(signal.SIGTERM)  # a service manager stopping the monitor
        await pilot.pause()
        assert not app.is_running
    assert app.return_code == 0


async def test_capacity_warning_when_the_smoothed_count_passes_the_limit(tmp_path, monkeypatch):
    app = fixed_app(tmp_path, monkeypatch, capacity_limit=2)
    async with app.run_test(size=(80, 24)) as pilot:
        await drawn(pilot)
        for smoothed, over in ((2.0, False), (2.5, True), (1.0, False)):
            app.pipeline.subscribers[0](dataclasses.replace(app.latest, smoothed=smoothed))
            await drawn(pilot)
            assert app.query_one("#now").has_class("over") is over
            assert ("OVER CAPACITY" in str(app.query_one("#smoothed", Static).content)) is over


# --- layout ---------------------------------------------------------------------------------------


def test_layout_80x24(snap_compare, tmp_path, monkeypatch):
    assert snap_compare(fixed_app(tmp_path, monkeypatch), terminal_size=(80, 24), run_before=drawn)


def test_layout_120x40_over_capacity(snap_compare, tmp_path, monkeypatch):
    app = fixed_app(tmp_path, monkeypatch, capacity_limit=2)
    assert snap_compare(app, terminal_size=(120, 40), run_before=drawn)


# --- a microphone in trouble ----------------------------------------------------------------------


async def test_a_silent_microphone_shows_no_signal(tmp_path, monkeypatch):
    app = fixed_app(tmp_path, monkeypatch)
    async with app.run_test(size=(80, 24)) as pilot:
        await drawn(pilot)
        meter = app.main.query_one(LevelMeter)
        assert "dBFS" in meter.render().plain
        app.pipeline.subscribers[0](dataclasses.replace(app.latest, level_dbfs=-85.0))
        await drawn(pilot)
        assert "NO SIGNAL" in meter.render().plain


async def test_no_windows_for_a_while_shows_no_audio(tmp_path, monkeypatch):
    now = [FIXED_NOW]
    app = fixed_app(tmp_path, monkeypatch)
    app.clock = lambda: now[0]
    async with app.run_test(size=(80, 24)) as pilot:
        await drawn(pilot)
        meter = app.main.query_one(LevelMeter)
        now[0] += timedelta(seconds=3)
        await drawn(pilot)
        assert "NO AUDIO" not in meter.render().plain
        now[0] += timedelta(seconds=9)
        await drawn(pilot)
        assert "NO AUDIO for 12 s" in meter.render().plain
        app.pipeline.subscribers[0](app.latest)  # audio flows again
        await drawn(pilot)
        assert "dBFS" in meter.render().plain


async def test_warnings_logged_by_other_threads_become_notifications(tmp_path, monkeypatch):
    app = fixed_app(tmp_path, monkeypatch)
    with logging_to(app):
        async with app.run_test(size=(80, 24), notifications=True) as pilot:
            thread = threading.Thread(target=logging.getLogger("occupancy.engine.capture").warning, args=("input lost",))
            thread.start()
            thread.join()
            await pilot.pause()
            assert [str(toast.render()) for toast in app.screen.query("Toast")] == ["input lost"]


@pytest.mark.skipif(not sex_model_path().exists(), reason="no sex-composition model shipped in models/")
async def test_model_sex_shows_the_latest_windows_women_and_men(tmp_path):
    config = dataclasses.replace(Config(), model=ModelConfig(sex=True))
    source = FileSource([SAMPLE_AUDIO], realtime=False, start=REPLAY_START)
    pipeline = Pipeline(config, source, load_counter(sex_model_path(), device="cpu"), db_path=tmp_path / "o.db")
    app = OccupancyApp(pipeline, config, utc=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await replayed(pilot)
        last = logged(app.db_path)[0][-1]
        assert last["women"] + last["men"] == last["count"]
        assert f"women {last['women']} · men {last['men']}" in str(app.query_one("#smoothed", Static).content)
        await pilot.press("r")  # the hourly table gains the women and men columns
        table = app.screen.query_one(DataTable)
        assert [str(c.label) for c in table.columns.values()][-2:] == ["women", "men"]
        hour = app.read_hours()[-1]
        assert table.get_row_at(0)[-2:] == [f"{hour['mean_women']:.2f}", f"{hour['mean_men']:.2f}"]
        assert abs(hour["mean_women"] + hour["mean_men"] - hour["mean_count"]) < 1e-9


async def test_monitor_voices_shows_the_latest_windows_figure_beside_the_count(tmp_path, counter):
    """A real replay of the sample with the distinct-voices stage: the figure of the last window is shown,
    marked approximate, with its horizon; the hourly table gains the voices columns."""
    from occupancy.engine.loading import load_voices_from_config

    config = dataclasses.replace(Config(), monitor=MonitorConfig(voices=True, voices_minutes=3))
    source = FileSource([SAMPLE_AUDIO], realtime=False, start=REPLAY_START)
    pipeline = Pipeline(config, source, counter, db_path=tmp_path / "o.db", voices=load_voices_from_config(config.monitor))
    app = OccupancyApp(pipeline, config, utc=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await replayed(pilot)
        events, hours = logged(app.db_path)
        assert events[-1]["voices"] >= 1
        now = app.query_one("#smoothed", Static)
        assert f"voices (3 min) ≈ {events[-1]['voices']}" in str(now.content)
        assert now.content_region.height >= 3  # smoothed, limit and the figure all fit
        await pilot.press("r")
        table = app.screen.query_one(DataTable)
        assert [str(c.label) for c in table.columns.values()][-2:] == ["voices", "voices peak"]
        assert table.get_row_at(0)[-1] == str(hours[-1]["distinct_voices_peak"])
