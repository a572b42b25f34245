"""A throwaway PostgreSQL cluster for tests and benches: initdb + pg_ctl in a temporary folder, on a unix socket there.

Debian's `postgresql` package provides the binaries (`make postgres` installs it as root). PostgreSQL
refuses to run as root, so as root the cluster belongs to the `postgres` system user (runuser).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg


def pg_bin() -> Path | None:
    """Return the newest /usr/lib/postgresql/<version>/bin holding initdb and pg_ctl, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3].split(".")[0]))
    return Path(found[-1]).parent if found else None


def unavailable() -> str | None:
    """Return why no test cluster can be started here, or None when one can."""
    if pg_bin() is None:
        return "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): run `make postgres` as root"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` system user to own the test cluster"
        if shutil.which("runuser") is None:
            return "running as root without `runuser` to start PostgreSQL as the postgres user"
    return None


def _as_owner(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextmanager
def cluster() -> Iterator[str]:
    """Start a cluster in a fresh temporary folder; yield a psycopg conninfo for its `postgres` database; stop and remove it."""
    reason = unavailable()
    if reason:
        raise RuntimeError(reason)
    binaries = pg_bin()
    assert binaries is not None
    folder = Path(tempfile.mkdtemp(prefix="torchlab-pg-"))
    data = folder / "data"
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    folder.chmod(0o755)
    try:
        subprocess.run(
            _as_owner([str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]),
            check=True,
            capture_output=True,
        )
        options = f"-k {folder} -c listen_addresses='' -F -c max_connections=300 -c fsync=off"
        subprocess.run(
            _as_owner([str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start"]),
            check=True,
            capture_output=True,
        )
        try:
            yield f"host={folder} user=postgres dbname=postgres"
        finally:
            subprocess.run(
                _as_owner([str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]), capture_output=True
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def fresh_database(conninfo: str, name: str) -> str:
    """Create (or recreate) database `name` in the cluster; return its SQLAlchemy URL."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {}").format(psycopg.sql.Identifier(name)))
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    host = dict(part.split("=", 1) for part in conninfo.split())["host"]
    return f"postgresql+psycopg://postgres@/{name}?host={host}"
