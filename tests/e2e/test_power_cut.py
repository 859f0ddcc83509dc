"""A power cut under a max-speed replay, on a real file system: the log is written to an ext4 disk on
a loop device. At random moments the writer is frozen (SIGSTOP: once every thread is stopped, each
system call it made has returned) and the disk image is copied as it stands: that is the disk a
power cut at that moment leaves, without what still sat unwritten in the kernel's page cache. Each
copy is then mounted (ext4 replays its journal) and the log opened (SQLite recovers its -wal):
everything committed before the cut is there, nothing that was not committed in the end, and the
hourly rollup still equals the events.

The default suite cuts 5 times; `-m slow` cuts 20 times.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest

from occupancy.models import default_model_path
from occupancy.sample import SAMPLE_AUDIO
from tests.e2e.test_engine import start_occupancy
from tests.engine.test_store import _count_events, assert_log_consistent
from tests.filesystems import ext4_disk, mounted

pytestmark = pytest.mark.skipif(not default_model_path().is_file(), reason="needs the shipped model")

COPIES = 80  # two hours of the sample: a replay still writing (across hour boundaries) when the cuts are done


def frozen(pid: int) -> bool:
    """Every thread of the process is stopped (none is still inside a system call)."""
    tasks = Path(f"/proc/{pid}/task")
    return all((task / "stat").read_text().rsplit(")", 1)[1].split()[0] == "T" for task in tasks.iterdir())


def events(db: Path) -> tuple[list[tuple], int]:
    """The log's events, and the windows its run says it logged."""
    with closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT id, run_id, start_utc, count, smoothed FROM events ORDER BY id").fetchall()
        return rows, conn.execute("SELECT windows FROM runs").fetchone()[0]


@pytest.mark.parametrize("cuts", [5, pytest.param(20, marks=pytest.mark.slow)])
def test_a_power_cut_keeps_every_committed_window_and_a_consistent_log(tmp_path, cuts):
    rng = random.Random(cuts)
    config = tmp_path / "config.yaml"
    config.write_text("storage:\n  flush_interval_s: 0.05\n")  # many small commits: many moments to cut between
    images = []  # (image, windows committed when it was taken)
    with ext4_disk(tmp_path, size_mb=16) as disk:
        db = disk / "log.db"
        writer = start_occupancy("--config", config, "replay", *[SAMPLE_AUDIO] * COPIES, "--speed", "max",
                                 "--start", "2026-11-25T10:59:00+00:00", "--db", db, folder=tmp_path)
        try:
            deadline = time.monotonic() + 300
            while not (db.exists() and _count_events(db)) and time.monotonic() < deadline:
                time.sleep(0.01)  # the model is loading; the cuts fall while windows are written
            while len(images) < cuts and writer.poll() is None:
                time.sleep(rng.uniform(0, 0.4))
                writer.send_signal(signal.SIGSTOP)
                while not frozen(writer.pid):
                    time.sleep(0.001)
                image = tmp_path / f"cut-{len(images)}.img"
                shutil.copyfile(tmp_path / "disk.img", image)  # the disk as the cut leaves it
                images.append((image, _count_events(db)))
                writer.send_signal(signal.SIGCONT)
            writer.send_signal(signal.SIGTERM)  # enough: the rest of the replay would only take time
            _, err = writer.communicate(timeout=300)
        finally:
            writer.kill()
        assert writer.returncode == 0, err[-2000:]
        final, _ = events(db)
    assert len(images) == cuts, f"the replay ended after {len(images)} cuts"
    for image, committed in images:
        with mounted(image, tmp_path / "after-cut") as after:
            recovered, windows = events(after / "log.db")
            assert len(recovered) >= committed  # every committed window survived
            assert recovered == final[: len(recovered)]  # and nothing that was not committed in the end
            assert windows == len(recovered)  # the run's total was committed with its windows
            assert_log_consistent(after / "log.db")  # hourly equals events
        os.unlink(image)
