"""Request validation of the fake Messages API: the 400s the real API answers.

`message_params_error(body)` returns the API's message for the first problem found, or None.
Two levels:
  basic (always): required fields and their types, roles, tool names, cache_control markers
    (type, ttl, at most 4 counting the top-level one, longer TTLs first);
  strict (`strict=True`, the default) adds the rules an agent loop trips over:
    - custom tools need an input_schema; tool names are unique;
    - thinking: a known type; `enabled` needs 1024 <= budget_tokens < max_tokens; thinking
      may not be on while tool_choice forces a tool;
    - no cache_control on thinking blocks or empty text blocks; system blocks are text;
    - `system`-role messages (which newer clients such as Claude Code send inside `messages`)
      may only hold text; they are transparent to the turn structure: they neither start nor
      end a turn, so [user, system, assistant] alternates and [assistant(tool_use), system,
      user(tool_result)] pairs the tool call with its result;
    - consecutive messages of one role form one turn, as the API combines them;
    - the first turn is a user turn; only the final assistant message may be empty; text
      blocks are never empty;
    - every `tool_use` of an assistant turn is answered by a `tool_result` in the leading
      run of tool_result blocks of the next turn, which must be a user turn; every
      `tool_result` refers to a `tool_use` of the assistant turn just before it; ids are unique;
    - a server tool result (`web_search_tool_result`, ...) follows its `server_tool_use` in the
      same assistant turn;
    - thinking blocks carry the signature the fake issued for exactly that text, redacted
      thinking its data unchanged; neither may appear in a user turn;
    - with `thinking: {type: "enabled"}`, an assistant turn that a tool_result answers last
      (the current tool loop) starts with a thinking block.
Unknown fields (top-level or in blocks) are accepted: betas add them all the time. Fields of
a beta the API knows (`BETA_FIELDS`) are refused, as by the API, unless the request names
that beta in its `anthropic-beta` header (`beta_error`).
"""

from __future__ import annotations

from typing import Any

from .thinking import redacted_data_ok, thinking_signature_ok
from .tokens import cache_control_error

ROLES = ("user", "assistant", "system")
# Blocks a server tool produces inside an assistant turn, answering a server_tool_use.
SERVER_RESULT_TYPES = frozenset(
    {
        "web_search_tool_result",
        "web_fetch_tool_result",
        "code_execution_tool_result",
        "bash_code_execution_tool_result",
        "text_editor_code_execution_tool_result",
        "tool_search_tool_result",
    }
)
THINKING_TYPES = ("thinking", "redacted_thinking")
# Top-level fields the API takes only with this beta in the `anthropic-beta` header.
BETA_FIELDS = {"context_management": "context-management-2025-06-27"}


def header_betas(value: str | None) -> frozenset[str]:
    """The betas an `anthropic-beta` header value names (a comma-separated list)."""
    return frozenset(b.strip() for b in (value or "").split(",") if b.strip())


def beta_error(body: Any, betas: frozenset[str]) -> str | None:
    """The API's 400 message for a beta field sent without its beta, or None."""
    if not isinstance(body, dict):
        return None
    for name, beta in BETA_FIELDS.items():
        if name in body and beta not in betas:
            return f"{name}: Extra inputs are not permitted"
    return None


def _blocks(content: Any) -> list[Any]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(content)


def _is_empty(content: Any) -> bool:
    return content in ("", [])


def _basic_error(body: Any, need_max_tokens: bool) -> str | None:
    if not isinstance(body, dict):
        return "body: Input should be a valid dictionary"
    required = ("model", "max_tokens", "messages") if need_max_tokens else ("model", "messages")
    for name in required:
        if name not in body:
            return f"{name}: Field required"
    if not isinstance(body["model"], str) or not body["model"]:
        return "model: Input should be a valid string"
    if need_max_tokens:
        max_tokens = body["max_tokens"]
        # 0 is allowed: it warms the prompt cache without generating (see the SDK's docs).
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
            return "max_tokens: Input should be a valid integer"
        if max_tokens < 0:
            return "max_tokens: Input should be greater than or equal to 0"
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            return f"messages.{i}.role: Input should be 'user', 'assistant' or 'system'"
        content = message.get("content")
        if not isinstance(content, str | list):
            return f"messages.{i}.content: Field required"
        for j, block in enumerate(content if isinstance(content, list) else []):
            if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                return f"messages.{i}.content.{j}.type: Field required"
    if "system" in body and not isinstance(body["system"], str | list):
        return "system: Input should be a valid string or list of text blocks"
    tools = body.get("tools", [])
    if not isinstance(tools, list) or any(
        not isinstance(t, dict) or not isinstance(t.get("name"), str) or not t["name"]
        for t in tools
    ):
        return "tools: every tool needs a name"
    return cache_control_error(body)


def _blocks_error(body: dict[str, Any]) -> str | None:
    """Block-level rules: system text only, where cache_control may not go."""
    for j, block in enumerate(body["system"] if isinstance(body.get("system"), list) else []):
        if not isinstance(block, dict) or block.get("type") != "text":
            return f"system.{j}.type: Input should be 'text'"
    for i, message in enumerate(body["messages"]):
        content = message["content"]
        for j, block in enumerate(content if isinstance(content, list) else []):
            kind = block["type"]
            if message["role"] == "system" and kind != "text":
                return f"messages.{i}.content.{j}.type: system messages may only contain text"
            if block.get("cache_control") is None:
                continue
            if kind in THINKING_TYPES:
                return (
                    f"messages.{i}.content.{j}.{kind}.cache_control: Extra inputs are not permitted"
                )
            if kind == "text" and block.get("text") == "":
                return (
                    f"messages.{i}.content.{j}.text: cache_control cannot be set for empty "
                    "text blocks"
                )
    return None


def _tools_error(tools: Any) -> str | None:
    if not isinstance(tools, list):
        return "tools: Input should be a valid list"
    names: set[str] = set()
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str) or not tool["name"]:
            return f"tools.{i}.name: Field required"
        # Custom tools (no type, or type "custom") declare their input; server tools do not.
        if tool.get("type") in (None, "custom") and not isinstance(tool.get("input_schema"), dict):
            return f"tools.{i}.custom.input_schema: Field required"
        if tool["name"] in names:
            return "tools: Tool names must be unique."
        names.add(tool["name"])
    return None


def _thinking_config_error(body: dict[str, Any], need_max_tokens: bool) -> str | None:
    thinking = body.get("thinking")
    if thinking is None:
        return None
    if not isinstance(thinking, dict) or thinking.get("type") not in (
        "enabled",
        "disabled",
        "adaptive",
        "between_tools",
    ):
        return "thinking.type: Input should be 'enabled', 'disabled', 'adaptive' or 'between_tools'"
    if thinking.get("display") not in (None, "summarized", "omitted"):
        return "thinking.display: Input should be 'summarized' or 'omitted'"
    if thinking["type"] == "enabled":
        budget = thinking.get("budget_tokens")
        if isinstance(budget, bool) or not isinstance(budget, int):
            return "thinking.enabled.budget_tokens: Field required"
        if budget < 1024:
            return "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
        if need_max_tokens and body["max_tokens"] <= budget:
            return "`max_tokens` must be greater than `thinking.budget_tokens`."
    if thinking["type"] in ("enabled", "adaptive"):
        choice = body.get("tool_choice")
        if isinstance(choice, dict) and choice.get("type") in ("any", "tool"):
            return "Thinking may not be enabled when tool_choice forces tool use."
    return None


def _turns(messages: list[dict[str, Any]]) -> list[tuple[str, list[tuple[int, int, Any]]]]:
    """Consecutive same-role messages merged into turns of (message index, block index, block).

    System-role messages are skipped: they neither start nor end a turn.
    """
    turns: list[tuple[str, list[tuple[int, int, Any]]]] = []
    for i, message in enumerate(messages):
        role = message["role"]
        if role == "system":
            continue
        blocks = [(i, j, b) for j, b in enumerate(_blocks(message["content"]))]
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role, blocks))
    return turns


def _conversation_error(body: dict[str, Any]) -> str | None:
    messages: list[dict[str, Any]] = body["messages"]
    last = len(messages) - 1
    for i, message in enumerate(messages):
        content = message["content"]
        if _is_empty(content) and not (i == last and message["role"] == "assistant"):
            return (
                f"messages.{i}: all messages must have non-empty content except for the "
                "optional final assistant message"
            )
        for j, block in enumerate(content if isinstance(content, list) else []):
            if block["type"] == "text" and block.get("text") == "":
                return f"messages.{i}.content.{j}: text content blocks must be non-empty"
    turns = _turns(messages)
    if not turns or turns[0][0] != "user":
        return 'messages: first message must use the "user" role'
    seen_tool_ids: set[str] = set()
    thinking_enabled = (body.get("thinking") or {}).get("type") == "enabled"
    for t, (role, blocks) in enumerate(turns):
        problem = (
            _assistant_turn_error(blocks, seen_tool_ids)
            if role == "assistant"
            else _user_turn_error(blocks, turns[t - 1] if t else None)
        )
        if problem:
            return problem
        if role != "assistant":
            continue
        tool_uses = [(i, b) for i, _, b in blocks if b["type"] == "tool_use"]
        if not tool_uses:
            continue
        answered: set[str] = set()
        following = turns[t + 1] if t + 1 < len(turns) else None
        if following is not None:
            for _, _, block in following[1]:
                if block["type"] != "tool_result":
                    break  # tool results come first; anything after does not answer
                answered.add(block.get("tool_use_id"))
        missing = [str(b.get("id")) for _, b in tool_uses if b.get("id") not in answered]
        if missing:
            return (
                f"messages.{tool_uses[-1][0]}: `tool_use` ids were found without `tool_result` "
                f"blocks immediately after: {', '.join(missing)}. Each `tool_use` block must "
                "have a corresponding `tool_result` block in the next message."
            )
        if thinking_enabled and t + 2 == len(turns) and blocks[0][2]["type"] not in THINKING_TYPES:
            i, j, block = blocks[0]
            return (
                f"messages.{i}.content.{j}.type: Expected `thinking` or `redacted_thinking`, "
                f"but found `{block['type']}`. When `thinking` is enabled, a final `assistant` "
                "message must start with a thinking block (preceding the lastmost set of "
                "`tool_use` and `tool_result` blocks). We recommend you include thinking blocks "
                "from previous turns. To avoid this requirement, disable `thinking`."
            )
    return None


def _assistant_turn_error(
    blocks: list[tuple[int, int, Any]], seen_tool_ids: set[str]
) -> str | None:
    server_ids: set[str] = set()
    for i, j, block in blocks:
        kind = block["type"]
        where = f"messages.{i}.content.{j}"
        if kind == "tool_result":
            return f"{where}: `tool_result` blocks may only appear in `user` messages"
        if kind in ("tool_use", "server_tool_use"):
            tool_id = block.get("id")
            if not isinstance(tool_id, str) or not tool_id:
                return f"{where}.id: Field required"
            if tool_id in seen_tool_ids:
                return f"{where}: `tool_use` ids must be unique"
            seen_tool_ids.add(tool_id)
            if kind == "server_tool_use":
                server_ids.add(tool_id)
        elif kind in SERVER_RESULT_TYPES and block.get("tool_use_id") not in server_ids:
            return (
                f"{where}: unexpected `tool_use_id` found in `{kind}` blocks: "
                f"{block.get('tool_use_id')}. Each `{kind}` block must have a corresponding "
                "`server_tool_use` block before it."
            )
        elif kind == "thinking":
            if not thinking_signature_ok(block.get("thinking"), block.get("signature")):
                return f"{where}: Invalid `signature` in `thinking` block"
        elif kind == "redacted_thinking" and not redacted_data_ok(block.get("data")):
            return f"{where}: Invalid `data` in `redacted_thinking` block"
    return None


def _user_turn_error(
    blocks: list[tuple[int, int, Any]], previous: tuple[str, list[tuple[int, int, Any]]] | None
) -> str | None:
    offered = {
        b.get("id")
        for _, _, b in (previous[1] if previous is not None else [])
        if b["type"] == "tool_use"
    }
    answered: set[str] = set()
    for i, j, block in blocks:
        kind = block["type"]
        where = f"messages.{i}.content.{j}"
        if kind in ("tool_use", "server_tool_use", *THINKING_TYPES, *SERVER_RESULT_TYPES):
            return f"{where}: `{kind}` blocks may only appear in `assistant` messages"
        if kind != "tool_result":
            continue
        tool_use_id = block.get("tool_use_id")
        if tool_use_id not in offered:
            return (
                f"{where}: unexpected `tool_use_id` found in `tool_result` blocks: {tool_use_id}. "
                "Each `tool_result` block must have a corresponding `tool_use` block in the "
                "previous message."
            )
        if tool_use_id in answered:
            return (
                f"{where}: each tool_use must have a single result. Found multiple "
                f"`tool_result` blocks with id: {tool_use_id}"
            )
        answered.add(tool_use_id)
    return None


def message_params_error(
    body: Any, *, need_max_tokens: bool = True, strict: bool = True
) -> str | None:
    """The API's 400 message for an invalid Messages request, or None if it is acceptable.

    `need_max_tokens=False` checks a count_tokens body; `strict=False` skips the conversation
    rules (see the module docstring) and keeps the basic ones.
    """
    problem = _basic_error(body, need_max_tokens)
    if problem or not strict:
        return problem
    return (
        _tools_error(body.get("tools", []))
        or _thinking_config_error(body, need_max_tokens)
        or _blocks_error(body)
        or _conversation_error(body)
    )
