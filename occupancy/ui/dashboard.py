"""The venue's live view: a Textual app over a running Pipeline.

The pipeline's worker thread hands each CountEvent to `OccupancyApp`'s subscriber, which only posts
a message (never blocks capture or inference). Messages update the app's state; a timer at
`dashboard.refresh_hz` copies that state into the widgets, so a burst of events (a replay at max
speed, a worker catching up) costs one repaint, and widgets whose data did not change are not
repainted at all (reactive attributes), hence no flicker. Today's hourly traffic is read from the
SQLite log with `occupancy report`'s hourly table (its own read-only connection) in a worker thread,
only when new windows have arrived, so the UI thread never waits on the database.

`run_dashboard(pipeline, config)` is what `occupancy monitor` and `occupancy replay --dashboard`
call: it starts the pipeline inside the app, and closes it (flushing the log) when the app quits.
While the app owns the terminal, warnings and errors from the log become notifications on screen
(written to stderr they would garble it).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import statistics
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.screen import ModalScreen, Screen
from textual.widget import Widget
from textual.widgets import DataTable, Digits, Footer, Header, Static

from ..config import Config
from ..errors import OccupancyError, StorageError
from ..engine.events import CountEvent, count_label
from ..engine.pipeline import STOP_SIGNALS, stopped_by_signals
from ..reporting.summary import hourly_table

log = logging.getLogger(__name__)

NO_SIGNAL_DBFS = -70.0  # below this a window is near-silence: a dead, muted or unplugged microphone
METER_FLOOR_DBFS = -90.0  # left end of the level meter
LOUD_DBFS = -3.0  # above this the input is close to clipping
STALLED_S = 5.0  # no window for this long while capturing: the input has stopped delivering audio
LATENCY_WINDOWS = 60  # windows the median latency is taken over
BLOCKS = " ▁▂▃▄▅▆▇█"  # eighths of a character cell, for vertical bars


def vertical_bars(
    values: Sequence[float | None], top: float, height: int, bar_width: int = 1, gap: int = 0
) -> list[Text]:
    """Rows (top row first) of vertical bars scaled to `top`; a None value (no data) shows a dim dot."""
    rows = []
    for row in reversed(range(height)):
        line = Text()
        for value in values:
            if value is None:
                line.append(("·" if row == 0 else " ") * bar_width, "dim")
            else:
                eighths = round(min(max(value, 0.0), top) / top * height * 8) if top > 0 else 0
                line.append(BLOCKS[min(8, max(0, eighths - row * 8))] * bar_width, "bold")
            line.append(" " * gap)
        rows.append(line)
    return rows


def horizontal_bar(fraction: float, width: int) -> str:
    """A bar `width` cells long filled to `fraction` (0-1), in eighths of a cell."""
    eighths = round(min(max(fraction, 0.0), 1.0) * width * 8)
    full, part = divmod(eighths, 8)
    partial = " ▏▎▍▌▋▊▉"[part] if part else ""
    return ("█" * full + partial).ljust(width, "░")[:width]


def short_path(path: str | Path, width: int) -> str:
    """The path with the home folder as '~'; when longer than `width`, its start ('~/' or '/') and as many
    whole folders before the file name as fit, the ones left out as '…': never a name cut in two (a
    file name longer than `width` is given whole)."""
    text = str(path)
    home = os.path.expanduser("~")
    if text.startswith(home + os.sep):
        text = "~" + text[len(home):]
    if len(text) <= width:
        return text
    head, _, rest = text.partition(os.sep)
    parts = rest.split(os.sep)
    kept = [parts.pop()]
    while parts and len(os.sep.join([head, "…", parts[-1], *kept])) <= width:
        kept.insert(0, parts.pop())
    return os.sep.join([head, "…", *kept]) if len(os.sep.join([head, "…", *kept])) <= width else kept[-1]


class CountReceived(Message):
    """A counted window, posted from the pipeline's worker thread."""

    def __init__(self, event: CountEvent):
        super().__init__()
        self.event = event


class LogNotice(Message):
    """A warning or error logged by any thread, to be shown as a notification."""

    def __init__(self, level: int, text: str):
        super().__init__()
        self.level = level
        self.text = text


class _NoticeHandler(logging.Handler):
    def __init__(self, app: App):
        super().__init__(logging.WARNING)
        self.app = app

    def emit(self, record: logging.LogRecord) -> None:
        self.app.post_message(LogNotice(record.levelno, record.getMessage()))


@contextmanager
def logging_to(app: App) -> Iterator[None]:
    """Send warnings and errors to `app` as notifications instead of the root logger's handlers."""
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers[:] = [_NoticeHandler(app)]
    try:
        yield
    finally:
        root.handlers[:] = saved


class ProbabilityBars(Widget):
    """One horizontal bar per count class with its probability; the most likely class in bold."""

    DEFAULT_CSS = "ProbabilityBars { height: 1fr; }"

    probabilities: reactive[tuple[float, ...]] = reactive(tuple)
    labels: reactive[tuple[str, ...]] = reactive(tuple)

    def render(self) -> Text:
        if not self.probabilities:
            return Text("waiting for the first window…", style="dim")
        best = max(range(len(self.probabilities)), key=self.probabilities.__getitem__)
        bar_width = max(1, self.size.width - 10)
        lines = []
        for i, (label, p) in enumerate(zip(self.labels, self.probabilities)):
            style = "bold" if i == best else "dim"
            lines.append(Text(f"{label:>3} {horizontal_bar(p, bar_width)} {p:4.0%}", style=style))
        return Text("\n").join(lines)


class HistoryPlot(Widget):
    """Counts over the last minutes, one column per time slice (mean count of the windows it
    overlaps), on a fixed 0..top scale so a quiet room looks quiet."""

    # (seconds from the window's start to the latest window's end, count, seconds the window covers)
    points: reactive[tuple[tuple[float, int, float], ...]] = reactive(tuple)
    span_s: reactive[float] = reactive(600.0)
    top: reactive[int] = reactive(3)

    def column_values(self, columns: int) -> list[float | None]:
        """Mean count in each of `columns` equal slices of the span, oldest first (None: no window)."""
        sums, counts = [0.0] * columns, [0] * columns
        scale = columns / self.span_s
        for age, count, seconds in self.points:
            first = max(0, math.floor(columns - age * scale))
            last = min(columns, math.ceil(columns - (age - seconds) * scale))
            for column in range(first, last):
                sums[column] += count
                counts[column] += 1
        return [s / n if n else None for s, n in zip(sums, counts)]

    def render(self) -> Text:
        height = max(1, self.size.height)
        return Text("\n").join(vertical_bars(self.column_values(self.size.width), self.top, height))


class HourlyBars(Widget):
    """Mean people speaking in each hour of the day (local time), with the hour labels below."""

    means: reactive[tuple[float | None, ...]] = reactive(tuple)  # one per hour of the day, None: no data
    top: reactive[int] = reactive(3)

    def render(self) -> Text:
        if not self.means:
            return Text("")
        cell = max(1, self.size.width // len(self.means))  # columns per hour
        bar_width = max(1, cell - 1)
        rows = vertical_bars(self.means, self.top, max(1, self.size.height - 1), bar_width, cell - bar_width)
        step = -(-3 // cell)  # label every `step` hours, so 'HH ' labels never touch
        labels = "".join(f"{h:02d}".ljust(cell * step) for h in range(0, len(self.means), step))
        return Text("\n").join([*rows, Text(labels, style="dim")])


class LevelMeter(Widget):
    """Input level in dBFS as a bar: 'NO SIGNAL' when the microphone is silent (dead or muted),
    'NO AUDIO' when no window has arrived for a while (unplugged, stream stalled)."""

    DEFAULT_CSS = "LevelMeter { height: 1; }"

    level: reactive[float | None] = reactive(None)
    stalled_s: reactive[int | None] = reactive(None)  # seconds without a window, None while they flow

    def render(self) -> Text:
        if self.stalled_s is not None:
            return Text(f"NO AUDIO for {self.stalled_s} s", style="bold red")
        if self.level is None:
            return Text("level: waiting for audio", style="dim")
        fraction = (self.level - METER_FLOOR_DBFS) / -METER_FLOOR_DBFS
        bar = horizontal_bar(fraction, max(1, self.size.width - 11))
        if self.level < NO_SIGNAL_DBFS:
            return Text(f"{bar} NO SIGNAL", style="bold red")
        return Text(f"{bar} {self.level:4.0f} dBFS", style="bold yellow" if self.level > LOUD_DBFS else "green")


@dataclass(frozen=True)
class Health:
    """What the health panel shows."""

    device: str = ""
    input_stats: tuple[tuple[str, int], ...] = ()
    latency_ms: float | None = None
    median_latency_ms: float | None = None
    windows: int = 0
    model: str = ""
    database: str = ""
    uptime: str = "0:00:00"


class HealthPanel(Widget):
    """Overflows, drops, latency, model, log file and uptime: is the monitor itself healthy?"""

    health: reactive[Health] = reactive(Health)

    def render(self) -> Text:
        h, width = self.health, max(10, self.size.width)
        latency = "—" if h.latency_ms is None else f"{h.latency_ms:.0f} ms (median {h.median_latency_ms:.0f})"
        input_stats = "  ".join(f"{name} {value}" for name, value in h.input_stats) or "no drops possible"
        lines = [
            Text(f"input   {h.device}"),
            Text(input_stats, style="bold red" if any(v for _, v in h.input_stats) else ""),
            Text(f"latency {latency}"),
            Text(f"windows {h.windows}   uptime {h.uptime}"),
            Text(f"model   {h.model}"),
        ]
        for line in lines:
            line.truncate(width, overflow="ellipsis")
        log_line = Text(f"log     {short_path(h.database, width - 8)}")  # whole: it wraps rather than lose the name
        return Text("\n").join([*lines, log_line])


class HelpScreen(ModalScreen):
    """What each panel means and the keys; any of escape, ? or h closes it."""

    BINDINGS = [Binding("escape,question_mark,h", "dismiss", "Close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Static { width: 72; height: auto; max-height: 100%; border: round $accent;
                          background: $surface; padding: 0 1; }
    """

    TEXT = "\n".join([
        "[b]occupancy dashboard[/b]",
        "",
        "[b]Now[/b]: people speaking at once in the latest 1-s window (3+: three or more), the smoothed "
        "occupancy over the last few windows and the capacity limit (red when exceeded).",
        "[b]voices (N min) ≈[/b]: with --voices only, about how many different people spoke in the last N "
        "minutes (an estimate; voiceprints stay in memory, never written).",
        "[b]Count probabilities[/b]: how sure the model is of each count for that window.",
        "[b]History[/b]: mean count over the last minutes; dots: no audio.",
        "[b]Today by hour[/b]: mean people speaking in each hour, from the log; dots: hours not logged.",
        "[b]Input[/b]: microphone level. NO SIGNAL: the microphone is silent (dead or muted); "
        "NO AUDIO: nothing arrives (unplugged).",
        "[b]Health[/b]: input overflows, dropped audio blocks, device restarts, inference latency.",
        "",
        "{quit}  [b]p[/b] pause the display  [b]r[/b] hourly report  [b]?[/b] help  [b]escape[/b] back",
    ])
    QUIT = {False: "[b]q[/b] quit (the log is flushed)",
            True: "[b]q[/b] leave the dashboard (the service goes on counting)"}

    def __init__(self, watching: bool = False):
        super().__init__()
        self.watching = watching

    def compose(self) -> ComposeResult:
        yield Static(self.TEXT.replace("{quit}", self.QUIT[self.watching]))


class ReportScreen(Screen):
    """The hourly table from the log (`occupancy report`'s measures), newest hour first; women and men
    columns only when some hour has the `model.sex` estimate, distinct voices only when some hour has
    that figure, as in the report."""

    BINDINGS = [Binding("escape,r", "dismiss", "Back")]
    COLUMNS = ("hour", "minutes", "mean", "peak", "speech min", "1+", "2+", "3+")

    def __init__(self, hours: list[dict]):
        super().__init__()
        self.hours = hours

    def compose(self) -> ComposeResult:
        yield Header(icon="")
        yield DataTable(zebra_stripes=True, cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "hourly traffic from the log" if self.hours else "nothing logged yet"
        table = self.query_one(DataTable)
        sexed = any(hour["mean_women"] is not None for hour in self.hours)
        voiced = any(hour["peak_distinct_voices"] is not None for hour in self.hours)
        table.add_columns(*self.COLUMNS, *(("women", "men") if sexed else ()),
                          *(("voices", "voices peak") if voiced else ()))
        for hour in reversed(self.hours):
            estimate = (hour["mean_women"], hour["mean_men"]) if sexed else ()
            voices_mean, voices_peak = hour["mean_distinct_voices"], hour["peak_distinct_voices"]
            voices = ("-", "-") if voices_mean is None else (f"{voices_mean:.1f}", str(voices_peak))
            table.add_row(
                hour["period"] + (" (short)" if hour["low_coverage"] else ""),
                f"{hour['minutes_covered']:.1f}",
                f"{hour['mean_count']:.2f}",
                str(hour["peak_count"]),
                f"{hour['speech_minutes']:.1f}",
                *(f"{hour[key]:.0%}" for key in ("share_1plus", "share_2plus", "share_3plus")),
                *("-" if mean is None else f"{mean:.2f}" for mean in estimate),
                *(voices if voiced else ()),
            )


class OccupancyApp(App):
    """Live counts from a Pipeline; `clock` and `utc` make screenshots reproducible.

    Times are shown in the machine's local time zone, or in UTC with `utc=True` (as `occupancy
    report` does).
    The pipeline is anything with the Pipeline interface: subscribe, start, wait, error,
    input_stats(), source (name, status), counter (name, device, classes), db_path. With
    `watching`, it is a LogFollower (ui/follow.py): the windows come from a log the service writes,
    the hours are read its way, and its status (the run watched, stopped, quiet) is always shown.
    """

    TITLE = "occupancy"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("p", "pause", "Pause"),
        Binding("r", "report", "Report"),
        Binding("question_mark", "help", "Help", key_display="?"),
    ]
    CSS = """
    #top { height: 6; }
    #top.voices { height: 7; }
    #now, #probability-box, #history-box, #hourly-box, #input-box {
        border: round $primary; border-title-color: $text; padding: 0 1;
    }
    #now { width: 32; layout: horizontal; }
    #now.over { border: heavy $error; border-title-color: $error; }
    #count { width: 8; }
    #smoothed { width: 1fr; }
    #probability-box { width: 1fr; }
    #history-box { height: 1fr; min-height: 4; }
    #bottom { height: 2fr; min-height: 11; }
    #hourly-box { width: 1fr; }
    #hourly { height: 1fr; }
    #busiest { height: auto; }
    #input-box { width: 38; }
    #status { height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    #status.watching { height: 2; text-wrap: wrap; }
    #notice { height: auto; background: $warning 30%; color: $text; padding: 0 1; text-style: bold; }
    #notice.hidden { display: none; }
    """
    # One line at 80 columns; the README ("Install at a venue") says what to do.
    DEMO_NOTICE = "No microphone: this is a demo replay of the bundled sample, not this room"

    def __init__(
        self,
        pipeline,
        config: Config,
        *,
        db_path: str | Path | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        utc: bool = False,
        watching: bool = False,
    ):
        super().__init__()
        self.pipeline = pipeline
        self.watching = watching
        self.config = config
        self.db_path = Path(db_path or pipeline.db_path)
        self.clock = clock
        self.utc = utc
        self.tz = UTC if utc else None  # astimezone(None) is the machine's local time zone
        self.count_classes = list(pipeline.counter.classes)
        self.latest: CountEvent | None = None
        self.history: deque[CountEvent] = deque()
        self.latencies: deque[float] = deque(maxlen=LATENCY_WINDOWS)
        self.received = 0
        self._hours_read_at = -1  # `received` when today's hours were last read from the log
        self.paused = False
        self.start_error: OccupancyError | None = None
        # Whether the app's event loop takes SIGTERM/SIGHUP; run_dashboard takes them itself instead, and
        # sets stop_asked: the loop resets them to the default (kill) as it closes, before the log is flushed.
        self.loop_takes_signals = True
        self.stop_asked = False
        self._started = clock()
        self._last_window_at = self._started  # clock() when the latest event arrived
        pipeline.subscribe(self._on_event)

    # --- events in (worker thread) -------------------------------------------------------------

    def _on_event(self, event: CountEvent) -> None:
        """Called by the worker thread: hand the event to the UI thread and return at once."""
        self.post_message(CountReceived(event))

    def on_count_received(self, message: CountReceived) -> None:
        event = message.event
        self.latest = event
        self._last_window_at = self.clock()
        self.received += 1
        self.latencies.append(event.latency_ms)
        self.history.append(event)
        horizon = event.end - timedelta(minutes=self.config.dashboard.history_minutes)
        while self.history and self.history[0].start < horizon:
            self.history.popleft()

    def on_log_notice(self, message: LogNotice) -> None:
        severity = "error" if message.level >= logging.ERROR else "warning"
        self.notify(message.text, severity=severity, timeout=10)

    # --- layout --------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header(icon="")
        # The demo is said on screen for as long as it runs (a warning on stderr would sit behind the app).
        yield Static(self.DEMO_NOTICE, id="notice",
                     classes="" if getattr(self.pipeline.source, "kind", "") == "demo" else "hidden")
        with Horizontal(id="top"):
            with Horizontal(id="now"):
                yield Digits("-", id="count")
                yield Static(id="smoothed")
            with Vertical(id="probability-box"):
                yield ProbabilityBars(id="probabilities")
        with Vertical(id="history-box"):
            yield HistoryPlot(id="history")
        with Horizontal(id="bottom"):
            with Vertical(id="hourly-box"):
                yield HourlyBars(id="hourly")
                yield Static(id="busiest")
            with Vertical(id="input-box"):
                yield LevelMeter(id="level")
                yield Static(id="status")
                yield HealthPanel(id="health")
        yield Footer()

    def on_mount(self) -> None:
        self.main = self.screen  # the timer updates it even while the help or report screen is on top
        dashboard = self.config.dashboard
        self.title = f"occupancy · {self.config.monitor.venue}" + (f" · watching {self.db_path}" if self.watching else "")
        self.main.query_one("#now").border_title = "Now"
        self.main.query_one("#probability-box").border_title = "Count probabilities"
        self.main.query_one("#history-box").border_title = f"Last {dashboard.history_minutes} min"
        self.main.query_one("#history-box").border_subtitle = "now"
        self.main.query_one("#hourly-box").border_title = "Today by hour (mean people)"
        self.main.query_one("#input-box").border_title = "Input & health"
        self.main.query_one("#top").set_class(self.config.monitor.voices, "voices")  # a line for the figure
        self.main.query_one("#status").set_class(self.watching, "watching")
        top = self.count_classes[-1]
        self.main.query_one(HistoryPlot).top = top
        self.main.query_one(HourlyBars).top = top
        self.main.query_one(HistoryPlot).span_s = dashboard.history_minutes * 60.0
        self.main.query_one(ProbabilityBars).labels = tuple(count_label(c, top) for c in self.count_classes)
        if not self.loop_takes_signals:
            self.set_interval(0.1, self._exit_when_asked)
        elif threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                asyncio.get_running_loop().add_signal_handler(sig, self.exit)
        try:
            self.pipeline.start()
        except OccupancyError as exc:
            self.start_error = exc
            self.exit(return_code=exc.exit_code)
            return
        self.refresh_view()
        self.set_interval(1.0 / dashboard.refresh_hz, self.refresh_view)

    def _exit_when_asked(self) -> None:
        if self.stop_asked:
            self.exit()

    # --- state out (UI thread) -----------------------------------------------------------------

    def refresh_view(self) -> None:
        """Copy the current state into the widgets (skipped while paused, and once quitting has begun:
        Textual removes the screens' widgets before it stops the app's timers)."""
        if not self.is_running:
            return
        self.sub_title = "PAUSED (p resumes)" if self.paused else ""
        if self.paused:
            return
        error, finished = self.pipeline.error, self.pipeline.wait(0)
        if error is not None:
            status = Text(f"error: {error}", style="bold red")
        elif self.watching:
            status = Text(self.pipeline.source.status, style="bold" if self.pipeline.source.status.startswith(
                ("the service stopped", "the log is quiet", "cannot read")) else "dim")
        elif finished:
            status = Text(f"finished: {self.received} windows", style="dim")
        else:
            status = Text(self.pipeline.source.status, style="dim")
        self.main.query_one("#status", Static).update(status)
        self._show_now()
        self._show_history()
        if self._hours_read_at != self.received:
            self._hours_read_at = self.received
            self._read_today((self.latest.start if self.latest else self.clock()).astimezone(self.tz))
        self._show_input(stalled=not finished and not self.watching)  # watching: the status says when it is quiet

    def _show_now(self) -> None:
        event, limit = self.latest, self.config.monitor.capacity_limit
        if event is None:
            return
        top = self.count_classes[-1]
        self.main.query_one("#count", Digits).update(count_label(event.count, top))
        over = limit > 0 and event.smoothed > limit
        lines = [f"smoothed {event.smoothed:.1f}", f"limit {limit}" if limit else "no capacity limit"]
        if event.women is not None:  # model.sex: a rough estimate, see docs/counter.md
            lines.append(f"women {event.women} · men {event.men}")
        if event.voices is not None:  # monitor.voices: an estimate, see docs/counter.md
            lines.append(f"voices ({self.config.monitor.voices_minutes} min) ≈ {event.voices}")
        self.main.query_one("#smoothed", Static).update(
            Text("\n").join([Text(line) for line in lines] + ([Text("OVER CAPACITY", "bold red")] if over else []))
        )
        now = self.main.query_one("#now")
        now.set_class(over, "over")
        now.border_subtitle = event.end.astimezone(self.tz).strftime("%H:%M:%S")
        self.main.query_one(ProbabilityBars).probabilities = tuple(round(p, 2) for p in event.probabilities)

    def _show_history(self) -> None:
        if self.latest is None:
            return
        end = self.latest.end
        self.main.query_one(HistoryPlot).points = tuple(
            ((end - e.start).total_seconds(), e.count, e.seconds) for e in self.history
        )

    @work(thread=True, exclusive=True, exit_on_error=False, group="hours")
    def _read_today(self, moment: datetime) -> None:
        """Read the hours of `moment`'s day from the log (the day of the latest window: a replay's own day)."""
        midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        hours = self.read_hours(midnight, midnight + timedelta(days=1))
        if self.is_running:
            self.call_from_thread(self._show_hours, hours)

    def _show_hours(self, hours: list[dict]) -> None:
        if not self.is_running:  # the read ended after quitting began
            return
        means: list[float | None] = [None] * 24
        for hour in hours:
            means[hour["local_start"].hour] = round(hour["mean_count"], 2)
        self.main.query_one(HourlyBars).means = tuple(means)
        # as `occupancy report` ranks them, except that a short hour still counts when it is all there is
        busiest = max(hours, key=lambda h: (not h["low_coverage"], h["mean_count"], h["speech_minutes"]), default=None)
        self.main.query_one("#busiest", Static).update("no traffic logged today" if busiest is None else (
            f"busiest {busiest['local_start']:%H:%M} · mean {busiest['mean_count']:.2f} · peak {busiest['peak_count']}"
            + (f" · {busiest['minutes_covered']:.1f} min logged" if busiest["low_coverage"] else "")
        ))

    def read_hours(self, since: datetime | None = None, until: datetime | None = None) -> list[dict]:
        """`occupancy report`'s hourly table (read-only, its own connection); [] until the log exists."""
        if self.watching:
            return self.pipeline.read_hours(since, until, utc=self.utc)
        try:
            return hourly_table(self.db_path, since, until, utc=self.utc)
        except StorageError as exc:
            log.debug("log not readable yet: %s", exc)
            return []

    def _show_input(self, stalled: bool) -> None:
        """`stalled`: whether a long silence from the pipeline means the input stopped (not finished)."""
        pipeline, latest = self.pipeline, self.latest
        meter = self.main.query_one(LevelMeter)
        meter.level = None if latest is None else round(latest.level_dbfs)
        silent_s = (self.clock() - self._last_window_at).total_seconds()
        meter.stalled_s = int(silent_s) if stalled and silent_s > STALLED_S else None
        self.main.query_one(HealthPanel).health = Health(
            device=pipeline.source.name,
            input_stats=tuple(pipeline.input_stats().items()),
            latency_ms=None if latest is None else latest.latency_ms,
            median_latency_ms=statistics.median(self.latencies) if self.latencies else None,
            windows=self.received,
            model=f"{pipeline.counter.name} on {pipeline.counter.device}",
            database=str(self.db_path),
            uptime=str(timedelta(seconds=int((self.clock() - self._started).total_seconds()))),
        )

    def finish(self) -> int:
        """After the app has exited: close the pipeline (count what is queued, flush the log, close
        the run) and return the exit code; raise the failure to start, or the pipeline's error."""
        if self.start_error is not None:
            raise self.start_error
        self.pipeline.close()
        return self.return_code or 0

    # --- keys ----------------------------------------------------------------------------------

    def action_pause(self) -> None:
        self.paused = not self.paused
        self.refresh_view()

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.watching))

    def action_report(self) -> None:
        self.push_screen(ReportScreen(self.read_hours()))


def watch_log(db_path: str | Path, config: Config) -> int:
    """`occupancy dashboard`: the dashboard over a log another process writes, until `q`; the writer goes on.
    A log that is missing or not an occupancy log is raised as a StorageError."""
    from .follow import LogFollower

    return _run_app(OccupancyApp(LogFollower(db_path), config, watching=True))


def run_dashboard(pipeline, config: Config) -> int:
    """Show the dashboard over `pipeline` (not started yet: the app starts it) until `q`, then
    close the pipeline. Returns the exit code; a failure to start (device, log) is raised."""
    return _run_app(OccupancyApp(pipeline, config), stop=pipeline.request_stop)


def _run_app(app: OccupancyApp, stop=None) -> int:
    """Run the app with the stop signals held from its first frame to the log's flush, so none can
    kill it: a signal only flags the app (and `stop`s a pipeline), no lock is taken in the handler."""
    app.loop_takes_signals = False

    def on_stop_signal() -> None:
        app.stop_asked = True
        if stop is not None:
            stop()

    with stopped_by_signals(on_stop_signal):
        try:
            with logging_to(app):
                app.run()
        finally:
            code = app.finish()
    return code
