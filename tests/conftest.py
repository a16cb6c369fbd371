"""Shared fixtures: an isolated home for every test, the CLI runner, the shared data path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest_plugins = ["tests.fake_anthropic.plugin", "tests.pgfixtures"]

REPO = Path(__file__).resolve().parent.parent
# Read before the autouse fixture clears TARS_OPT_* variables.
SHARED_DATA = Path(os.environ.get("TARS_OPT_SHARED_DATA", REPO.parent / "shared" / "data"))
# postgresql: every test's default database is a fresh PostgreSQL one (tests/pgfixtures.py).
TEST_ENGINE = os.environ.get("TARS_OPT_TEST_ENGINE", "sqlite")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "sqlite_only(reason): about the SQLite file itself (its path, bytes, integrity); "
        "skipped when the suite runs on PostgreSQL",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if TEST_ENGINE != "postgresql":
        return
    for item in items:
        marker = item.get_closest_marker("sqlite_only")
        if marker is not None:
            reason = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")
            item.add_marker(pytest.mark.skip(reason=f"SQLite file only: {reason}"))


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Path:
    """Each test gets its own data dir and no inherited tars-opt or API settings."""
    for var in list(os.environ):
        if var.startswith(("TARS_OPT_", "ANTHROPIC_")):
            monkeypatch.delenv(var, raising=False)
    data = tmp_path / "home"
    monkeypatch.setenv("TARS_OPT_HOME", str(data))
    # The A/B holdout picks requests by a hash of their random id: off unless a test
    # turns it on, so tests that expect optimization are deterministic.
    monkeypatch.setenv("TARS_OPT_HOLDOUT", "0")
    if TEST_ENGINE == "postgresql":
        # The whole suite on PostgreSQL: the default database is a fresh server database.
        monkeypatch.setenv("TARS_OPT_DB", request.getfixturevalue("postgres").fresh())
    monkeypatch.chdir(tmp_path)
    return data


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def shared_data() -> Path:
    """The public evaluation data beside the repository (skip when it is not there)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA
