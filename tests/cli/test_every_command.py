"""What every command does alike: it names the config file it read (the dim last line of
its human output), takes -v (logs, the config read among them, on stderr) when it opens the
app, shows a one-line summary in --help, and a mistyped TARS_OPT_HOME is refused, not
turned into a new empty ledger."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
import typer.main
from typer.testing import CliRunner

from tars_opt import open_app
from tars_opt.cli.main import app
from tests.handmade import add_call

OFFLINE = ["--backend", "offline"]
# Commands that read a config but open no database: no logging to show, so no -v.
WITHOUT_VERBOSE = {"config init", "config show", "config check", "db path", "router train",
                   "router calibrate", "simulate", "cache calibrate", "db migrate",
                   "db check", "db copy"}  # fmt: skip


def leaves() -> dict[str, click.Command]:
    found: dict[str, click.Command] = {}

    def walk(command: click.Command, path: list[str]) -> None:
        subs = getattr(command, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk(sub, [*path, name])
        else:
            found[" ".join(path)] = command

    walk(typer.main.get_command(app), [])
    return found


def test_every_command_that_opens_the_app_takes_verbose() -> None:
    without = {name for name, c in leaves().items()
               if not any("-v" in p.opts for p in c.params)}  # fmt: skip
    assert without == WITHOUT_VERBOSE


def test_every_summary_in_help_is_one_line(runner: CliRunner) -> None:
    # The help screens list each command's first paragraph: two lines would break it.
    for name, command in leaves().items():
        first = (command.help or "").strip().split("\n\n")[0]
        assert "\n" not in first, name
    listing = runner.invoke(app, ["--help"], terminal_width=120).output
    assert "│ report     Write a Markdown benchmark report with PNG charts beside it.   " in (
        listing
    )


@pytest.fixture
def ticket(runner: CliRunner) -> str:
    out = runner.invoke(app, ["ask", *OFFLINE, "--defer", "--json", "Summarise Thucydides"])
    return json.loads(out.stdout)["ticket"]


def commands(ticket: str, request_id: str) -> list[list[str]]:
    return [
        ["report", "--from", "2026-02-17", "--to", "2026-02-17"],
        ["feedback", request_id, "good"],
        ["cache", "stats"],
        ["cache", "list"],
        ["cache", "forget", "--match", "nothing like this"],
        ["cache", "clear", "--yes"],
        ["baseline", "show"],
        ["baseline", "list"],
        ["baseline", "reset"],
        ["log"],
        ["log", "--export", "trace.jsonl"],
        ["queue", "list"],
        ["queue", "show", ticket],
        ["result", ticket],
        ["queue", "cancel", ticket],
        ["queue", "retry", ticket],
        ["costs"],
        ["metrics", "--days", "1"],
        ["budget"],
        ["context", "inspect", "What is 2 + 2?"],
        # Last: inside the off-peak window these two send the queued task.
        ["heartbeat"],
        ["drain"],
    ]


def test_every_command_names_the_config_it_read_and_logs_with_v(
    runner: CliRunner, ticket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Offline, so the heartbeat's and the drain's submissions inside the off-peak window
    # do not need an API key: the test passes at any hour.
    monkeypatch.setenv("TARS_OPT_BACKEND", "offline")
    request_id = add_call(open_app().db, "2026-02-17T10:00")
    for args in commands(ticket, request_id):
        result = runner.invoke(app, [*args, "-v"])
        assert result.exit_code == 0, (args, result.output)
        lines = [line for line in result.stdout.splitlines() if line.strip()]
        assert lines[-1].startswith("config: shipped defaults"), (args, lines[-3:])
        logged = [json.loads(x) for x in result.stderr.splitlines() if x.startswith("{")]
        assert any(r["msg"] == "config read" for r in logged), args


def test_queued_ask_and_baseline_capture_name_the_config(runner: CliRunner) -> None:
    queued = runner.invoke(app, ["ask", *OFFLINE, "--defer", "Summarise Herodotus"])
    assert queued.stdout.splitlines()[-1] == "config: shipped defaults"
    db = open_app().db
    for day in ("2026-02-11", "2026-02-12", "2026-02-13"):
        add_call(db, f"{day}T10:00", cost=0.01, baseline_cost=0.01)
    captured = runner.invoke(app, ["baseline", "capture", "--from", "2026-02-11", "--to",
                                   "2026-02-13", "-v"])  # fmt: skip
    assert captured.exit_code == 0, captured.output
    assert captured.stdout.splitlines()[-1] == "config: shipped defaults"


def test_json_output_stays_data_only(runner: CliRunner, ticket: str) -> None:
    for args in (["baseline", "show"], ["queue", "list"], ["result", ticket], ["log"]):
        result = runner.invoke(app, [*args, "--json"])
        assert result.exit_code == 0, result.output
        json.loads(result.stdout)  # nothing after the JSON


@pytest.mark.sqlite_only(reason="the database file made in the data dir")
def test_a_mistyped_tars_opt_home_is_refused(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "no-such-dir" / "tars-home"
    monkeypatch.setenv("TARS_OPT_HOME", str(missing))
    for args in (["costs"], ["ask", *OFFLINE, "hi"], ["log", "--db", str(tmp_path / "x.db")]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert result.output.strip() == (
            f"error: TARS_OPT_HOME={missing}: folder {missing.parent} does not exist; create "
            "it or pick another path"
        )
    # Commands that write under the data dir without opening the database check it too.
    result = runner.invoke(app, ["router", "calibrate"])
    assert result.exit_code == 2 and result.output.startswith(f"error: TARS_OPT_HOME={missing}")
    assert not missing.parent.exists()
    # A data dir in an existing folder is created, as the default one is.
    monkeypatch.setenv("TARS_OPT_HOME", str(tmp_path / "tars-home"))
    assert runner.invoke(app, ["costs"]).exit_code == 0
    assert (tmp_path / "tars-home" / "tars-opt.db").is_file()


def test_data_dir_in_the_config_file_in_a_missing_folder_names_the_file(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TARS_OPT_HOME")  # it would win over the file
    config = tmp_path / "c.yaml"
    config.write_text(f"data_dir: {tmp_path / 'nope' / 'home'}\n")
    result = runner.invoke(app, ["costs", "-c", str(config)])
    assert result.exit_code == 2 and f"(in {config}): folder {tmp_path / 'nope'}" in (result.output)


@pytest.mark.sqlite_only(reason="`db path` printing the default database file")
def test_commands_without_a_database_name_the_config_too(runner: CliRunner) -> None:
    calibrated = runner.invoke(app, ["router", "calibrate"])
    assert calibrated.exit_code == 0, calibrated.output
    assert calibrated.stdout.splitlines()[-1] == "config: shipped defaults"
    # `db path` is for $(...): the path alone on stdout, the config read on stderr.
    path = runner.invoke(app, ["db", "path"])
    assert path.stdout.strip().endswith("tars-opt.db") and len(path.stdout.splitlines()) == 1
    assert path.stderr.strip() == "config: shipped defaults"
