"""A real, throw-away PostgreSQL server for the fleet tests: a cluster made with initdb in a temporary folder,
listening on a Unix socket there only (no TCP), password-protected (scram-sha-256) with the password in a
pgpass file the tests point PGPASSFILE at, as a box's ~/.pgpass would hold it. Removed at the end.

As root (initdb refuses to run as root) the server runs as the `postgres` user, so its folder is handed to
that user. Skipped with the reason where PostgreSQL's server programs are not installed (Debian: apt-get
install postgresql) or the fleet extra (psycopg) is missing.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

PASSWORD = "pw-Secret-4711"  # the role's password: must never appear in anything occupancy prints
ROLE = "occupancy"


def server_programs() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian: /usr/lib/postgresql/15/bin)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@dataclass
class Postgres:
    """The running test server: its programs, folders and how to reach it."""

    bin: Path
    root: Path
    run_as: list[str]

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    def run(self, *argv: str) -> None:
        proc = subprocess.run([*self.run_as, *argv], capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0, f"{argv[0]} failed: {proc.stdout}{proc.stderr}"

    def start(self) -> None:
        # fsync off: a test server, thrown away at the end
        self.run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "-t", "120",
                 "-o", f"-k {self.socket_dir} -c listen_addresses='' -F", "start")

    def stop(self, mode: str = "fast") -> None:
        self.run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, database: str, password: str | None = None) -> str:
        secret = f":{password}" if password else ""
        return f"postgresql://{ROLE}{secret}@/{database}?host={self.socket_dir}"


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    pytest.importorskip("psycopg", reason="needs the fleet extra: pip install 'occupancy[fleet]'")
    programs = server_programs()
    if programs is None:
        pytest.skip("needs PostgreSQL's server programs (initdb, pg_ctl): apt-get install postgresql")
    run_as: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="occupancy-pg-"))
    if os.geteuid() == 0:  # initdb refuses root: the server runs as postgres, in a folder it owns
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root)
            pytest.skip("running as root without a `postgres` user to run the test server as")
        run_as = ["runuser", "-u", "postgres", "--"]
    server = Postgres(programs, root, run_as)
    server.socket_dir.mkdir()
    pwfile = root / "pwfile"
    pwfile.write_text(PASSWORD + "\n")
    if run_as:
        for path in (root, server.socket_dir, pwfile):
            os.chown(path, user.pw_uid, user.pw_gid)
    pgpass = Path(tempfile.mkdtemp(prefix="occupancy-pgpass-")) / "pgpass"
    pgpass.write_text(f"*:*:*:{ROLE}:{PASSWORD}\n")
    pgpass.chmod(0o600)
    old_pgpass = os.environ.get("PGPASSFILE")
    os.environ["PGPASSFILE"] = str(pgpass)
    try:
        server.run(str(programs / "initdb"), "-D", str(server.data), "-U", ROLE, f"--pwfile={pwfile}",
                   "-A", "scram-sha-256", "-E", "UTF8", "--no-sync")
        server.start()
        yield server
    finally:
        if (server.data / "postmaster.pid").exists():
            server.stop("immediate")
        if old_pgpass is None:
            os.environ.pop("PGPASSFILE", None)
        else:
            os.environ["PGPASSFILE"] = old_pgpass
        shutil.rmtree(root)
        shutil.rmtree(pgpass.parent)


@contextmanager
def new_database(postgres: Postgres) -> Iterator[str]:
    """The URL of a new, empty database on the test server (no password in it: libpq reads the pgpass file),
    dropped afterwards."""
    import psycopg

    name = f"fleet_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres.url("postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield postgres.url(name)
    with psycopg.connect(postgres.url("postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def central(postgres) -> Iterator[str]:
    with new_database(postgres) as url:
        yield url
