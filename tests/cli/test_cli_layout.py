"""Every command is registered and has working help, through each front door
(`tars-opt`, `python -m tars_opt`); and the CLI's imports run one way: command modules use
only `cli.common` and `cli.render`, nothing below the CLI imports it."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import typer
from typer.testing import CliRunner

from tars_opt.cli import app
from tests.conftest import REPO

COMMANDS = ["ask", "result", "drain", "costs", "log", "report", "heartbeat", "dashboard",
            "feedback", "metrics", "budget", "simulate", "serve"]  # fmt: skip
GROUPS = {
    "config": ["init", "show", "check"],
    "db": ["path", "migrate", "check", "copy"],
    "router": ["train", "calibrate"],
    "queue": ["list", "show", "cancel", "retry"],
    "context": ["inspect"],
    "baseline": ["capture", "list", "reset", "show"],
    "cache": ["stats", "list", "show", "forget", "clear", "calibrate"],
}
PACKAGE = REPO / "tars_opt"


def listed(help_text: str) -> list[str]:
    """The command names of a rich help screen's Commands panel, in order."""
    panel = help_text.split("Commands ", 1)[1]
    return re.findall(r"^│ (\S+)\s", panel, re.MULTILINE)


def test_help_lists_every_command_then_every_group_in_order(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    assert listed(result.output) == [*COMMANDS, *GROUPS]
    for group, subcommands in GROUPS.items():
        result = runner.invoke(app, [group, "--help"])
        assert result.exit_code == 0, (group, result.output)
        assert listed(result.output) == subcommands, group


def test_every_command_has_help_with_an_example(runner: CliRunner) -> None:
    leaves = [[c] for c in COMMANDS] + [[g, s] for g, subs in GROUPS.items() for s in subs]
    for args in leaves:
        result = runner.invoke(app, [*args, "--help"])
        assert result.exit_code == 0, (args, result.output)
        assert "Example:" in result.output, args


def test_a_group_without_a_subcommand_shows_its_help(runner: CliRunner) -> None:
    for group, subcommands in GROUPS.items():
        result = runner.invoke(app, [group])
        assert "Usage:" in result.output and subcommands[0] in result.output, group


def test_the_console_script_and_python_m_reach_the_same_app() -> None:
    target = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, name = target["tars-opt"].split(":")
    assert getattr(importlib.import_module(module), name) is app
    done = subprocess.run(
        [sys.executable, "-m", "tars_opt", "--help"],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO), "COLUMNS": "120", "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert listed(done.stdout) == [*COMMANDS, *GROUPS]
    assert isinstance(app, typer.Typer)


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) for every import in a file, lazy ones inside functions included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def cli_modules_used(module: str, names: list[str]) -> list[str]:
    """The tars_opt.cli modules an import statement reaches."""
    if module == "tars_opt":
        return ["tars_opt.cli"] if "cli" in names else []
    if not module.startswith("tars_opt.cli"):
        return []
    base = REPO / module.replace(".", "/")
    subs = [f"{module}.{n}" for n in names if (base / f"{n}.py").exists() or (base / n).is_dir()]
    return subs or [module]


def test_nothing_below_the_cli_imports_it() -> None:
    front_doors = {PACKAGE / "__main__.py"}
    below = [p for p in PACKAGE.rglob("*.py")
             if "cli" not in p.relative_to(PACKAGE).parts and p not in front_doors]  # fmt: skip
    bad = [(p.name, m) for p in below for m, names in imports(p) if cli_modules_used(m, names)]
    assert bad == []


def test_cli_modules_import_only_common_and_render() -> None:
    root = {PACKAGE / "cli" / "main.py", PACKAGE / "cli" / "__init__.py"}
    for path in sorted(set((PACKAGE / "cli").rglob("*.py")) - root):
        rel = str(path.relative_to(PACKAGE / "cli"))
        for module, names in imports(path):
            for used in cli_modules_used(module, names):
                if rel.startswith("render/"):
                    assert used == "tars_opt.cli.render.common", (rel, used)
                else:
                    assert used == "tars_opt.cli.common" or (
                        used.startswith("tars_opt.cli.render.")
                    ), (rel, used)


def test_the_cli_imports_no_private_names() -> None:
    for path in sorted((PACKAGE / "cli").rglob("*.py")):
        for module, names in imports(path):
            if module.startswith("tars_opt"):
                private = [n for n in names if n.startswith("_") and not n.startswith("__")]
                assert private == [], (str(path.relative_to(PACKAGE)), module, private)
