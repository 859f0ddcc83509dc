"""`occupancy report`: busy hours, weekdays, capacity alerts and charts from the traffic log.

Exit codes: 0 report printed; 1 nothing logged in the range (one line on stderr, nothing on stdout);
2 missing file, not an occupancy log, or unreadable (one line on stderr).
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from ..config import Config, override
from ..errors import ConfigError, StorageError
from ..reporting.plot import FIGURE_DPI, FIGURE_INCHES, plot_report
from ..reporting.queries import in_zone
from ..reporting.render import RENDERERS
from ..reporting.summary import BY_CHOICES, DEFAULT_ALERT_SECONDS, DEFAULT_MIN_COVERAGE, build_report
from .arguments import minutes_or_seconds
from .output import write_stdout


def parse_when(text: str) -> datetime:
    """argparse type for --since/--until: an ISO date or date-time; no offset means the report's time zone."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date or time (e.g. 2026-11-23 or 2026-11-23T18:00), got {text!r}") from None


def write_output(path: str, text: str) -> None:
    try:
        with open(path, "w", encoding="utf-8") as out:
            out.write(text)
    except OSError as exc:
        raise StorageError(f"{path}: cannot write the report ({exc.strerror or exc})") from None


def _before(since: datetime, until: datetime, utc: bool) -> bool:
    """Whether --since is before --until; one with an offset and one without are compared in the report's zone."""
    if (since.tzinfo is None) != (until.tzinfo is None):
        since, until = in_zone(since, utc), in_zone(until, utc)
    return since < until


def add_command(subparsers) -> None:
    p = subparsers.add_parser(
        "report", help="busy hours, weekdays, capacity alerts and charts from the traffic log",
        description="Summarize the traffic log: per period coverage, mean and peak speakers, speech minutes and "
                    "shares of time with 1+/2+/3+ speakers; busiest and quietest well-covered periods; weekdays; "
                    "capacity alerts; gaps. Times are local (the machine's time zone; set TZ to change) unless "
                    "--utc. Exit 1 when nothing is logged in the range.",
    )
    p.add_argument("--db", metavar="PATH", help="SQLite log (default: storage.database in the config)")
    p.add_argument("--since", type=parse_when, metavar="DATE", help="start, inclusive: 2026-11-23 or 2026-11-23T18:00")
    p.add_argument("--until", type=parse_when, metavar="DATE", help="end, exclusive (a date alone: its midnight)")
    p.add_argument("--by", choices=BY_CHOICES, default="hour", help="period of the main table (default: %(default)s)")
    p.add_argument("--format", choices=[*RENDERERS, "html"], default="table", help="output (default: %(default)s; "
                   "csv holds only the period table; html: one self-contained page with the charts, for a phone)")
    p.add_argument("--output", metavar="FILE", help="write the report into FILE instead of printing it")
    p.add_argument("--plot", metavar="FILE.png", help="also write a weekday x hour heatmap and a daily chart "
                   f"into one PNG ({FIGURE_INCHES[0] * FIGURE_DPI:.0f}x{FIGURE_INCHES[1] * FIGURE_DPI:.0f} px)")
    p.add_argument("--top", type=int, default=5, metavar="N", help="busiest/quietest periods and gaps listed (default: 5)")
    p.add_argument("--utc", action="store_true", help="show and read times in UTC instead of local time")
    p.add_argument("--min-coverage", type=minutes_or_seconds, default=DEFAULT_MIN_COVERAGE, metavar="MIN",
                   help="monitored minutes per hour below which a period is flagged LOW (default: %(default)g)")
    p.add_argument("--capacity-limit", type=int, metavar="N",
                   help="alert when the smoothed count stays above N (default: monitor.capacity_limit; 0: no alerts)")
    p.add_argument("--alert-seconds", type=minutes_or_seconds, default=DEFAULT_ALERT_SECONDS, metavar="S",
                   help="shortest alert; shorter dips below the limit do not end one (default: %(default)g)")
    p.add_argument("--from", dest="from_url", metavar="URL", help="report on a fleet from its central PostgreSQL "
                   "(postgresql://..., filled by `occupancy sync`) instead of --db: a table of every room")
    p.add_argument("--venue", action="append", metavar="NAME", help="with --from: only this venue's rooms, each with "
                   "its full report (repeat for several)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace, config: Config) -> int:
    limit = override(config, "monitor", capacity_limit=args.capacity_limit).monitor.capacity_limit  # its range
    if args.plot and Path(args.plot).suffix.lower() != ".png":  # before the report, which would print and then fail
        raise ConfigError(f"--plot {args.plot}: the picture is a PNG: name a file ending in .png")
    if args.since and args.until and not _before(args.since, args.until, args.utc):
        raise ConfigError(f"--since {args.since:%Y-%m-%d %H:%M} must be before --until {args.until:%Y-%m-%d %H:%M}")
    if args.from_url:
        if args.db:
            raise ConfigError("--db and --from: report on one local log or on the central store, not both")
        from .fleet import run_fleet_report

        return run_fleet_report(args, config)
    if args.venue:
        raise ConfigError("--venue: only with --from (a local log holds one venue)")
    db_path = args.db or config.storage.database
    report = build_report(
        db_path, since=args.since, until=args.until, by=args.by, utc=args.utc, top=max(0, args.top),
        min_coverage=args.min_coverage, capacity_limit=limit, alert_seconds=args.alert_seconds,
        venue=config.monitor.venue,
    )
    if report is None:
        span = "".join(f" {word} {when}" for word, when in (("since", args.since), ("until", args.until)) if when)
        print(f"occupancy: no traffic logged in {db_path}{span}", file=sys.stderr)
        return 1
    if args.format == "html":
        from ..reporting.html import render_html  # matplotlib only when the page is asked for

        text = render_html(report, max(0, args.top))
    else:
        text = RENDERERS[args.format](report, max(0, args.top))
    if args.output:
        write_output(args.output, text)
    else:
        write_stdout(text)
    if args.plot:
        plot_report(report, args.plot)
    return 0
