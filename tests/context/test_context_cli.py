"""Modular system prompts and `context inspect` / `ask --system-file` as a user sees them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.tool_catalog import catalog
from tars_opt.cli.main import app
from tars_opt.context.sysprompt import compose, load_sections
from tars_opt.errors import InputError
from tests.context.test_prune import conversation
from tests.ops_chat import ANSWER, QUESTION, ops_chat

YAML_PROMPT = """
sections:
  - name: identity
    text: You are a planning assistant.
  - name: coding
    when: {query_types: [code], keywords: [python]}
    text: Write tested code.
  - name: email
    when: {keywords: [email, letter]}
    text: Keep emails short.
"""
MD_PROMPT = """## identity
You are a planning assistant.

## coding
<!-- when: query_types=code; keywords=python -->
Write tested code.

## email
<!-- when: keywords=email, letter -->
Keep emails short.
"""


@pytest.fixture(autouse=True)
def lexical_only(home: Path) -> None:
    """Chains built from the config score by word overlap: fast and deterministic. (The
    semantic path has its own tests with a small embedder.)"""
    Path("performance-config.yaml").write_text(
        "prune: {semantic: false}\ntools: {semantic: false}\n"
    )


@pytest.mark.parametrize("name,body", [("p.yaml", YAML_PROMPT), ("p.md", MD_PROMPT)])
def test_only_matching_sections_in_file_order(tmp_path: Path, name: str, body: str) -> None:
    path = tmp_path / name
    path.write_text(body)
    sections = load_sections(path)
    code = compose(sections, "code", "fix this")
    assert code.sent == ["identity", "coding"] and code.skipped == ["email"]
    assert code.text == "You are a planning assistant.\n\nWrite tested code."
    mail = compose(sections, "template", "Write an EMAIL to Bob in python style")
    assert mail.sent == ["identity", "coding", "email"]  # keywords match any case
    plain = compose(sections, "fact", "capital of Peru?")
    assert plain.sent == ["identity"]
    # Same choice, same bytes (the cached prefix survives).
    assert compose(sections, "fact", "capital of Chile?").text == plain.text


def test_keywords_are_whole_words_anywhere_in_a_huge_prompt(tmp_path: Path) -> None:
    path = tmp_path / "p.md"
    path.write_text(MD_PROMPT)
    sections = load_sections(path)
    filler = "newsletter my_python_tool lettering python3 " * 50_000  # 2 MB, no keyword
    assert compose(sections, "other", filler).sent == ["identity"]
    middle = filler[: len(filler) // 2] + "(Python) " + filler[len(filler) // 2 :]
    assert compose(sections, "other", middle).sent == ["identity", "coding"]
    assert compose(sections, "other", "use C++ in an E-MAIL").sent == ["identity"]
    assert compose(sections, "other", "an EMAIL, please").sent == ["identity", "email"]


@pytest.mark.parametrize(
    "body,message",
    [
        ("sections: 3", "needs a top-level 'sections:' list"),
        ("sections:\n  - text: hi", "section 0 needs a 'name'"),
        ("sections:\n  - name: a\n    when: {kinds: [x]}\n    text: hi", "unknown condition"),
        ("sections:\n  - name: a\n    when: {query_types: [poem]}\n    text: hi", "'poem'"),
        ("sections:\n  - name: a\n    text: x\n  - name: a\n    text: y", "appears twice"),
    ],
)
def test_bad_system_files_name_the_problem(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(body)
    with pytest.raises(InputError, match=message):
        load_sections(path)


def write_inputs(tmp_path: Path) -> tuple[Path, Path]:
    chat, tools = tmp_path / "chat.json", tmp_path / "tools.json"
    chat.write_text(json.dumps(list(conversation(30))))
    tools.write_text(json.dumps(catalog(60)))
    return chat, tools


def test_inspect_shows_the_plan_without_calling_the_api(runner, tmp_path: Path) -> None:
    chat, tools = write_inputs(tmp_path)
    args = [
        "context",
        "inspect",
        "--context",
        str(chat),
        "--tools",
        str(tools),
        "--json",
        "Which deployments run in Kubernetes?",
    ]
    result = runner.invoke(app, args)  # no API key, default backend anthropic: no call made
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["tokens_after"] < report["tokens_before"]
    prune = report["prune"]
    assert prune["level"] == "medium" and prune["pinned"] == [[0, 1]]
    assert prune["summarized"] and "would be made" in prune["summary"]["state"]
    assert len(report["tools"]["selected"]) == 10
    assert report["cache"]["breakpoints"]
    text = runner.invoke(app, args[:-2] + [args[-1]])
    assert text.exit_code == 0
    for words in (
        "tokens (estimated)",
        "summarized",
        "would be made",
        "cache breakpoints",
        "10 of 60 tools",
    ):
        assert words in text.output


def test_inspect_keeps_the_turn_that_names_the_asked_identifier(runner, tmp_path: Path) -> None:
    chat = tmp_path / "long.json"
    chat.write_text(json.dumps(ops_chat()))
    args = ["context", "inspect", "--context", str(chat), "--json"]
    result = runner.invoke(app, [*args, QUESTION])
    assert result.exit_code == 0, result.output
    prune = json.loads(result.output)["prune"]
    assert prune["level"] == "medium" and prune["summarized"]
    # Messages 14-15 give alpha-7's port: quoted verbatim, not left to the summary.
    assert list(ANSWER) in prune["relevant"]
    # alpha-17's turn (26-27) is not taken for alpha-7's, and is for alpha-17's.
    assert [26, 27] not in prune["relevant"]
    other = json.loads(runner.invoke(app, [*args, "What was the port of alpha-17?"]).output)
    assert [26, 27] in other["prune"]["relevant"]


def test_inspect_reports_a_stored_summary_as_reused(runner, tmp_path: Path) -> None:
    chat, _ = write_inputs(tmp_path)
    asked = runner.invoke(app, ["ask", "--backend", "offline", "--context", str(chat), "Go on"])
    assert asked.exit_code == 0, asked.output
    report = json.loads(
        runner.invoke(app, ["context", "inspect", "--context", str(chat), "--json", "Go"]).output
    )
    assert report["prune"]["summary"]["state"] == "stored, would be reused"


def test_ask_with_a_system_file(runner, tmp_path: Path) -> None:
    path = tmp_path / "p.md"
    path.write_text(MD_PROMPT)
    result = runner.invoke(
        app,
        [
            "ask",
            "--backend",
            "offline",
            "--system-file",
            str(path),
            "--explain",
            "fix my python script",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "system sections sent: identity, coding" in result.output


def test_bad_inputs_are_one_line_errors(runner, tmp_path: Path) -> None:
    missing = runner.invoke(app, ["context", "inspect", "--context", "nope.json", "x"])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    both = runner.invoke(app, ["ask", "--system", "a", "--system-file", "b.md", "x"])
    assert both.exit_code == 2 and "either --system or --system-file" in both.output
