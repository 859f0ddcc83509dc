"""The dashboard beside the service: a log another process writes, followed as the dashboard's source.

`LogFollower` has the interface the dashboard expects of a Pipeline (subscribe, start, wait, error,
input_stats, source, counter, db_path, close), but it counts nothing and writes nothing: a thread
reads the log every POLL_S (reporting/watch.py: never the writer's lock, never a `-wal`/`-shm` left
behind) and hands each new window of the newest run to the subscribers as a CountEvent. Its
`source.status` says which run it watches, and when that run has stopped or the log has gone quiet.
Closing it (`q`) stops only the reading; the service goes on.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from ..engine.events import CountEvent
from ..errors import StorageError
from ..reporting.summary import hours_of
from ..reporting.watch import latest_run, run_events, watching

log = logging.getLogger(__name__)

POLL_S = 0.5
QUIET_S = 10.0  # no new window for this long from a run still open: the service may have stalled
BACKLOG = 3600  # at most this many of a run's latest windows are read when the dashboard starts


class _Source:
    def __init__(self):
        self.name = "the service"
        self.status = "reading the log"


class _Counter:
    """What the dashboard shows of the model: the run's model name, its compute device, the count classes
    (the shipped counter's 0, 1, 2, 3+: the log does not say which classes a model had)."""

    classes = (0, 1, 2, 3)

    def __init__(self, name: str = "", device: str = ""):
        self.name, self.device = name, device


def event_from_row(row: dict) -> CountEvent:
    return CountEvent(
        start=datetime.fromisoformat(row["start_utc"]), end=datetime.fromisoformat(row["end_utc"]),
        seconds=row["seconds"], count=row["count"], probabilities=tuple(json.loads(row["probabilities"])),
        smoothed=row["smoothed"], level_dbfs=row["level_dbfs"], latency_ms=row["latency_ms"], captured_at=0.0,
        women=row["women"], men=row["men"], voices=row["voices"],
    )


class LogFollower:
    """Follows the newest run in the log at `db_path` (a new run, the service restarted, is followed in turn)."""

    def __init__(self, db_path: str | Path, *, clock: Callable[[], float] = time.monotonic):
        self.db_path = Path(db_path).expanduser()
        self.source = _Source()
        self.counter = _Counter()
        self.error: Exception | None = None
        self.run: dict | None = None
        self._clock = clock
        self._subscribers: list[Callable[[CountEvent], None]] = []
        self._stats: dict[str, int] = {}
        self._last_id = 0
        self._last_new = clock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="occupancy-follow", daemon=True)

    def subscribe(self, callback: Callable[[CountEvent], None]) -> None:
        self._subscribers.append(callback)

    def start(self) -> None:
        """Read once now (so a missing or foreign log fails at once, as a StorageError), then follow."""
        self.poll()
        self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Never finished on its own: the service decides when its run ends, and the status says so."""
        return False

    def input_stats(self) -> dict[str, int]:
        return dict(self._stats)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def read_hours(self, since: datetime | None, until: datetime | None, *, utc: bool) -> list[dict]:
        """The dashboard's hourly table, read the same way as the windows."""
        try:
            with watching(self.db_path) as db:
                return hours_of(db, self.db_path, since, until, utc=utc)
        except StorageError as exc:
            log.debug("hours not readable now: %s", exc)
            return []

    def _follow(self) -> None:
        while not self._stop.wait(POLL_S):
            try:
                self.poll()
            except StorageError as exc:  # the writer changing the file under a read, the log replaced: next time
                self.source.status = f"cannot read the log now ({exc}); retrying"
            except Exception as exc:  # noqa: BLE001 - shown on the dashboard instead of dying silently
                self.error = exc
                return

    def poll(self) -> None:
        """Read the newest run and its windows since the last poll; update the status."""
        with watching(self.db_path) as db:
            run = latest_run(db)
            if run is None:
                self.source.status = "no run in the log yet: waiting for the service"
                return
            if self.run is None or run["id"] != self.run["id"]:
                self._last_id = 0
            rows = run_events(db, run["id"], self._last_id, BACKLOG)
        self.run = run
        self.counter = _Counter(run["model"], run["compute"])
        self.source.name = f"run {run['id']}: {run['source']} {run['device']}".strip()
        self._stats = {key: run[key] for key in ("overflows", "dropped", "restarts")}
        now = self._clock()
        if rows:
            self._last_id = rows[-1]["id"]
            self._last_new = now
            for row in rows:
                event = event_from_row(row)
                for callback in self._subscribers:
                    callback(event)
        self.source.status = self._status(run, now - self._last_new)

    def _status(self, run: dict, quiet_s: float) -> str:
        """Two lines' worth of the dashboard's status panel."""
        if run["stopped_utc"]:
            return f"the service stopped at {_local(run['stopped_utc'])} (run {run['id']}): its last windows"
        if quiet_s >= QUIET_S:
            return f"the log is quiet: no window for {quiet_s:.0f} s (run {run['id']} open); is the service running?"
        return f"watching run {run['id']} ({run['source']}, since {_local(run['started_utc'])}), read-only"


def _local(iso_utc: str) -> str:
    """The time in the machine's zone: the clock time alone when it is today's."""
    moment = datetime.fromisoformat(iso_utc).astimezone()
    return f"{moment:%H:%M:%S}" if moment.date() == datetime.now().astimezone().date() else f"{moment:%Y-%m-%d %H:%M}"
