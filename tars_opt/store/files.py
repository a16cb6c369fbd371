"""Files: user-only folders, files replaced in one step, and reading what a user hands us
(conversation and tool files, prompts from stdin) with one-line errors."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from tars_opt.errors import InputError

ROLES = {"user", "assistant"}


def read_text_file(path: str | Path, what: str, error: type[InputError] = InputError) -> str:
    """A user's text file, or one line (as `error`) saying why it cannot be read."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{what} file {path} does not exist: check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"cannot read {what} file {path}: {exc}") from None


def _load_json(path: str | Path, what: str) -> Any:
    text = read_text_file(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{what} file {path} is not valid JSON (line {exc.lineno}, column {exc.colno}): "
            "fix the syntax there"
        ) from None


def read_context(path: str | Path, *, open_turn: bool = False) -> tuple[dict[str, Any], ...]:
    """A conversation file: a JSON list of {role: user|assistant, content: str | blocks}.

    It ends with an assistant message (the prompt is the next user turn) unless
    `open_turn`: then it may also end with the user turn to answer (an agent loop's turn
    that hands back tool results)."""
    data = _load_json(path, "context")
    if isinstance(data, dict) and isinstance(data.get("messages"), list):
        data = data["messages"]
    if not isinstance(data, list):
        raise InputError(f"context file {path} must hold a JSON list of {{role, content}} messages")
    out = []
    for i, msg in enumerate(data):
        if not isinstance(msg, dict) or "role" not in msg or "content" not in msg:
            raise InputError(f"context file {path}: message {i} needs 'role' and 'content'")
        if msg["role"] not in ROLES:
            raise InputError(
                f"context file {path}: message {i} has role {msg['role']!r}; use 'user' or "
                "'assistant' (put system text in --system)"
            )
        if not isinstance(msg["content"], str | list):
            raise InputError(
                f"context file {path}: message {i} content must be text or a list of blocks"
            )
        out.append({"role": msg["role"], "content": msg["content"]})
    if out and out[-1]["role"] == "user" and not open_turn:
        raise InputError(
            f"context file {path} ends with a user message: the prompt is the next user turn, "
            "so end the history with an assistant message (or give no prompt: the file's "
            "last turn is then the one answered)"
        )
    return tuple(out)


def read_tools(path: str | Path) -> tuple[dict[str, Any], ...]:
    """A tools file: a JSON list of tool schemas, each with a name and an input_schema."""
    data = _load_json(path, "tools")
    if isinstance(data, dict) and isinstance(data.get("tools"), list):
        data = data["tools"]
    if not isinstance(data, list):
        raise InputError(f"tools file {path} must hold a JSON list of tool schemas")
    names: set[str] = set()
    for i, tool in enumerate(data):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise InputError(f"tools file {path}: tool {i} needs a 'name'")
        if "type" not in tool and not isinstance(tool.get("input_schema"), dict):
            raise InputError(f"tools file {path}: tool {tool['name']!r} needs an 'input_schema'")
        if tool["name"] in names:
            raise InputError(f"tools file {path}: tool name {tool['name']!r} appears twice")
        names.add(tool["name"])
    return tuple(data)


def read_prompt(prompt: str | None, stdin: Any) -> str:
    """The prompt argument, or standard input when it is '-' or missing and stdin is piped."""
    if prompt == "-" or (prompt is None and stdin is not None and not stdin.isatty()):
        text = stdin.read()
    else:
        text = prompt or ""
    if not text.strip():
        raise InputError("no prompt: give it as an argument, or pipe it in with '-'")
    return text


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and parents) readable by the user only; the ledger holds prompts.

    Every directory made here is 0700, the missing parents too (`mkdir(parents=True)`
    would give them the umask's default, usually 0755).
    """
    missing: list[Path] = []
    walk = path
    while not walk.exists() and walk != walk.parent:
        missing.append(walk)
        walk = walk.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
    if not path.is_dir():
        path.mkdir(mode=0o700)  # raises the OSError that says why (a file is in the way)
    return path


def atomic_write_bytes(path: str | Path, data: bytes, *, private: bool = False) -> Path:
    """Replace `path`'s content in one step: a crash or a full disk leaves the old file or
    the new one, never part of one.

    The data goes to a temporary file in the same folder (os.replace is atomic only within
    one file system), reaches the disk (fsync), then takes the name. The file is the user's
    only (0600) when `private`, else it gets an ordinary new file's mode (0666 less the
    umask). The temporary file is removed when anything fails, and the error re-raised.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str, *, private: bool = False) -> Path:
    """atomic_write_bytes for text, as UTF-8."""
    return atomic_write_bytes(path, text.encode("utf-8"), private=private)
