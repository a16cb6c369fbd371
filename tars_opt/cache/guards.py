"""Cheap checks that keep the semantic cache from serving a wrong answer.

Embeddings rate "How do I enable X" and "How do I disable X", or "France beat Germany" and
"Germany beat France", as near-identical. These rules veto a semantic hit when the two
prompts differ in negation, opposite words, numbers, named entities or the order of the
same words. They only ever turn a hit into a miss: a miss costs one API call, a false hit
costs a wrong answer.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_'.+#/-]*[A-Za-z0-9+#]|[A-Za-z0-9]")
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:[.,]\d+)*(?:st|nd|rd|th|%|k|m|x)?(?!\w)", re.I)


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


NEGATIONS = _wordset(
    "not no never none nobody nothing nowhere neither nor without cannot cant dont doesnt "
    "didnt isnt arent wasnt werent wont wouldnt shouldnt couldnt hasnt havent hadnt mustnt "
    "neednt aint"
)

# Words whose swap flips the meaning while an embedding barely moves.
_OPPOSITES = [
    ("enable", "disable"),
    ("add", "remove"),
    ("increase", "decrease"),
    ("before", "after"),
    ("above", "below"),
    ("max", "min"),
    ("maximum", "minimum"),
    ("allow", "deny"),
    ("allow", "block"),
    ("on", "off"),
    ("start", "stop"),
    ("open", "close"),
    ("install", "uninstall"),
    ("encrypt", "decrypt"),
    ("import", "export"),
    ("upload", "download"),
    ("push", "pull"),
    ("buy", "sell"),
    ("win", "lose"),
    ("true", "false"),
    ("with", "without"),
    ("more", "less"),
    ("best", "worst"),
    ("good", "bad"),
    ("better", "worse"),
    ("high", "low"),
    ("higher", "lower"),
    ("highest", "lowest"),
    ("fast", "slow"),
    ("faster", "slower"),
    ("gain", "lose"),
    ("gain", "loss"),
    ("pros", "cons"),
    ("advantages", "disadvantages"),
    ("positive", "negative"),
    ("first", "last"),
    ("old", "new"),
    ("older", "newer"),
    ("in", "out"),
    ("up", "down"),
    ("left", "right"),
    ("north", "south"),
    ("east", "west"),
    ("men", "women"),
    ("man", "woman"),
    ("male", "female"),
    ("boy", "girl"),
    ("love", "hate"),
    ("like", "dislike"),
    ("accept", "reject"),
    ("include", "exclude"),
    ("agree", "disagree"),
    ("legal", "illegal"),
    ("safe", "unsafe"),
    ("cheap", "expensive"),
    ("rich", "poor"),
    ("easy", "hard"),
    ("easy", "difficult"),
    ("lock", "unlock"),
    ("show", "hide"),
    ("mount", "unmount"),
    ("connect", "disconnect"),
    ("subscribe", "unsubscribe"),
    ("follow", "unfollow"),
    ("block", "unblock"),
    ("login", "logout"),
    ("sign in", "sign out"),
    ("compress", "decompress"),
    ("encode", "decode"),
    ("serialize", "deserialize"),
    ("sync", "async"),
    ("to", "from"),
    ("ascending", "descending"),
    ("sender", "receiver"),
    ("client", "server"),
    ("always", "never"),
    ("all", "none"),
    ("everyone", "nobody"),
    ("can", "cannot"),
    ("short", "long"),
    ("shorter", "longer"),
    ("shortest", "longest"),
    ("original", "new"),
    ("least", "most"),
    ("small", "large"),
    ("smallest", "largest"),
    ("big", "small"),
    ("biggest", "smallest"),
    ("hot", "cold"),
    ("wet", "dry"),
    ("light", "dark"),
    ("light", "heavy"),
    ("strong", "weak"),
    ("strengths", "weaknesses"),
    ("success", "failure"),
    ("rise", "fall"),
    ("input", "output"),
    ("inner", "outer"),
    ("internal", "external"),
    ("public", "private"),
    ("past", "future"),
    ("begin", "end"),
    ("early", "late"),
    ("earlier", "later"),
    ("young", "old"),
    ("younger", "older"),
    ("same", "different"),
    ("similar", "different"),
    ("friend", "enemy"),
    ("husband", "wife"),
    ("boyfriend", "girlfriend"),
    ("son", "daughter"),
    ("father", "mother"),
    ("brother", "sister"),
    ("king", "queen"),
    ("buy", "rent"),
    ("learn", "teach"),
    ("import", "export"),
]
_PREFIXES = ("un", "dis", "in", "im", "il", "ir", "non", "de", "anti", "mis", "counter")

# Capitalised words that start a sentence without naming anything.
_STARTERS = _wordset(
    "what how why who whom whose when where which is are was were do does did can could would "
    "should will shall may might must has have had i i'm i've my me we our you your it its "
    "this that these those there the a an and or but if in on at for of to from by with as "
    "please explain describe tell give list write create make show help compare summarize "
    "summarise generate find translate define suggest provide act imagine let lets let's "
    "pretend hi hello hey thanks thank ok okay yes no so also now then here rewrite fix "
    "convert build design draft outline analyze analyse review identify calculate name "
    "recommend using use consider assume given based"
)
_SPELLED = _wordset(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy "
    "eighty ninety hundred thousand million billion trillion first second third fourth fifth "
    "sixth seventh eighth ninth tenth half twice double triple dozen"
)


def _opposites() -> dict[str, set[str]]:
    table: dict[str, set[str]] = {}
    for a, b in _OPPOSITES:
        table.setdefault(a, set()).add(b)
        table.setdefault(b, set()).add(a)
    return table


_OPPOSITE = _opposites()


def words(text: str) -> list[str]:
    """Lower-cased word tokens; n't and apostrophes folded so "don't" is "dont"."""
    text = text.replace("\u2019", "'").replace("n't", "nt")
    return [w.lower().replace("'", "") for w in _WORD.findall(text)]


def numbers(text: str) -> Counter[str]:
    """Numbers in a text, digits (1,000 = 1000) and spelled-out, as a multiset."""
    found: Counter[str] = Counter(
        m.group(0).replace(",", "").lower() for m in _NUMBER.finditer(text)
    )
    found.update(w for w in words(text) if w in _SPELLED)
    return found


def entities(text: str) -> list[str]:
    """Named things in order of appearance: capitalised words (not sentence starters),
    acronyms, words mixing letters and digits, identifiers, paths, URLs, quoted strings."""
    out: list[str] = []
    for quoted in re.findall(r"[\"`]([^\"`]{1,80})[\"`]", text):
        out.append(quoted.strip().lower())
    sentence_start = True
    for m in re.finditer(r"\S+", text):
        raw = m.group(0)
        token = raw.strip("\"'`()[]{}<>,;:!?.").replace("\u2019", "'")
        starts = sentence_start
        sentence_start = raw.endswith((".", "!", "?", ":")) and not re.search(r"\w\.\w", raw)
        if not token:
            continue
        lower = token.lower().removesuffix("'s")
        named = (
            (token[0].isupper() and not (starts and lower in _STARTERS) and lower not in _STARTERS)
            or (any(c.isdigit() for c in token) and any(c.isalpha() for c in token))
            or re.search(r"[_/\\]|\w\.\w|://|[a-z][A-Z]", token) is not None
        )
        if named:
            out.append(lower)
    return list(dict.fromkeys(out))


@dataclass(frozen=True)
class Veto:
    """Why a semantic hit was refused."""

    guard: str
    detail: str


def _negated(ws: Sequence[str]) -> bool:
    return any(w in NEGATIONS for w in ws)


def _opposite_words(a: set[str], b: set[str]) -> str | None:
    only_a, only_b = a - b, b - a
    for w in only_a:
        for o in _OPPOSITE.get(w, ()):
            if o in only_b:
                return f"{w} / {o}"
        for p in _PREFIXES:
            if p + w in only_b:
                return f"{w} / {p + w}"
            if w.startswith(p) and w[len(p) :] in only_b:
                return f"{w} / {w[len(p) :]}"
    return None


def _contained(entity: str, text_lower: str, ws: set[str]) -> bool:
    # Whole words only: the entity "c" (as in "Round C") is not in every text with a c.
    if entity in ws:
        return True
    return re.search(rf"(?<!\w){re.escape(entity)}(?!\w)", text_lower) is not None


def _first_positions(items: Sequence[str], ws: Sequence[str]) -> list[str]:
    """`items` that occur as words in `ws`, in order of their first occurrence there."""
    first: dict[str, int] = {}
    for i, w in enumerate(ws):
        first.setdefault(w, i)
    found = [x for x in items if x in first]
    return sorted(found, key=lambda x: first[x])


def _swapped(pool: set[str], wa: Sequence[str], wb: Sequence[str]) -> tuple[list[str], list[str]]:
    """The order of the `pool` words both prompts contain, in each prompt."""
    both = [w for w in pool if w in set(wa) and w in set(wb)]
    return _first_positions(both, wa), _first_positions(both, wb)


def check(a: str, b: str) -> Veto | None:
    """The first guard that refuses to treat prompt `b` as a repeat of prompt `a`, or None."""
    wa, wb = words(a), words(b)
    if _negated(wa) != _negated(wb):
        return Veto("negation", "one prompt is negated, the other is not")
    flipped = _opposite_words(set(wa), set(wb))
    if flipped:
        return Veto("opposite", flipped)
    na, nb = numbers(a), numbers(b)
    if na != nb:
        return Veto("numbers", f"{sorted(na)} vs {sorted(nb)}")
    ea, eb = entities(a), entities(b)
    la, lb = a.lower(), b.lower()
    sa, sb = set(wa), set(wb)
    missing = [e for e in ea if not _contained(e, lb, sb)] + [
        e for e in eb if not _contained(e, la, sa)
    ]
    if missing:
        return Veto("entities", f"{missing[0]!r} is in one prompt only")
    # Role swaps: named things, or both sides of an opposite pair, in another order
    # ("France beat Germany" / "Germany beat France", "Gemini woman, Libra man" / ...).
    named = {w for e in ea + eb for w in words(e)}
    paired = {w for w in set(wa) & set(wb) if w in _OPPOSITE and _OPPOSITE[w] & set(wa) & set(wb)}
    for pool in (named, paired):
        order_a, order_b = _swapped(pool, wa, wb)
        if order_a != order_b:
            return Veto("order", f"{order_a} vs {order_b}")
    if Counter(wa) == Counter(wb) and wa != wb:
        return Veto("order", "same words in another order")
    return None
