#!/usr/bin/env bash
# Claude Code, run headless (`claude -p`), through `tars-opt serve` to the tests' fake API:
# checks that the gateway passes Claude Code's requests (betas, ?beta=true, thinking,
# context_management, tools...) and that it gets an answer. No real API, no real key.
#
#   scripts/claude_code_gateway.sh ["prompt"]
#
# Uses `claude` from PATH, else installs @anthropic-ai/claude-code with npm into
# ${CLAUDE_CODE_DIR:-~/.cache/tars-opt/claude-code} once. PYTHON picks the interpreter that
# has tars-opt installed (default: python3). Exit 0 when Claude Code answered and the gateway
# recorded its calls.
set -euo pipefail

PROMPT="${1:-Say hello in one short sentence.}"
PYTHON="${PYTHON:-python3}"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

CLAUDE="$(command -v claude || true)"
if [ -z "$CLAUDE" ]; then
  DIR="${CLAUDE_CODE_DIR:-$HOME/.cache/tars-opt/claude-code}"
  if [ ! -x "$DIR/node_modules/.bin/claude" ]; then
    command -v npm >/dev/null || { echo "error: npm not found: install Node.js, or put claude on PATH" >&2; exit 2; }
    mkdir -p "$DIR"
    npm install --prefix "$DIR" --no-audit --no-fund --silent @anthropic-ai/claude-code
  fi
  CLAUDE="$DIR/node_modules/.bin/claude"
fi

export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export TARS_OPT_HOME="$WORK/tars-opt"

"$PYTHON" -m tests.fake_anthropic --port 0 --print-url >"$WORK/fake.url" 2>"$WORK/fake.log" &
PIDS+=($!)
for _ in $(seq 1 300); do [ -s "$WORK/fake.url" ] && break; sleep 0.1; done
UPSTREAM="$(head -n1 "$WORK/fake.url")"
[ -n "$UPSTREAM" ] || { echo "error: the fake API did not start: $(cat "$WORK/fake.log")" >&2; exit 1; }

PORT="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$PYTHON" -m tars_opt serve --port "$PORT" --upstream "$UPSTREAM" 2>"$WORK/serve.log" &
PIDS+=($!)
GATEWAY="http://127.0.0.1:$PORT"
for _ in $(seq 1 600); do
  curl -sf "$GATEWAY/tars-opt/health" >/dev/null 2>&1 && break
  kill -0 "${PIDS[1]}" 2>/dev/null || { echo "error: tars-opt serve exited: $(cat "$WORK/serve.log")" >&2; exit 1; }
  sleep 0.1
done

echo "fake API $UPSTREAM <- tars-opt serve $GATEWAY <- $("$CLAUDE" --version 2>/dev/null || echo claude)"
ANSWER="$(HOME="$WORK/home" ANTHROPIC_BASE_URL="$GATEWAY" ANTHROPIC_API_KEY="sk-ant-fake-claude-code" \
  CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 DISABLE_AUTOUPDATER=1 DISABLE_TELEMETRY=1 \
  timeout 180 "$CLAUDE" -p "$PROMPT" </dev/null)"
echo "claude answered: $ANSWER"
[ -n "$ANSWER" ] || { echo "error: Claude Code gave no answer" >&2; exit 1; }

sleep 1  # rows are written just after the answer
"$PYTHON" -m tars_opt log -n 10
ROWS="$("$PYTHON" -c 'from tars_opt import open_app; print(len(open_app().ledger.recent(100)))')"
[ "$ROWS" -gt 0 ] || { echo "error: the gateway recorded no call" >&2; exit 1; }
echo "ok: Claude Code answered through the gateway; $ROWS call(s) in the ledger"
