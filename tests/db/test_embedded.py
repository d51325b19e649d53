"""The embedded server wrapper: start, reuse, stop, and start again in one process."""

from __future__ import annotations

from pathlib import Path

import psycopg

from castmetrics.db.embedded import EmbeddedPostgres


def test_start_stop_start_in_one_process(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "data", database="cm_embedded")
    first_url = server.start()
    with psycopg.connect(first_url) as conn:
        conn.execute("CREATE TABLE kept (n int)")
        conn.execute("INSERT INTO kept VALUES (42)")
        conn.commit()
    server.stop()
    assert not (tmp_path / "data" / "pgdata" / "postmaster.pid").exists()

    again = EmbeddedPostgres(tmp_path / "data", database="cm_embedded")
    second_url = again.start()
    try:
        with psycopg.connect(second_url) as conn:
            assert conn.execute("SELECT n FROM kept").fetchone() == (42,)
            assert conn.execute("SHOW listen_addresses").fetchone() == ("",)
    finally:
        again.stop()


def test_a_running_server_is_reused_and_left_running(tmp_path: Path) -> None:
    owner = EmbeddedPostgres(tmp_path / "data")
    owner.start()
    try:
        guest = EmbeddedPostgres(tmp_path / "data")
        url = guest.start()
        guest.stop()  # did not start it: must not stop it
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        owner.stop()
