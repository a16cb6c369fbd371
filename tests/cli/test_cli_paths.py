"""A wrong path must not quietly give another ledger or config: a --db in a missing folder
is refused, and commands name the config file they read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tars_opt.cli.main import app


@pytest.mark.parametrize("command", [["costs"], ["budget"], ["log"], ["ask", "--backend",
                                                                     "offline", "hi"]])  # fmt: skip
def test_db_in_a_missing_folder_is_one_line_exit_2(
    runner: CliRunner, command: list[str], tmp_path: Path
) -> None:
    missing = tmp_path / "nonexistent" / "dir" / "x.db"
    result = runner.invoke(app, [*command, "--db", str(missing)])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == (
        f"error: --db {missing}: folder {missing.parent} does not exist; "
        "create it or pick another path"
    )
    assert not (tmp_path / "nonexistent").exists()


def test_tars_opt_db_in_a_missing_folder_is_refused_and_named(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "nope" / "x.db"
    monkeypatch.setenv("TARS_OPT_DB", str(missing))
    result = runner.invoke(app, ["costs"])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: TARS_OPT_DB={missing}: folder {missing.parent} ")
    assert not missing.parent.exists()


@pytest.mark.sqlite_only(reason="a database file path in the config (TARS_OPT_DB wins)")
def test_database_in_the_config_file_in_a_missing_folder_names_the_file(
    runner: CliRunner, tmp_path: Path
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"database: {tmp_path / 'nope' / 'x.db'}\n")
    result = runner.invoke(app, ["costs", "--config", str(config)])
    assert result.exit_code == 2 and f"(in {config})" in result.output


@pytest.mark.sqlite_only(reason="the database file made in the default data dir")
def test_default_data_dir_is_still_created(runner: CliRunner, home: Path) -> None:
    assert not home.exists()
    result = runner.invoke(app, ["costs", "--json"])
    assert result.exit_code == 0, result.output
    assert (home / "tars-opt.db").is_file()


def test_simulate_db_in_a_missing_folder_is_refused(runner: CliRunner, tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "sim.db"
    result = runner.invoke(app, ["simulate", "--db", str(missing)])
    assert result.exit_code == 2
    assert f"--db {missing}: folder {missing.parent} does not exist" in result.output


def test_verbose_logs_the_config_file_read(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["costs", "-v"])
    assert result.exit_code == 0, result.output
    logged = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    (read,) = [r for r in logged if r["msg"] == "config read"]
    assert read["config"] == "shipped defaults"
    config = tmp_path / "c.yaml"
    config.write_text("budget:\n  monthly_usd: 50\n")
    result = runner.invoke(app, ["budget", "-v", "--config", str(config)])
    assert f'"config": "{config}"' in result.stderr
