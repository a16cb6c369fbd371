"""Guess a prompt's query type (research, fact, code, template, other) when none is given.

Cheap keyword rules: the type picks a cache TTL and may pin a routing tier, so a wrong
guess costs little, and `--type` always wins.
"""

from __future__ import annotations

import re

from tars_opt.tokens import read_ends
from tars_opt.types import QueryType

_CODE = re.compile(
    r"```|\b(def|class|function|import|return|const|var|let)\b\s*\w|\b(bug|debug|stack ?trace|"
    r"exception|compile|compiler|regex|sql|python|javascript|typescript|java|rust|golang|c\+\+|"
    r"api endpoint|refactor|unit test|segfault|traceback)\b",
    re.IGNORECASE,
)
_TEMPLATE = re.compile(
    r"\b(write|draft|compose|fill in|format)\b.{0,40}\b(email|letter|message|template|"
    r"cover letter|invitation|announcement|reply|memo|post)\b|\btemplate\b",
    re.IGNORECASE,
)
_RESEARCH = re.compile(
    r"\b(compare|comparison|analy[sz]e|analysis|research|investigate|pros and cons|trade-?offs?|"
    r"in depth|in-depth|literature|survey|evaluate|assess|implications|why does|why do|"
    r"explain why|design|architecture|strategy)\b",
    re.IGNORECASE,
)
_FACT = re.compile(
    r"^\s*(what|who|when|where|which|how many|how much|how old|how far|define|is|are|does|did)\b",
    re.IGNORECASE,
)


def guess_query_type(prompt: str) -> QueryType:
    """The most likely query type of `prompt` (read as routing reads it: head and tail of
    a very long prompt, see tars_opt.tokens.read_ends)."""
    prompt = read_ends(prompt)
    if _CODE.search(prompt):
        return "code"
    if _TEMPLATE.search(prompt):
        return "template"
    words = len(prompt.split())
    if _RESEARCH.search(prompt) or words > 80:
        return "research"
    if _FACT.search(prompt) and words <= 25:
        return "fact"
    return "other"
