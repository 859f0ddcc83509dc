"""`occupancy sync` (this box's log to the fleet's central PostgreSQL) and the fleet form of `occupancy report`
(`--from postgresql://...`). Both need the fleet extra (psycopg): without it they say what to install."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from ..config import Config
from ..errors import ConfigError, OccupancyError
from .arguments import minutes_or_seconds

log = logging.getLogger(__name__)


def add_command(subparsers) -> None:
    from ..fleet.sync import DEFAULT_BATCH_HOURS

    p = subparsers.add_parser(
        "sync", help="push this box's log to the fleet's central PostgreSQL (see docs/fleet.md)",
        description="Push this box's hourly rows and runs (and with --events its per-window events) to a central "
                    "PostgreSQL, keyed by monitor.venue and monitor.room. Run it as often as you like: nothing is "
                    "pushed twice, an hour that grew is updated, and a sync cut anywhere is caught up by the next. "
                    "The password comes from the URL, $PGPASSWORD or ~/.pgpass and is never printed.",
    )
    p.add_argument("--db", metavar="PATH", help="SQLite log (default: storage.database in the config)")
    p.add_argument("--to", metavar="URL", help="postgresql://user@host:port/database (default: storage.sync_url)")
    p.add_argument("--events", action="store_true", help="also push the per-window events (86,400 rows a day at the "
                   "default hop: for capacity alerts in central reports; see docs/fleet.md for the cost)")
    p.add_argument("--every", type=minutes_or_seconds, metavar="S", help="keep running, syncing every S seconds (a failed "
                   "sync is logged and retried at the next turn)")
    p.add_argument("--full", action="store_true", help="push the whole log again (after the central store was "
                   "restored from an older backup)")
    p.add_argument("--take-over", action="store_true", help="this log replaces the one that synced this venue and "
                   "room before (a new box, a new log)")
    p.add_argument("--batch-hours", type=int, default=DEFAULT_BATCH_HOURS, metavar="N",
                   help="hourly rows per central transaction (default: %(default)s)")
    p.set_defaults(handler=run_sync)


def run_sync(args: argparse.Namespace, config: Config) -> int:
    from ..fleet.central import check_url
    from ..fleet.sync import check_venue, sync_log

    url = args.to or config.storage.sync_url
    if not url:
        raise ConfigError("occupancy sync: no central store: pass --to postgresql://user@host/database or set "
                          "storage.sync_url in config.yaml")
    check_url(url, "--to" if args.to else "storage.sync_url")
    if args.every is not None and args.every <= 0:
        raise ConfigError(f"--every: must be more than 0 seconds, got {args.every:g}")
    if args.batch_hours < 1:
        raise ConfigError(f"--batch-hours: must be 1 or more, got {args.batch_hours}")
    check_venue(config.monitor.venue)
    db_path = args.db or config.storage.database

    def once() -> None:
        result = sync_log(db_path, url, config.monitor.venue, config.monitor.room, events=args.events,
                          batch_hours=args.batch_hours, full=args.full, take_over=args.take_over)
        print(f"synced {result.hours} hours, {result.runs} runs" + (f", {result.events} events" if args.events else "")
              + f" in {result.seconds:.1f} s", flush=True)

    if args.every is None:
        once()
        return 0
    while True:
        try:
            once()
            args.full = False  # --full: the first sync that succeeds pushes everything again, not every one
        except OccupancyError as exc:
            log.error("%s (retrying in %g s)", exc, args.every)
        time.sleep(args.every)


def run_fleet_report(args: argparse.Namespace, config: Config) -> int:
    """`occupancy report --from URL [--venue NAME ...]`: the fleet table, and each named venue's full report."""
    from ..fleet.central import check_url
    from ..fleet.reader import fleet_report
    from ..reporting.fleet import FLEET_RENDERERS, plot_fleet

    check_url(args.from_url, "--from")
    if args.format not in FLEET_RENDERERS:
        raise ConfigError(f"--format {args.format}: not available for fleet reports yet "
                          f"(--from offers {', '.join(FLEET_RENDERERS)})")
    limit = config.monitor.capacity_limit if args.capacity_limit is None else args.capacity_limit
    fleet = fleet_report(
        args.from_url, args.venue or [], since=args.since, until=args.until, by=args.by, utc=args.utc,
        top=max(0, args.top), min_coverage=args.min_coverage, capacity_limit=limit, alert_seconds=args.alert_seconds,
    )
    if fleet is None:
        print("occupancy: no traffic stored in the central store for that range", file=sys.stderr)
        return 1
    sys.stdout.write(FLEET_RENDERERS[args.format](fleet, max(0, args.top)))
    if args.plot:
        plot_fleet(fleet, args.plot)
    return 0
