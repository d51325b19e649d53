"""The secret key: never the public constant by default, kept per data directory, refused on open addresses."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from castmetrics.auth import tokens
from castmetrics.config import DEV_SECRET_KEY, SECRET_KEY_FILE, Settings, with_secret_key
from castmetrics.errors import Unauthorized


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("CASTMETRICS_")}
    return env | {"CASTMETRICS_LOG_LEVEL": "WARNING"} | extra


def test_without_a_configured_key_the_data_directory_gets_a_random_one(tmp_path: Path) -> None:
    # given settings with no CASTMETRICS_SECRET_KEY
    settings = Settings(data_dir=tmp_path)
    # when the key is resolved, twice (a restart)
    first = with_secret_key(settings).secret_key.get_secret_value()
    again = with_secret_key(Settings(data_dir=tmp_path)).secret_key.get_secret_value()
    # then it is random, long, kept in the data directory (owner-only) and the same after a restart
    assert first != DEV_SECRET_KEY and len(first) >= 32
    assert again == first
    key_file = tmp_path / SECRET_KEY_FILE
    assert key_file.read_text().strip() == first
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # and another installation gets another key
    assert with_secret_key(Settings(data_dir=tmp_path / "other")).secret_key.get_secret_value() != first


def test_a_token_signed_with_the_public_constant_is_refused_by_default(tmp_path: Path) -> None:
    # given an attacker who signs an owner's access token with the constant from the source
    forged = tokens.issue_access_token(DEV_SECRET_KEY, uuid.uuid4(), uuid.uuid4(), minutes=30)
    # when a default installation reads it, then it does not verify
    key = with_secret_key(Settings(data_dir=tmp_path)).secret_key.get_secret_value()
    with pytest.raises(Unauthorized):
        tokens.read_access_token(key, forged)
    # (while the constant itself would have accepted it: the forgery is well formed)
    assert tokens.read_access_token(DEV_SECRET_KEY, forged)


def test_a_configured_key_is_used_as_is_and_a_readable_key_file_is_locked_down(tmp_path: Path) -> None:
    configured = Settings(data_dir=tmp_path, secret_key="c" * 40)
    assert with_secret_key(configured).secret_key.get_secret_value() == "c" * 40
    assert not (tmp_path / SECRET_KEY_FILE).exists()
    key_file = tmp_path / SECRET_KEY_FILE
    key_file.write_text("k" * 48 + "\n")
    key_file.chmod(0o644)
    assert with_secret_key(Settings(data_dir=tmp_path)).secret_key.get_secret_value() == "k" * 48
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


@pytest.mark.parametrize("key", [DEV_SECRET_KEY, "short-key"])
def test_serve_refuses_a_non_loopback_address_with_a_development_key(tmp_path: Path, key: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "castmetrics", "serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=_env(CASTMETRICS_SECRET_KEY=key),
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "refusing to listen on '0.0.0.0' with a development secret key" in result.stderr
    assert not (tmp_path / "pgdata").exists() and not any(tmp_path.iterdir())  # nothing was started
