"""The Pipeline object the commands and the dashboard share: subscribers, and failures that stop a
run with their own error while everything counted so far stays logged."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from occupancy.engine.capture import FileSource
from occupancy.config import Config
from occupancy.errors import StorageError
from occupancy.engine.pipeline import Pipeline
from occupancy.sample import SAMPLE_AUDIO, load_truth
from occupancy.engine.store import open_store, runs
from tests.engine.test_worker import BrokenCounter, LevelCounter

T0 = datetime(2026, 11, 25, 20, 0, 0, tzinfo=UTC)


def test_subscribers_see_every_event_and_a_broken_one_does_not_stop_the_log(tmp_path):
    db = tmp_path / "log.db"
    pipeline = Pipeline(Config(), FileSource([SAMPLE_AUDIO], start=T0), LevelCounter(), db_path=db)
    seen = []

    def broken(event):
        raise ValueError("display gone")

    pipeline.subscribe(broken)
    pipeline.subscribe(seen.append)
    assert not pipeline.wait(0)  # not started yet
    pipeline.run()
    assert len(seen) == len(load_truth())
    assert open_store(db)["events"].count == len(seen)
    assert pipeline.wait(0) and pipeline.error is None


def test_a_log_that_cannot_open_fails_the_start_and_releases_the_source(tmp_path):
    source = FileSource([SAMPLE_AUDIO], start=T0)
    pipeline = Pipeline(Config(), source, LevelCounter(), db_path=tmp_path)  # a folder, not a file
    with pytest.raises(StorageError, match="cannot open the database file"):
        pipeline.start()
    source._thread.join(10)
    assert not source._thread.is_alive()
    pipeline.close()  # nothing to do, no error


def test_a_failing_model_ends_the_run_with_its_error(tmp_path):
    db = tmp_path / "log.db"
    pipeline = Pipeline(Config(), FileSource([SAMPLE_AUDIO], start=T0, realtime=True), BrokenCounter(), db_path=db)
    with pytest.raises(RuntimeError, match="model exploded"):
        pipeline.run()
    (run,) = runs(open_store(db))
    assert run["stopped_utc"] is not None and run["windows"] == 0
