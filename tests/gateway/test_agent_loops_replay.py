"""benchmarks/agent_loops.py through tars-opt serve: the real SDK over loopback HTTP bills
exactly what the in-process replay bills, and the overhead figures come out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import agent_loops


def run(data: Path, out: Path, via: str) -> dict[str, dict]:
    argv = ["--data", str(data), "--limit", "1", "--only", "tars-opt,stages off", "--via", via]
    assert agent_loops.main([*argv, "--json", str(out)]) == 0
    return json.loads(out.read_text())


def test_the_gateway_replay_bills_what_the_in_process_replay_bills(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway = run(shared_data, tmp_path / "gateway.json", "gateway")
    printed = capsys.readouterr().out
    inprocess = run(shared_data, tmp_path / "inprocess.json", "inprocess")
    for row in ("unmarked", "one-line", "tars-opt"):
        for key in ("cost", "input_tokens", "cache_read", "cache_write"):
            assert gateway[row][key] == pytest.approx(inprocess[row][key], abs=1e-12), (row, key)
    assert 0 < gateway["tars-opt"]["cost"] <= gateway["one-line"]["cost"]
    # Per call, tars-opt serve (and with every stage off) against the bare relay.
    assert gateway["tars-opt"]["added_ms_p50"] > 0 and gateway["tars-opt"]["cpu_ms_mean"] > 0
    assert gateway["stages off"]["cost"] == pytest.approx(gateway["unmarked"]["cost"])
    assert "the real SDK -> tars-opt serve" in printed and "| bare relay " in printed
