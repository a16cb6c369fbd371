"""The README stays a front page, and what it and docs/ point at exists.

Checks that every command in the README's tour (and every `tars-opt ...` command line in the
README and docs/) names a real command with real options, that the set-up commands are the
ones CI runs, and that relative links, #anchors and repository paths in the docs resolve.
"""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from tars_opt.cli import app

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [README, *DOCS]
MAX_README_LINES = 300
SETUP_COMMANDS = (
    "pip install . && tars-opt simulate",
    'python -m pip install ".[test]" && python -m pytest',
)
ROOT = typer.main.get_command(app)


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def _prose_and_code(text: str) -> tuple[list[str], list[str]]:
    """Lines outside fenced code blocks, and lines inside them."""
    prose: list[str] = []
    code: list[str] = []
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        (code if fenced else prose).append(line)
    return prose, code


def _section(text: str, heading: str) -> str:
    """The lines under `## heading` up to the next heading of level 1 or 2 (not in code)."""
    lines = text.splitlines()
    start = lines.index(f"## {heading}")
    fenced = False
    for end in range(start + 1, len(lines)):
        if lines[end].lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,2} ", lines[end]):
            break
    else:
        end = len(lines)
    return "\n".join(lines[start + 1 : end])


def _commands(group: Any, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Every leaf command of the CLI by its path, e.g. ("queue", "list")."""
    if not hasattr(group, "commands"):
        return {path: group}
    found: dict[tuple[str, ...], Any] = {}
    for name, sub in group.commands.items():
        found.update(_commands(sub, (*path, name)))
    return found


LEAVES = _commands(ROOT)


def _options(command: Any) -> set[str]:
    return {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}


def _tour_rows() -> list[tuple[str, str]]:
    """(command cell, example cell) of each row of the README's tour table."""
    rows = []
    for line in _section(README.read_text(), "A tour of the commands").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            rows.append((cells[0].strip("`"), cells[2]))
    return rows


def _tour_commands() -> list[tuple[str, ...]]:
    """`queue list/show/cancel/retry` -> ("queue", "list"), ("queue", "show"), ..."""
    paths = []
    for cell, _ in _tour_rows():
        words = cell.split()
        if len(words) == 1:
            paths.append((words[0],))
        else:
            paths += [(words[0], sub) for sub in words[1].split("/")]
    return paths


# `tars-opt` where a shell would run it (start of the line or code span, after `$(`, a pipe,
# `&&` or `;`), followed by its arguments up to a pipe, a closing parenthesis, a comment or
# the end; `tars-opt` in a sentence or a file name (`tars-opt-drain...`) is not a command line.
COMMAND_LINE = re.compile(
    r"(?:^\s*|\$\(|[|;]\s*|&&\s*)tars-opt(?![-\w./])((?:[ \t]+[^\s`|)(;#]+)+)"
)


def _command_lines(text: str) -> list[str]:
    """Every `tars-opt ...` command line in fenced code and inline code spans of a page."""
    prose, code = _prose_and_code(text)
    spans = [s for line in prose for s in re.findall(r"`([^`]+)`", line)]
    found = []
    for chunk in [*code, *spans]:
        found += [m.group(1) for m in COMMAND_LINE.finditer(chunk)]
    return found


def _check_command_line(args: str) -> list[str]:
    """Problems with one `tars-opt <args>` line: unknown command or option."""
    try:
        words = shlex.split(args)
    except ValueError:
        words = args.split()
    command, path = ROOT, []
    while hasattr(command, "commands") and words and words[0] in command.commands:
        path.append(words[0])
        command = command.commands[words.pop(0)]
    where = " ".join(["tars-opt", *path])
    if hasattr(command, "commands") and (path or not words or not words[0].startswith("-")):
        return [f"`tars-opt{args}`: {where} has no command {words[:1] or '(none given)'}"]
    known = _options(command)
    problems = []
    for word in words:
        word = word.strip("[]")
        if word.startswith("-") and word != "-" and word.split("=")[0] not in known:
            problems.append(f"`tars-opt{args}`: {where} has no option {word.split('=')[0]}")
    return problems


def test_readme_is_a_front_page() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, (
        f"README.md has {len(lines)} lines (at most {MAX_README_LINES}): move detail to docs/"
    )
    for heading in ("Set up", "A tour of the commands", "Using it from Python", "Where to read on"):
        assert f"## {heading}" in lines, f"README.md lost its '## {heading}' section"


def test_setup_commands_are_the_ones_ci_runs() -> None:
    _, code = _prose_and_code(_section(README.read_text(), "Set up"))
    for command in SETUP_COMMANDS:
        assert command in code, f"README's set-up block lost `{command}`"
    # CI runs the test command as written, only quieter.
    ci = [line.replace(" -q ", " ") for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert SETUP_COMMANDS[1] in ci, "`.ci/run` no longer runs the README's test command"


def test_tour_names_every_command() -> None:
    tour = _tour_commands()
    unknown = [" ".join(p) for p in tour if p not in LEAVES]
    assert not unknown, f"the README's tour names commands the CLI does not have: {unknown}"
    missing = [" ".join(p) for p in LEAVES if p not in tour]
    assert not missing, f"commands missing from the README's tour: {missing}"


@pytest.mark.parametrize("path", _tour_commands(), ids=" ".join)
def test_tour_command_has_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_tour_examples_are_real_command_lines() -> None:
    problems = []
    for cell, example in _tour_rows():
        lines = _command_lines(example)
        assert lines, f"the tour's `{cell}` row has no `tars-opt ...` example"
        for args in lines:
            assert args.split()[0] == cell.split()[0], f"`{cell}`'s example runs `tars-opt{args}`"
            problems += _check_command_line(args)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_command_lines_in_docs_are_real(page: Path) -> None:
    problems = [p for args in _command_lines(page.read_text()) for p in _check_command_line(args)]
    assert not problems, f"{_rel(page)}:\n" + "\n".join(problems)


def test_python_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """The README's "Using it from Python" block, as written, on the offline backend."""
    section = _section(README.read_text(), "Using it from Python")
    block = re.search(r"```python\n(.*?)```", section, re.S)
    assert block, "README's 'Using it from Python' section has no python block"
    exec(compile(block.group(1), "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "What is the capital of France?" in printed  # the offline answer names the prompt
    assert "routing" in printed  # saved_by_strategy was printed


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces -> '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    prose, _ = _prose_and_code(page.read_text())
    seen: dict[str, int] = {}
    found = set()
    for line in prose:
        match = re.match(r"#{1,6} (.+?)\s*#*\s*$", line)
        if not match:
            continue
        slug = github_slug(match.group(1))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def test_github_slug() -> None:
    assert github_slug("A/B holdout") == "ab-holdout"
    assert github_slug("Budget: pacing, alerts and the policy at 100%") == (
        "budget-pacing-alerts-and-the-policy-at-100"
    )
    assert github_slug("The headline benchmark (`benchmarks/savings.py`)") == (
        "the-headline-benchmark-benchmarkssavingspy"
    )


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_relative_links_resolve(page: Path) -> None:
    prose, _ = _prose_and_code(page.read_text())
    problems = []
    for line in prose:
        for target in LINK.findall(re.sub(r"`[^`]*`", "", line)):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto: not checked offline
            file_part, _, anchor = target.partition("#")
            dest = (page.parent / file_part).resolve() if file_part else page
            if not dest.exists() or REPO not in (dest, *dest.parents):
                problems.append(f"{target}: no such file")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                problems.append(f"{target}: no heading with anchor #{anchor} in {_rel(dest)}")
    assert not problems, f"{_rel(page)}:\n" + "\n".join(problems)


REPO_PATH = re.compile(r"(?<![\w./-])((?:tars_opt|tests|benchmarks|scripts|\.ci)/[\w./{},-]*)")
DOTTED = re.compile(r"(?<![\w./-])((?:tars_opt|tests)(?:\.[a-z_]\w*)+)")


def _expand(path: str) -> list[str]:
    """`a/b.{service,timer}` -> a/b.service, a/b.timer."""
    match = re.search(r"\{([^}]*)\}", path)
    if not match:
        return [path]
    return [
        p
        for choice in match.group(1).split(",")
        for p in _expand(path[: match.start()] + choice + path[match.end() :])
    ]


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_repository_paths_exist(page: Path) -> None:
    text = page.read_text()
    problems = []
    for raw in REPO_PATH.findall(text):
        for path in _expand(raw.rstrip(".,")):
            if not (REPO / path).exists():
                problems.append(f"{path}: not in the repository")
    for name in DOTTED.findall(text):
        name = name.rstrip(".")
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                obj: Any = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            for attr in parts[cut:]:
                obj = getattr(obj, attr, None)
            if obj is None:
                problems.append(f"{name}: no such attribute")
            break
        else:
            problems.append(f"{name}: no such module")
    assert not problems, f"{_rel(page)}:\n" + "\n".join(problems)
