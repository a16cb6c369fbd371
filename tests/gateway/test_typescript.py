"""The TypeScript SDK (`@anthropic-ai/sdk` from npm, run with the machine's node) through
the gateway to the fake: JSON, a stream, token counting. Skipped, saying why, when node or
the npm registry is not there."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fake_anthropic.server import FakeAnthropic
from tests.gateway.harness import serve

SCRIPT = """
import Anthropic from "@anthropic-ai/sdk";
const client = new Anthropic({
  baseURL: process.env.GATEWAY_URL, apiKey: "sk-ant-ts", maxRetries: 0 });
const model = "claude-sonnet-4-6";
const messages = [{ role: "user", content: "What is the capital of Peru?" }];
const json = await client.messages.create({ model, max_tokens: 300, messages });
let streamed = "";
const stream = client.messages.stream({
  model, max_tokens: 300, messages: [{ role: "user", content: "Name a river." }] });
stream.on("text", (t) => { streamed += t; });
const final = await stream.finalMessage();
const counted = await client.messages.countTokens({ model, messages });
console.log(JSON.stringify({ json: json.content[0].text, streamed, final: final.content[0].text,
  usage: final.usage, tokens: counted.input_tokens }));
"""


@pytest.fixture(scope="module")
def ts_sdk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are not installed: the TypeScript SDK cannot run here")
    folder = tmp_path_factory.mktemp("ts-sdk")
    (folder / "package.json").write_text('{"type": "module", "private": true}')
    try:
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--silent", "@anthropic-ai/sdk"],
            cwd=folder, capture_output=True, text=True, timeout=240,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.skip("npm install @anthropic-ai/sdk timed out: is the npm registry reachable?")
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"npm could not install @anthropic-ai/sdk (registry unreachable?): {last}")
    return folder


def test_typescript_sdk_through_the_gateway(ts_sdk: Path, fake_api: FakeAnthropic) -> None:
    (ts_sdk / "run.mjs").write_text(SCRIPT)
    with serve(fake_api.url) as gw:
        done = subprocess.run(
            ["node", "run.mjs"], cwd=ts_sdk, capture_output=True, text=True, timeout=60,
            env={"GATEWAY_URL": gw.url, "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        rows = gw.rows()
    out = json.loads(done.stdout)
    assert out["json"] and out["streamed"] and out["streamed"] == out["final"]
    assert out["tokens"] > 0
    assert len(rows) == 2 and rows[1]["output_tokens"] == out["usage"]["output_tokens"]
    sent = fake_api.requests_to("/v1/messages")
    assert all(r.header("x-stainless-lang") == "js" for r in sent)
