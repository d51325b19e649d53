"""A local Citus cluster for the test suite: a coordinator and two workers, each a PostgreSQL server of the
installation that has Citus (``pg_config``'s, or ``CASTMETRICS_CITUS_PG_BIN``), on free TCP ports of
127.0.0.1 with trust authentication, fsync off: for tests only. A database is made on every node with the
``citus`` extension and the workers registered on the coordinator, as Citus's docs describe."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg
from psycopg import sql

from tests.support.http import free_port

WORKERS = 2
# Few shards per table: enough for every table to have shards on both workers, few enough that the suite's
# TRUNCATE after every test stays quick.
SHARD_COUNT = 4


def pg_bin() -> Path:
    """The bin directory of the PostgreSQL installation Citus is installed into."""
    configured = os.environ.get("CASTMETRICS_CITUS_PG_BIN")
    candidates = [Path(configured)] if configured else sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for candidate in candidates:
        config = candidate / "pg_config"
        if not config.exists():
            continue
        libdir = subprocess.run([config, "--pkglibdir"], capture_output=True, text=True, check=True).stdout.strip()
        if (Path(libdir) / "citus.so").exists():
            return candidate
    raise RuntimeError("Citus is not installed for any PostgreSQL here: see README, 'Running the suite on Citus'")


class CitusCluster:
    """Nodes in ``root/node-<port>``; the first is the coordinator."""

    def __init__(self, root: Path, workers: int = WORKERS) -> None:
        self._as_postgres = os.geteuid() == 0  # initdb refuses to run as root
        # As root the servers run as postgres, which must reach their directory: one of their own under the
        # temporary directory (pytest's are private to root), removed by ``stop``.
        self.root = Path(tempfile.mkdtemp(prefix="castmetrics-citus-")) if self._as_postgres else root
        self.bin = pg_bin()
        self.ports = [free_port() for _ in range(workers + 1)]

    def _run(self, *args: str | Path) -> None:
        user = "postgres" if self._as_postgres else None
        # HOME of the servers' own: libpq in a node looks there for client certificates when it connects
        # to another node, and root's would be unreadable to postgres.
        env = {**os.environ, "HOME": str(self.root)}
        subprocess.run([str(a) for a in args], check=True, capture_output=True, user=user, env=env)

    def url(self, port: int, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{port}/{database}"

    @property
    def coordinator(self) -> int:
        return self.ports[0]

    def start(self) -> str:
        """Start every node; answer the coordinator's superuser URL (database ``postgres``)."""
        self.root.mkdir(parents=True, exist_ok=True)
        if self._as_postgres:
            self.root.chmod(0o755)
            shutil.chown(self.root, "postgres")
        for port in self.ports:
            data = self.root / f"node-{port}"
            self._run(
                self.bin / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"
            )
            with (data / "postgresql.conf").open("a") as conf:
                conf.write(
                    f"port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n"
                    "shared_preload_libraries = 'citus'\nmax_connections = 300\nmax_prepared_transactions = 300\n"
                    "shared_buffers = 128MB\nwal_level = logical\nfsync = off\nsynchronous_commit = off\n"
                    f"full_page_writes = off\ncitus.shard_count = {SHARD_COUNT}\n"
                    "citus.node_conninfo = 'sslmode=disable'\n"
                )
            self._run(self.bin / "pg_ctl", "-D", data, "-l", data / "server.log", "-w", "-t", "60", "start")
        return self.url(self.coordinator)

    def create_database(self, name: str) -> str:
        """A database on every node, Citus in it, the workers registered; answer the coordinator's URL."""
        for port in self.ports:
            with psycopg.connect(self.url(port), autocommit=True) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            with psycopg.connect(self.url(port, name), autocommit=True) as conn:
                conn.execute("CREATE EXTENSION citus")
        with psycopg.connect(self.url(self.coordinator, name), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS citus_columnar")
            conn.execute("SELECT citus_set_coordinator_host('127.0.0.1', %s)", (self.coordinator,))
            for port in self.ports[1:]:
                conn.execute("SELECT citus_add_node('127.0.0.1', %s)", (port,))
        return self.url(self.coordinator, name)

    def drop_database(self, name: str) -> None:
        for port in self.ports:
            with psycopg.connect(self.url(port), autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def stop(self) -> None:
        for port in self.ports:
            data = self.root / f"node-{port}"
            if (data / "postmaster.pid").exists():
                self._run(self.bin / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop")
        if self._as_postgres:
            shutil.rmtree(self.root, ignore_errors=True)
