"""The fleet's central PostgreSQL store: connecting (credentials from the URL, the PG* variables or
~/.pgpass, as libpq reads them; never printed), its schema and the migrations that build it.

Everything lives in the `occupancy` schema, so the store can share a database with other programs:

boxes    one row per box (a venue's room): id SERIAL PK, venue TEXT, room TEXT ('' for a venue's only
         room), box TEXT (the id of the local log that pushes it: two logs never claim one room), host TEXT,
         first_synced / last_synced TIMESTAMPTZ; UNIQUE (venue, room)
hourly   the boxes' hourly rollups, the columns of the local `hourly` table (occupancy/engine/store.py,
         without its derived ones), hour_utc TIMESTAMPTZ; PK (box_id, hour_utc)
runs     the boxes' runs, the local `runs` columns with the local id as run_id; PK (box_id, run_id)
events   (only what `sync --events` pushed) the local events without their probabilities and latency,
         indexed on (box_id, start_utc)
migrations  name TEXT PK, applied_utc: which of MIGRATIONS have run
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import ConfigError, MissingExtraError, StorageError

SCHEMA = "occupancy"
CONNECT_TIMEOUT_S = 10
_MIGRATION_LOCK = 0x6F636375  # pg_advisory_xact_lock key: two boxes' first syncs never migrate at once
_HOURLY_NUMBERS = (
    "windows", "seconds", "count_sum", "peak_count", "person_seconds", "seconds_1plus", "seconds_2plus",
    "seconds_3plus", "women_seconds", "men_seconds", "sex_estimated_seconds", "distinct_voices_peak",
    "distinct_voices_mean", "distinct_voices_seconds",
)
HOURLY_COLUMNS = ("hour_utc", *_HOURLY_NUMBERS)
RUN_COLUMNS = ("id", "started_utc", "stopped_utc", "source", "device", "model", "compute", "hop_s",
               "windows", "overflows", "dropped", "restarts")
EVENT_COLUMNS = ("id", "run_id", "start_utc", "end_utc", "seconds", "count", "smoothed", "level_dbfs",
                 "women", "men", "voices")

MIGRATIONS = [
    ("001_initial_schema", f"""
        CREATE TABLE {SCHEMA}.boxes (
            id SERIAL PRIMARY KEY,
            venue TEXT NOT NULL,
            room TEXT NOT NULL DEFAULT '',
            box TEXT NOT NULL,
            host TEXT NOT NULL,
            first_synced TIMESTAMPTZ NOT NULL DEFAULT now(),
            last_synced TIMESTAMPTZ,
            UNIQUE (venue, room)
        );
        CREATE TABLE {SCHEMA}.hourly (
            box_id INTEGER NOT NULL REFERENCES {SCHEMA}.boxes(id),
            hour_utc TIMESTAMPTZ NOT NULL,
            windows INTEGER NOT NULL,
            seconds DOUBLE PRECISION NOT NULL,
            count_sum BIGINT NOT NULL,
            peak_count SMALLINT NOT NULL,
            person_seconds DOUBLE PRECISION NOT NULL,
            seconds_1plus DOUBLE PRECISION NOT NULL,
            seconds_2plus DOUBLE PRECISION NOT NULL,
            seconds_3plus DOUBLE PRECISION NOT NULL,
            women_seconds DOUBLE PRECISION NOT NULL DEFAULT 0,
            men_seconds DOUBLE PRECISION NOT NULL DEFAULT 0,
            sex_estimated_seconds DOUBLE PRECISION NOT NULL DEFAULT 0,
            distinct_voices_peak INTEGER,
            distinct_voices_mean DOUBLE PRECISION,
            distinct_voices_seconds DOUBLE PRECISION,
            PRIMARY KEY (box_id, hour_utc)
        );
        CREATE TABLE {SCHEMA}.runs (
            box_id INTEGER NOT NULL REFERENCES {SCHEMA}.boxes(id),
            run_id INTEGER NOT NULL,
            started_utc TIMESTAMPTZ NOT NULL,
            stopped_utc TIMESTAMPTZ,
            source TEXT NOT NULL,
            device TEXT NOT NULL,
            model TEXT NOT NULL,
            compute TEXT NOT NULL,
            hop_s DOUBLE PRECISION NOT NULL,
            windows BIGINT NOT NULL,
            overflows BIGINT NOT NULL,
            dropped BIGINT NOT NULL,
            restarts BIGINT NOT NULL,
            PRIMARY KEY (box_id, run_id)
        );
        CREATE TABLE {SCHEMA}.events (
            box_id INTEGER NOT NULL REFERENCES {SCHEMA}.boxes(id),
            id BIGINT NOT NULL,
            run_id INTEGER NOT NULL,
            start_utc TIMESTAMPTZ NOT NULL,
            end_utc TIMESTAMPTZ NOT NULL,
            seconds REAL NOT NULL,
            count SMALLINT NOT NULL,
            smoothed REAL NOT NULL,
            level_dbfs REAL NOT NULL,
            women SMALLINT,
            men SMALLINT,
            voices SMALLINT
        );
        CREATE INDEX events_box_start ON {SCHEMA}.events (box_id, start_utc);
    """),
]


def import_psycopg():
    """psycopg, or a one-line MissingExtraError saying what to install (the venue install leaves it out)."""
    try:
        import psycopg
    except ModuleNotFoundError:
        raise MissingExtraError("the fleet commands need psycopg (PostgreSQL), which this install leaves out: "
                                "pip install 'occupancy[fleet]'") from None
    # psycopg warns, as it closes a pipeline on a lost connection, of the error it then raises: the one line
    # the user gets is ours (central_error), so its own warnings stay out of every fleet command's terminal.
    logging.getLogger("psycopg").setLevel(logging.ERROR)
    return psycopg


def check_url(url: str, what: str) -> str:
    """`url` when it is a postgresql:// URL; a one-line ConfigError naming `what` (the flag or key) otherwise."""
    if not url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(f"{what}: must be a postgresql://user@host/database URL, got {masked(url)!r}")
    return url


def masked(url: str) -> str:
    """The URL with its password (in the user part or a password= parameter) replaced by ***, for messages."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            userinfo, _, hostport = netloc.rpartition("@")
            netloc = f"{userinfo.partition(':')[0]}:***@{hostport}"
        query = urlencode([(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query)], safe="*/")
        return urlunsplit(parts._replace(netloc=netloc, query=query))
    except ValueError:  # not even a URL: show nothing of it
        return "(the central store's URL)"


def _secrets(url: str) -> list[str]:
    """The password texts a message must never carry."""
    try:
        parts = urlsplit(url)
        found = [parts.password] + [v for k, v in parse_qsl(parts.query) if k == "password"]
    except ValueError:
        return []
    return [s for s in found if s]


def central_error(url: str, exc: Exception) -> StorageError:
    """A psycopg error as one line naming the store (password masked), e.g. for a cut connection."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    for secret in _secrets(url):
        text = text.replace(secret, "***")
    return StorageError(f"{masked(url)}: {text}")


def connect(url: str):
    """A connection to the central store (autocommit off, times in UTC); libpq adds what the URL leaves out
    from the PG* variables and ~/.pgpass."""
    psycopg = import_psycopg()
    try:
        conn = psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S, application_name="occupancy")
        conn.execute("SET TIME ZONE 'UTC'")  # times come back in UTC, whatever the server's default zone
        conn.commit()
        return conn
    except psycopg.Error as exc:
        raise central_error(url, exc) from None


def target_name(conn) -> str:
    """user@host:port/database: names the store in the local log's sync cursor and in messages, never a password."""
    info = conn.info
    return f"{info.user}@{info.host}:{info.port}/{info.dbname}"


def migrate(conn) -> None:
    """Create or bring the central schema up to date, under an advisory lock (boxes syncing at once); a store
    already up to date is only read, so a box's role needs no right to create anything after the first sync."""
    if not pending_migrations(conn):
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [_MIGRATION_LOCK])
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        conn.execute(f"CREATE TABLE IF NOT EXISTS {SCHEMA}.migrations "
                     "(name TEXT PRIMARY KEY, applied_utc TIMESTAMPTZ NOT NULL DEFAULT now())")
        applied = {name for (name,) in conn.execute(f"SELECT name FROM {SCHEMA}.migrations")}
        for name, sql in MIGRATIONS:
            if name not in applied:
                conn.execute(sql)
                conn.execute(f"INSERT INTO {SCHEMA}.migrations (name) VALUES (%s)", [name])


def pending_migrations(conn) -> list[str]:
    """The migrations the store lacks (all of them where `occupancy sync` never ran), read without writing."""
    from psycopg.rows import tuple_row

    with conn.cursor(row_factory=tuple_row) as cur:
        (exists,) = cur.execute("SELECT to_regclass(%s) IS NOT NULL", [f"{SCHEMA}.migrations"]).fetchone()
        applied = {name for (name,) in cur.execute(f"SELECT name FROM {SCHEMA}.migrations")} if exists else set()
    conn.rollback()
    return [name for name, _ in MIGRATIONS if name not in applied]
