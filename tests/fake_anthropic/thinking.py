"""Signatures of thinking and redacted_thinking blocks issued by the fake API.

The real API signs each thinking block so that a modified block is refused when an agent
sends it back. The fake does the same with an HMAC under a fixed key: a signature verifies
only against the exact thinking text the fake returned with it (the empty string when the
request asked for `display: "omitted"`). Nothing is kept in memory, so a conversation stays
valid across `reset()`, a restart, or another FakeAnthropic instance, as real signatures do.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

_KEY = b"tests.fake_anthropic thinking signature key"
_PREFIX = "fake1"
_NONCE_BYTES = 12


def _mac(kind: str, nonce: bytes, text: str) -> bytes:
    return hmac.new(_KEY, kind.encode() + b"\x00" + nonce + text.encode(), hashlib.sha256).digest()


def _nonce(seed: str) -> bytes:
    return hashlib.sha256(seed.encode()).digest()[:_NONCE_BYTES]


def _encode(nonce: bytes, mac: bytes) -> str:
    return _PREFIX + base64.b64encode(nonce + mac).decode()


def _decode(value: object) -> tuple[bytes, bytes] | None:
    if not isinstance(value, str) or not value.startswith(_PREFIX):
        return None
    try:
        raw = base64.b64decode(value[len(_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != _NONCE_BYTES + 32:
        return None
    return raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]


def sign_thinking(text: str, seed: str) -> str:
    """The signature for a thinking block whose returned `thinking` is `text`.

    `seed` (e.g. message id and block index) makes equal texts get different signatures.
    """
    nonce = _nonce(seed)
    return _encode(nonce, _mac("thinking", nonce, text))


def thinking_signature_ok(text: object, signature: object) -> bool:
    """True when `signature` was issued by the fake for exactly this thinking `text`."""
    parts = _decode(signature)
    if parts is None or not isinstance(text, str):
        return False
    nonce, mac = parts
    return hmac.compare_digest(mac, _mac("thinking", nonce, text))


def redacted_data(seed: str) -> str:
    """Opaque `data` of a redacted_thinking block."""
    nonce = _nonce(seed)
    return _encode(nonce, _mac("redacted", nonce, ""))


def redacted_data_ok(data: object) -> bool:
    """True when `data` is a redacted_thinking payload the fake issued, unchanged."""
    parts = _decode(data)
    if parts is None:
        return False
    nonce, mac = parts
    return hmac.compare_digest(mac, _mac("redacted", nonce, ""))
