"""A throwaway PostgreSQL cluster for tests: ``initdb`` and ``pg_ctl`` as an unprivileged user.

PostgreSQL refuses to run as root. When the tests run as root, the cluster's folder (a fresh
folder under the system temp dir, outside pytest's root-only tree) is handed to Debian's
``postgres`` system user (or ``nobody``) and its commands run through ``runuser``. The server
listens on 127.0.0.1 on a free port (password authentication, SCRAM) and on a socket in its
own folder (the superuser ``hitsong_admin``, trusted, for setup); it is stopped and its folder
deleted on exit::

    with postgres_cluster(role="mlflow", password=PW, database="mlflow") as pg:
        uri = pg.uri()          # postgresql://mlflow@127.0.0.1:PORT/mlflow (no password in it)
        pg.sql("SELECT 1")      # as the superuser, over the socket

A missing ``initdb`` is a skip naming ``make deps-postgres`` (which installs Debian's package).
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
from dataclasses import dataclass
from pathlib import Path

import pytest

from registry.server import free_port

SUPERUSER = "hitsong_admin"


def postgres_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding ``initdb`` (Debian's layout), or ``None``."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def _unprivileged_user() -> str | None:
    """``None`` when not root (run as ourselves); else a system user that may own the cluster."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root with neither a postgres nor a nobody user to run PostgreSQL as")


@dataclass(frozen=True)
class PgCluster:
    """A running throwaway cluster."""

    bin: Path
    folder: Path
    port: int
    role: str
    database: str
    owner: str | None

    def uri(self) -> str:
        """The SQLAlchemy URI of the role's database over TCP, *without* its password."""
        return f"postgresql://{self.role}@127.0.0.1:{self.port}/{self.database}"

    def run(self, *args: str, stdin: str | None = None) -> str:
        """Run a PostgreSQL program as the cluster's owner; its stdout."""
        cmd = [*args]
        if self.owner is not None:
            cmd = ["runuser", "-u", self.owner, "--", *cmd]
        proc = subprocess.run(
            cmd, input=stdin, capture_output=True, text=True, cwd=self.folder, timeout=120, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({proc.returncode}): {proc.stderr[-2000:]}")
        return proc.stdout

    def sql(self, statements: str, *, database: str | None = None) -> str:
        """Run SQL as the superuser over the cluster's socket (read from stdin, never from argv)."""
        return self.run(
            str(self.bin / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", str(self.folder),
            "-p", str(self.port), "-U", SUPERUSER, "-d", database or "postgres", "-f", "-", stdin=statements,
        )  # fmt: skip


@contextmanager
def postgres_cluster(*, role: str, password: str, database: str) -> Iterator[PgCluster]:
    """Start a cluster with ``role`` (LOGIN, ``password``) owning ``database``; stop and delete it after."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL's initdb is not installed: `make deps-postgres` installs Debian's postgresql")
    owner = _unprivileged_user()
    folder = Path(tempfile.mkdtemp(prefix="hitsong-pg-"))
    if owner is not None:
        shutil.chown(folder, user=owner)
    cluster = PgCluster(bin_dir, folder, free_port(), role, database, owner)
    data = folder / "data"
    started = False
    try:
        cluster.run(
            str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, "-E", "UTF8", "--no-instructions",
            "--auth-local=trust", "--auth-host=scram-sha-256",
        )  # fmt: skip
        options = f"-p {cluster.port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        cluster.run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-o", options, "-w",
                    "start")  # fmt: skip
        started = True
        quoted = password.replace("'", "''")
        cluster.sql(f"CREATE ROLE {role} LOGIN PASSWORD '{quoted}';\nCREATE DATABASE {database} OWNER {role};\n")
        yield cluster
    finally:
        if started:
            cluster.run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)
