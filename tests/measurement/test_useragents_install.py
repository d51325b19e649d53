"""Newer OPAWG lists: ``castmetrics useragents install`` checks and installs them, ``show`` says which are
active, new processes load them and running recorders follow them (``maybe_reload``)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from castmetrics.config import Settings
from castmetrics.measurement import recorder as recorder_module
from castmetrics.measurement import useragents
from castmetrics.measurement.prefix import Buffer
from castmetrics.measurement.recorder import Recorder

PLAYER = "Castmetrics Test Player"
EXAMPLE = "CastmetricsTestPlayer/2.1 CFNetwork/1494.0.7 Darwin/23.4.0"
NEW_APP = {"name": PLAYER, "pattern": "^CastmetricsTestPlayer/", "examples": [EXAMPLE]}
BUNDLED_APPS = len(useragents.read_lists(useragents.DATA_DIR)["apps"].entries)


def castmetrics(*args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CASTMETRICS_")}
    env["CASTMETRICS_LOG_LEVEL"] = "WARNING"
    return subprocess.run(
        [sys.executable, "-m", "castmetrics", *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def entries(output: str, name: str) -> int | None:
    """The entries a command's output gives for list ``name``."""
    found = re.search(rf"^  {name} +(\d+) entries", output, re.MULTILINE)
    return int(found.group(1)) if found else None


def lists(tmp_path: Path, name: str, *, new_app: bool = True, broken: bool = False) -> Path:
    """The bundled lists copied into ``tmp_path / name``, with the test player first among the apps."""
    folder = tmp_path / name
    shutil.copytree(useragents.DATA_DIR, folder)
    path = folder / "apps.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    if new_app:
        document["entries"].insert(0, NEW_APP)
    if broken:
        document["entries"].append({"name": "Broken", "pattern": "(unclosed"})
    path.write_text(json.dumps(document), encoding="utf-8")
    return folder


@pytest.fixture
def bundled() -> Iterator[None]:
    useragents.reload()
    yield
    useragents.reload()


@pytest.mark.usefixtures("bundled")
def test_installed_lists_are_followed_after_a_reload(tmp_path: Path) -> None:
    data = tmp_path / "data"
    installed = data / "useragents"
    result = castmetrics("useragents", "install", str(lists(tmp_path, "newer")), "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    assert str(installed) in result.stdout and entries(result.stdout, "apps") == BUNDLED_APPS + 1
    assert "source: commit 8008a31b7d34 of 2026-08-06" in result.stdout
    assert {"apps.json", "bots.json", "LICENSE", "SOURCES.md"} <= {path.name for path in installed.iterdir()}
    assert [path.name for path in data.iterdir()] == ["useragents"]  # no staging folder left behind

    assert useragents.classify(EXAMPLE).name != PLAYER
    assert useragents.maybe_reload(installed) is True
    info = useragents.classify(EXAMPLE)
    assert (info.type, info.name, info.is_bot) == ("app", PLAYER, False)
    assert useragents.maybe_reload(installed) is False  # unchanged: one stat, nothing else

    replaced = castmetrics(
        "useragents", "install", str(lists(tmp_path, "plain", new_app=False)), "--data-dir", str(data)
    )
    assert replaced.returncode == 0, replaced.stderr
    assert useragents.maybe_reload(installed) is True
    assert useragents.classify(EXAMPLE).name != PLAYER

    shutil.rmtree(installed)
    assert useragents.maybe_reload(installed) is True  # gone: the bundled lists
    assert useragents.maybe_reload(installed) is False


def test_an_invalid_folder_exits_2_and_leaves_the_previous_install(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert castmetrics("useragents", "install", str(lists(tmp_path, "good")), "--data-dir", str(data)).returncode == 0
    before = (data / "useragents" / "apps.json").read_bytes()

    result = castmetrics("useragents", "install", str(lists(tmp_path, "bad", broken=True)), "--data-dir", str(data))
    assert result.returncode == 2
    assert "nothing installed" in result.stderr and "apps.json" in result.stderr
    assert "'(unclosed' does not compile" in result.stderr
    assert (data / "useragents" / "apps.json").read_bytes() == before
    assert [path.name for path in data.iterdir()] == ["useragents"]

    missing = castmetrics("useragents", "install", str(tmp_path / "nowhere"), "--data-dir", str(data))
    assert missing.returncode == 2 and "is not a folder" in missing.stderr
    incomplete = lists(tmp_path, "incomplete")
    (incomplete / "devices.json").unlink()
    result = castmetrics("useragents", "install", str(incomplete), "--data-dir", str(data))
    assert result.returncode == 2 and "missing devices.json" in result.stderr


def test_show_names_the_active_lists(tmp_path: Path) -> None:
    data = tmp_path / "data"
    shown = castmetrics("useragents", "show", "--data-dir", str(data))
    assert shown.returncode == 0, shown.stderr
    assert f"Active: bundled lists, {useragents.DATA_DIR}" in shown.stdout
    assert entries(shown.stdout, "apps") == BUNDLED_APPS and "referrers" in shown.stdout

    shutil.copytree(lists(tmp_path, "newer"), data / "useragents")
    shown = castmetrics("useragents", "show", "--data-dir", str(data))
    assert f"Active: installed lists, {data / 'useragents'}" in shown.stdout
    assert entries(shown.stdout, "apps") == BUNDLED_APPS + 1

    (data / "useragents" / "bots.json").write_text("{", encoding="utf-8")
    shown = castmetrics("useragents", "show", "--data-dir", str(data))
    assert shown.returncode == 0 and "do not load" in shown.stderr and "Active: bundled lists" in shown.stdout


@pytest.mark.usefixtures("bundled")
def test_a_new_process_loads_the_installed_lists_or_the_bundled_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(lists(tmp_path, "newer"), tmp_path / "useragents")
    monkeypatch.setenv("CASTMETRICS_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(useragents, "_default", None)
    assert useragents.classify(EXAMPLE).name == PLAYER

    (tmp_path / "useragents" / "apps.json").write_text('{"entries": 3}', encoding="utf-8")
    monkeypatch.setattr(useragents, "_default", None)
    with capture_logs() as logs:
        assert useragents.classify(EXAMPLE).name != PLAYER
    assert any(entry["event"] == "useragents.installed_invalid" for entry in logs)


@pytest.mark.usefixtures("bundled")
async def test_the_recorder_looks_for_newer_lists_at_most_once_a_minute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder(None, Settings(data_dir=tmp_path), Buffer())  # type: ignore[arg-type]  # an empty flush never writes
    shutil.copytree(lists(tmp_path, "newer"), tmp_path / "useragents")
    await recorder.flush()
    assert useragents.classify(EXAMPLE).name == PLAYER

    shutil.rmtree(tmp_path / "useragents")
    await recorder.flush()
    assert useragents.classify(EXAMPLE).name == PLAYER  # checked less than a minute ago
    monkeypatch.setattr(recorder_module, "USERAGENTS_CHECK_SECONDS", 0.0)
    await recorder.flush()
    assert useragents.classify(EXAMPLE).name != PLAYER
