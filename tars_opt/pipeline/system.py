"""The system prompt a request goes with: the one given, else the sections of a modular
system-prompt file (the caller's, or the config's system_file) that match the request."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tars_opt.config.schema import Config
from tars_opt.context.sysprompt import compose, load_sections
from tars_opt.pipeline.classify import guess_query_type


@dataclass(frozen=True)
class SystemPrompt:
    text: str | None
    # Names of the file's sections that were sent; None when no file was read.
    sections: list[str] | None = None


def system_prompt(
    config: Config,
    prompt: str,
    query_type: str | None = None,
    *,
    system: str | None = None,
    system_file: Path | None = None,
) -> SystemPrompt:
    """`system` as given; else the sections of `system_file`, or of the config's system_file,
    whose conditions match the request (its query type guessed from `prompt` if None)."""
    if system is not None and system_file is not None:
        raise ValueError("give either a system prompt or a system-prompt file, not both")
    path = system_file or (config.system_file if system is None else None)
    if path is None:
        return SystemPrompt(system)
    composed = compose(load_sections(path), query_type or guess_query_type(prompt), prompt)
    return SystemPrompt(composed.text or None, composed.sent)
