"""The system prompt a request goes with, as the library chooses it (the CLI's --system and
--system-file go through it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tars_opt.config.loader import load_config
from tars_opt.config.schema import Config
from tars_opt.pipeline.system import SystemPrompt, system_prompt

SECTIONS = """## identity
You are a planning assistant.

## coding
<!-- when: query_types=code -->
Write tested code.

## email
<!-- when: keywords=email -->
Keep emails short.
"""


def defaults(**overrides: object) -> Config:
    return load_config(overrides=overrides).config


@pytest.fixture
def sections(tmp_path: Path) -> Path:
    path = tmp_path / "system.md"
    path.write_text(SECTIONS)
    return path


def test_a_given_system_prompt_is_sent_as_is() -> None:
    assert system_prompt(defaults(), "hi", system="Be brief.") == SystemPrompt("Be brief.", None)
    assert system_prompt(defaults(), "hi") == SystemPrompt(None, None)


def test_a_file_sends_the_matching_sections_with_the_guessed_type(sections: Path) -> None:
    chosen = system_prompt(
        defaults(), "def f(): pass  # fix this python code", system_file=sections
    )
    assert chosen.sections == ["identity", "coding"]
    assert chosen.text == "You are a planning assistant.\n\nWrite tested code."
    # A given query type wins over the guess.
    assert system_prompt(defaults(), "draft an email", "fact", system_file=sections).sections == [
        "identity",
        "email",
    ]


def test_the_config_file_applies_unless_a_system_prompt_is_given(sections: Path) -> None:
    config = defaults(**{"context.system_file": str(sections)})
    assert system_prompt(config, "hello").sections == ["identity"]
    assert system_prompt(config, "hello", system="Mine.") == SystemPrompt("Mine.", None)


def test_a_prompt_and_a_file_together_are_refused(sections: Path) -> None:
    with pytest.raises(ValueError, match="not both"):
        system_prompt(defaults(), "hi", system="a", system_file=sections)
