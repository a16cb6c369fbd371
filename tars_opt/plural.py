"""How every command, report and log line writes a count of things: `1 call`, `3 calls`."""

from __future__ import annotations


def counted(n: float, noun: str, plural: str | None = None) -> str:
    """`n` and its noun, singular for exactly one: `1 cached answer`, `2 entries`.

    `plural` when it is not `noun` + "s" (`entry`/`entries`); thousands separated
    (`1,204 calls`). A multi-word noun pluralizes as a whole (`cached answer(s)`).
    """
    word = noun if n == 1 else (plural if plural is not None else f"{noun}s")
    return f"{n:,} {word}" if isinstance(n, int) else f"{n:,g} {word}"
