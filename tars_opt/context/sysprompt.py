"""Modular system prompts: named sections with conditions; only matching ones are sent.

A big agent prompt (~19k tokens) is mostly sections that matter for some
requests only. Written as YAML::

    sections:
      - name: identity            # no `when`: always sent
        text: You are ...
      - name: coding
        when: {query_types: [code], keywords: [python, traceback]}
        text: When you write code ...

or as Markdown, one `## name` heading per section and an optional condition line::

    ## coding
    <!-- when: query_types=code; keywords=python, traceback -->
    When you write code ...

A section is sent when it has no condition, or its query types include the request's,
or one of its keywords appears in the prompt (whole word, any case). Sections keep the
file's order and are joined the same way every time, so equal choices give equal bytes
(and the cached prefix survives).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tars_opt.errors import InputError
from tars_opt.store.files import read_text_file
from tars_opt.types import QUERY_TYPES

_HEADING = re.compile(r"^##\s+(.+?)\s*$")
_WHEN = re.compile(r"^<!--\s*when:\s*(.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Section:
    name: str
    text: str
    query_types: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()

    @property
    def always(self) -> bool:
        return not self.query_types and not self.keywords

    def matches(self, query_type: str | None, prompt: str, *, lowered: str | None = None) -> bool:
        """Whether this section belongs in the system prompt of this request (`lowered`:
        the prompt in lower case, when the caller has it already)."""
        if self.always or (query_type is not None and query_type in self.query_types):
            return True
        low = prompt.lower() if lowered is None else lowered
        return any(_has_word(low, k.lower()) for k in self.keywords if k)


def _is_word_char(char: str) -> bool:
    return char.isalnum() or char == "_"


def _has_word(text: str, word: str) -> bool:
    """Whether `word` occurs in `text` not touching a word character on either side.

    Plain `str.find`, not a case-insensitive regex: a 2 MB pasted prompt takes ~1 ms per
    keyword instead of a few hundred."""
    start = text.find(word)
    while start != -1:
        end = start + len(word)
        if (start == 0 or not _is_word_char(text[start - 1])) and (
            end == len(text) or not _is_word_char(text[end])
        ):
            return True
        start = text.find(word, start + 1)
    return False


@dataclass(frozen=True)
class Composed:
    text: str
    sent: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _section(path: Path, name: str, text: str, when: dict[str, Any]) -> Section:
    unknown = set(when) - {"query_types", "keywords"}
    if unknown:
        raise InputError(
            f"system file {path}: section {name!r} has unknown condition {sorted(unknown)[0]!r}; "
            "use query_types and keywords"
        )
    types = tuple(str(t) for t in when.get("query_types") or ())
    bad = [t for t in types if t not in QUERY_TYPES]
    if bad:
        raise InputError(
            f"system file {path}: section {name!r} query type {bad[0]!r} is not one of "
            f"{', '.join(QUERY_TYPES)}"
        )
    if not text.strip():
        raise InputError(f"system file {path}: section {name!r} has no text")
    keywords = tuple(str(k) for k in when.get("keywords") or () if str(k).strip())
    return Section(name, text.strip(), types, keywords)


def _parse_markdown(path: Path, raw: str) -> list[Section]:
    sections: list[Section] = []
    name: str | None = None
    body: list[str] = []
    when: dict[str, Any] = {}

    def close() -> None:
        if name is not None:
            sections.append(_section(path, name, "\n".join(body), when))

    for line in raw.splitlines():
        heading = _HEADING.match(line)
        if heading:
            close()
            name, body, when = heading.group(1), [], {}
            continue
        cond = _WHEN.match(line.strip())
        if cond and name is not None and not body:
            for part in cond.group(1).split(";"):
                key, _, value = part.partition("=")
                when[key.strip()] = [v.strip() for v in value.split(",") if v.strip()]
            continue
        if name is None:
            if line.strip():
                raise InputError(
                    f"system file {path}: text before the first '## section' heading; "
                    "put it under a heading"
                )
            continue
        body.append(line)
    close()
    return sections


def load_sections(path: str | Path) -> list[Section]:
    """Read a modular system prompt (.yaml/.yml or .md); one-line InputError when wrong."""
    path = Path(path)
    raw = read_text_file(path, "system")
    if path.suffix.lower() in {".md", ".markdown"}:
        sections = _parse_markdown(path, raw)
    else:
        try:
            data = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise InputError(f"system file {path} is not valid YAML: fix the syntax") from None
        items = data.get("sections") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise InputError(f"system file {path} needs a top-level 'sections:' list")
        sections = []
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise InputError(f"system file {path}: section {i} needs a 'name'")
            when = item.get("when") or {}
            if not isinstance(when, dict):
                raise InputError(f"system file {path}: 'when' of {item['name']!r} must be a map")
            sections.append(_section(path, item["name"], str(item.get("text") or ""), when))
    if not sections:
        raise InputError(f"system file {path} has no sections")
    names = [s.name for s in sections]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise InputError(f"system file {path}: section name {dup!r} appears twice")
    return sections


def compose(sections: list[Section], query_type: str | None, prompt: str) -> Composed:
    """The system prompt for one request: matching sections in file order."""
    low = prompt.lower()
    sent = [s for s in sections if s.matches(query_type, prompt, lowered=low)]
    return Composed(
        text="\n\n".join(s.text for s in sent),
        sent=[s.name for s in sent],
        skipped=[s.name for s in sections if s not in sent],
    )
