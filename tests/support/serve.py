"""``castmetrics serve`` as a real subprocess on a free port, and the environment it starts from."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from tests.support.http import free_port


@contextmanager
def serving(args: list[str], env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[str], str]]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "castmetrics", "serve", "--port", str(port), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process, f"http://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def base_env(**extra: str) -> dict[str, str]:
    """This process's environment without any database or Castmetrics setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("CASTMETRICS_")}
    env.update({"CASTMETRICS_LOG_LEVEL": "WARNING", "CASTMETRICS_SECRET_KEY": "serve-test-secret"}, **extra)
    return env
