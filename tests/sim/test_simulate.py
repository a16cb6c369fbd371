"""`tars-opt simulate`: replay, simulated clock, quality accounting, traces, export, compare."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tars_opt.cli.main import app
from tars_opt.config.loader import load_config
from tars_opt.errors import TraceError
from tars_opt.routing.datasets import bucket
from tars_opt.sim.simulate import simulate
from tars_opt.sim.workload import BUNDLED, load_workload
from tars_opt.store import connect

CHEAP, STRONG = "claude-haiku-5-5", "claude-sonnet-5-5"


def write_jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def config(path: Path | None = None):  # noqa: ANN201 - a Config
    return load_config(path).config


# Short prompts score low on the heuristic (cheap tier); "prove" is pinned to strong.
PINNED = (
    "routing:\n  router: heuristic\n  strong_share: null\n  pinned_keywords:\n    prove: strong\n"
)


def tiny(tmp_path: Path) -> Path:
    return write_jsonl(
        tmp_path / "tiny.jsonl",
        [
            {"kind": "header", "name": "tiny"},
            # cheap answers, both tiers right: good
            {"time": "2026-03-01T10:00:00Z", "prompt": "What is 2+2?",
             "labels": {"cheap": 1, "strong": 1}},
            # cheap answers, only strong right: bad
            {"time": "2026-03-01T10:01:00Z", "prompt": "Capital of Peru?",
             "labels": {"cheap": 0, "strong": 1}},
            # pinned to strong: strong's label counts
            {"time": "2026-03-01T10:02:00Z", "prompt": "prove that 7 is prime",
             "labels": {"cheap": 0, "strong": 1}},
            # cheap right where strong was wrong (a judge score, not just 0/1)
            {"time": "2026-03-01T10:03:00Z", "prompt": "Name a colour.",
             "labels": {"cheap": 0.8, "strong": 0.4}},
            # unlabelled: costs count, quality does not
            {"time": "2026-03-01T10:04:00Z", "prompt": "Say hello."},
        ],
    )  # fmt: skip


def test_quality_counts_the_tier_that_answered(tmp_path: Path) -> None:
    cfg = config(write_config(tmp_path / "c.yaml", PINNED + "experiment:\n  holdout: 0\n"))
    r = simulate(load_workload(tiny(tmp_path)), cfg)
    assert r.calls == r.answered == 5
    assert r.labelled == 4
    # answered: cheap 1, cheap 0, strong 1, cheap 0.8 -> 2.8; all-strong: 1+1+1+0.4 = 3.4
    assert r.quality == pytest.approx(2.8 / 4)
    assert r.quality_baseline == pytest.approx(3.4 / 4)
    assert r.relative_quality == pytest.approx(2.8 / 3.4)
    assert {m["model"]: m["calls"] for m in r.model_mix} == {CHEAP: 4, STRONG: 1}
    assert r.cost < r.baseline_cost
    assert r.saved_by_strategy["routing"] == pytest.approx(r.baseline_cost - r.cost)


def test_routing_off_costs_the_baseline_at_full_quality(tmp_path: Path) -> None:
    cfg = config(write_config(tmp_path / "c.yaml", "routing:\n  enabled: false\n"))
    r = simulate(load_workload(tiny(tmp_path)), cfg)
    assert r.cost == pytest.approx(r.baseline_cost)
    assert r.relative_quality == pytest.approx(1.0)
    assert r.model_mix == [{"model": STRONG, "calls": 5, "cost": pytest.approx(r.cost)}]


def test_the_simulated_clock_drives_the_ledger_across_midnight(tmp_path: Path) -> None:
    """Rows carry the trace's times (the chain's clock), across the 00:00 boundary and
    into the off-peak window; the database is temporary unless --db is given."""
    trace = write_jsonl(tmp_path / "night.jsonl", [
        {"time": "2026-03-01T23:50:00Z", "prompt": "late question"},
        {"time": 1772409900, "prompt": "after midnight"},  # 2026-03-02T00:05:00Z
        {"time": "2026-03-02T06:30:00", "prompt": "morning"},  # naive = UTC
    ])  # fmt: skip
    db_path = tmp_path / "sim.db"
    r = simulate(load_workload(trace), config(), db_path=db_path)
    assert r.answered == 3
    db = connect(db_path)
    times = [row["ts_iso"] for row in db.query("SELECT ts_iso FROM calls ORDER BY ts")]
    assert times == [
        "2026-03-01T23:50:00.000Z",
        "2026-03-02T00:05:00.000Z",
        "2026-03-02T06:30:00.000Z",
    ]
    assert r.start == pytest.approx(1772409000) and r.end == pytest.approx(1772433000)


def test_same_seed_same_result_and_the_seed_picks_the_holdout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TARS_OPT_HOLDOUT")
    cfg = config(write_config(tmp_path / "c.yaml", "experiment:\n  holdout: 0.3\n"))
    records = [
        {"time": 1772352000 + 600 * i, "prompt": f"Question {i % 40}: what is {i} squared?",
         "labels": {"cheap": i % 2, "strong": 1}, **({"defer": True} if i % 7 == 0 else {})}
        for i in range(60)
    ]  # fmt: skip
    work = load_workload(write_jsonl(tmp_path / "w.jsonl", records))
    one = simulate(work, cfg, seed=3).to_dict()
    two = simulate(work, cfg, seed=3).to_dict()
    other = simulate(work, cfg, seed=4).to_dict()
    for d in (one, two, other):
        d.pop("wall_s")
    assert one == two
    assert one["holdout"] != other["holdout"] or one["cost"] != other["cost"]


def test_bundled_day_is_labelled_evaluation_data_with_its_sources() -> None:
    work = load_workload()
    assert work.path == str(BUNDLED)
    loops = [c for c in work.calls if c.body is not None]
    assert len(work.calls) == 404 and len(loops) == 170 and work.conversations == 10
    head = work.header
    assert head["seed"] == 7 and head["generator"] == "scripts/make_workload.py"
    assert {"MIT (MMLU), Apache-2.0 (RouteLLM)", "Apache-2.0"} <= {
        s["licence"] for s in head["sources"]
    }
    assert work.labelled == 234
    for call in work.calls:
        if call.body is not None:
            continue
        src = call.meta["source"]
        if src in ("mmlu", "gsm8k") and call.meta.get("kind") is None:
            assert bucket(f"{src}:{call.prompt}") >= 6, "calibration prompt in the workload"
    kinds = [c.meta.get("kind", "new") for c in work.calls]
    assert kinds.count("repeat") == 28 and kinds.count("rephrase") == 14
    assert sum(1 for c in work.calls if c.history) >= 40
    assert sum(1 for c in work.calls if c.tools) >= 20
    assert sum(1 for c in work.calls if c.defer) >= 20
    night = sum(1 for c in work.calls if (c.time % 86400) < 6 * 3600)
    assert 0 < night < len(work.calls) / 2


def test_bundled_day_holds_no_sharegpt_text(shared_data: Path) -> None:
    path = shared_data / "sharegpt_prompts" / (
        "sg_90k_part1_html_cleaned_lang_first_sampled_sorted.json"
    )  # fmt: skip
    shared = {
        c["conversations"][0]["value"].strip()
        for c in json.loads(path.read_text(encoding="utf-8"))
        if c.get("conversations")
    }
    assert not shared & {c.prompt.strip() for c in load_workload().calls} - {""}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"prompt": "hi"}', "line 2: field 'time' is missing"),
        ('{"time": "yesterday", "prompt": "hi"}', "line 2: field 'time' 'yesterday' is not"),
        ('{"time": 1, "prompt": ""}', "line 2: field 'prompt' must be non-empty text"),
        ('{"time": 1, "prompt": "hi", "promt": 1}', "line 2: field 'promt' is not a trace"),
        ('{"time": 1, "prompt": "hi", "type": "poem"}', "line 2: field 'type' 'poem' is not"),
        ('{"time": 1, "prompt": "hi", "labels": {"cheap": 2}}', "field 'labels' value for"),
        ('{"time": 1, "prompt": "hi", "history": [{"role": "bot"}]}', "field 'history' mess"),
        ('{"time": 1, "prompt": "hi", "tools": [{}]}', "field 'tools' must be a list"),
        ('{"time": 1, "prompt": "hi", "defer": "yes"}', "field 'defer' must be true or false"),
        ('{"time": 1, "prompt": "hi", "max_tokens": 0}', "field 'max_tokens' must be a whole"),
        ('{"time": 1, "prompt": "hi"', "line 2: not valid JSON"),
        ("[1, 2]", "line 2: a call must be a JSON object"),
    ],
)
def test_trace_schema_errors_name_line_and_field(
    tmp_path: Path, runner: CliRunner, line: str, message: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"time": 0, "prompt": "fine"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(TraceError, match=None) as err:
        load_workload(path)
    assert message in str(err.value)
    result = runner.invoke(app, ["simulate", "--workload", str(path)])
    assert result.exit_code == 2
    assert result.output.strip().startswith("error: line 2:")
    assert len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_missing_and_empty_workloads(tmp_path: Path, runner: CliRunner) -> None:
    result = runner.invoke(app, ["simulate", "-w", str(tmp_path / "none.jsonl")])
    assert result.exit_code == 2 and "does not exist" in result.output
    empty = write_jsonl(tmp_path / "e.jsonl", [{"kind": "header", "name": "e"}])
    result = runner.invoke(app, ["simulate", "-w", str(empty)])
    assert result.exit_code == 2 and "has no calls" in result.output


def test_export_then_replay_round_trip(tmp_path: Path, runner: CliRunner) -> None:
    """A simulated ledger exported as a trace replays to the same calls and the same cost
    (the trace has only what the ledger keeps: prompt, type, priority, session)."""
    trace = write_jsonl(tmp_path / "t.jsonl", [
        {"time": "2026-03-01T09:00:00Z", "prompt": "What is the boiling point of water?",
         "type": "fact", "session": "s1"},
        {"time": "2026-03-01T09:05:00Z", "prompt": "Write a haiku about autumn rain.",
         "priority": "high", "namespace": "poet"},
        {"time": "2026-03-01T11:00:00Z", "prompt": "Why does ice float? Explain step by step.",
         "session": "s1"},
    ])  # fmt: skip
    db = tmp_path / "first.db"
    first = runner.invoke(app, ["simulate", "-w", str(trace), "--db", str(db), "--json"])
    assert first.exit_code == 0, first.output
    out = tmp_path / "mine.jsonl"
    exported = runner.invoke(app, ["log", "--db", str(db), "--export", str(out), "--json"])
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.output)["calls"] == 3
    original, again = load_workload(trace), load_workload(out)
    assert again.header["name"] == "ledger-export"
    assert [(c.time, c.prompt, c.session, c.namespace, c.priority) for c in again.calls] == [
        (c.time, c.prompt, c.session, c.namespace, c.priority) for c in original.calls
    ]
    replay = runner.invoke(app, ["simulate", "-w", str(out), "--json"])
    assert replay.exit_code == 0, replay.output
    a, b = json.loads(first.output), json.loads(replay.output)
    assert b["calls"] == a["calls"] == 3
    assert b["cost"] == pytest.approx(a["cost"])
    assert b["baseline_cost"] == pytest.approx(a["baseline_cost"])


def test_export_without_stored_prompts_says_so(tmp_path: Path, runner: CliRunner) -> None:
    cfg = write_config(tmp_path / "c.yaml", "ledger:\n  store_prompts: false\n")
    db = tmp_path / "x.db"
    trace = write_jsonl(tmp_path / "t.jsonl", [{"time": 5, "prompt": "a secret"}])
    assert runner.invoke(app, ["simulate", "-w", str(trace), "-c", str(cfg), "--db", str(db),
                               "--json"]).exit_code == 0  # fmt: skip
    out = tmp_path / "mine.jsonl"
    result = runner.invoke(app, ["log", "--db", str(db), "--export", str(out)])
    assert result.exit_code == 0, result.output
    assert "wrote 0 calls" in result.output and "1 without a stored prompt" in result.output
    assert "a secret" not in out.read_text(encoding="utf-8")


def test_compare_runs_two_configs_side_by_side(tmp_path: Path, runner: CliRunner) -> None:
    a = write_config(tmp_path / "a.yaml", "routing:\n  enabled: false\n")
    b = write_config(tmp_path / "b.yaml", PINNED)
    trace = tiny(tmp_path)
    result = runner.invoke(app, ["simulate", "-w", str(trace), "--compare", str(a), str(b),
                                 "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    ra, rb = json.loads(result.output)["results"]
    assert (ra["config"], rb["config"]) == (str(a), str(b))
    assert ra["cost"] == pytest.approx(ra["baseline_cost"])
    assert rb["cost"] < ra["cost"]
    # (baselines differ a little: the offline backend's answer length depends on the model)
    text = runner.invoke(app, ["simulate", "-w", str(trace), "--compare", str(a), str(b)])
    assert text.exit_code == 0
    assert "a.yaml" in text.output and "b.yaml" in text.output and "quality" in text.output
    bad = runner.invoke(app, ["simulate", "--compare", str(a), str(b), "--db", "x.db"])
    assert bad.exit_code == 2 and "drop --config and --db" in bad.output


def test_cli_summary_and_report(tmp_path: Path, runner: CliRunner) -> None:
    """The README's first command on the bundled day; the embedding model is switched off
    here to keep the test fast (the defaults' run is shown in the README, "What would it save?")."""
    lexical = write_config(
        tmp_path / "lexical.yaml",
        "cache:\n  semantic:\n    enabled: false\nprune:\n  semantic: false\n"
        "tools:\n  semantic: false\n",
    )
    args = ["simulate", "-c", str(lexical), "--report", "--out", str(tmp_path / "r.md")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    last = result.output.strip().splitlines()
    assert any(line.startswith("404 calls: baseline $") and "saved $" in line for line in last)
    assert "quality" in result.output and "by routing" in result.output
    assert "404 of 404 (refused 0, errors 0)" in result.output
    assert "170 calls, 10 conversations; cache read" in result.output
    assert "of baseline, 234 labelled prompts" in result.output
    assert "2 drain run(s)" in result.output  # deferred work went at the window
    md = (tmp_path / "r.md").read_text(encoding="utf-8")
    assert md.startswith("# Simulation: agent-day")
    assert "| baseline cost |" in md and "labelled prompts" in md
    assert "Example:" in runner.invoke(app, ["simulate", "--help"]).output


def test_deferred_work_drains_in_the_simulated_off_peak_window(tmp_path: Path) -> None:
    """The simulated clock crosses the 00:00-06:00 window: work deferred inside it goes at
    the drain's next tick; work deferred by day waits for the window to open."""
    trace = write_jsonl(tmp_path / "night.jsonl", [
        {"time": "2026-03-01T03:05:00Z", "prompt": "nightly job A", "defer": True},
        {"time": "2026-03-01T14:00:00Z", "prompt": "daytime job B", "defer": True,
         "priority": "low"},
        {"time": "2026-03-01T15:00:00Z", "prompt": "interactive question"},
        {"time": "2026-03-01T16:00:00Z", "prompt": "urgent job", "defer": True, "urgent": True},
    ])  # fmt: skip
    db_path = tmp_path / "sim.db"
    r = simulate(load_workload(trace), config(), db_path=db_path)
    assert (r.deferred, r.drains, r.answered) == (2, 2, 4)
    assert r.sources == {"batch": 2, "api": 2}
    assert r.saved_by_strategy["batching"] > 0
    db = connect(db_path)
    rows = {
        row["prompt"]: row
        for row in db.query("SELECT prompt, ts_iso, source, service_tier FROM calls")
    }
    assert rows["nightly job A"]["ts_iso"] == "2026-03-01T03:15:00.000Z"  # the next tick
    assert rows["daytime job B"]["ts_iso"] == "2026-03-02T00:00:00.000Z"  # window opens
    assert rows["nightly job A"]["service_tier"] == "batch"
    assert rows["urgent job"]["source"] == "api"
    assert r.end == pytest.approx(load_workload(trace).calls[0].time + 75300)


def test_header_defaults_apply_unless_a_call_sets_its_own(tmp_path: Path) -> None:
    tool = {"name": "calc", "input_schema": {"type": "object"}}
    trace = write_jsonl(tmp_path / "d.jsonl", [
        {"kind": "header", "defaults": {"system": "be brief", "tools": [tool]}},
        {"time": 1, "prompt": "a"},
        {"time": 2, "prompt": "b", "tools": [], "system": "be long"},
    ])  # fmt: skip
    a, b = load_workload(trace).calls
    assert (a.system, a.tools) == ("be brief", (tool,))
    assert (b.system, b.tools) == ("be long", ())
    bad = write_jsonl(tmp_path / "bad.jsonl", [
        {"kind": "header", "defaults": {"prompt": "x"}}, {"time": 1, "prompt": "a"},
    ])  # fmt: skip
    with pytest.raises(TraceError, match="line 1: header field 'defaults' cannot set 'prompt'"):
        load_workload(bad)


def test_a_cache_hit_inherits_the_label_of_the_answer_it_served(tmp_path: Path) -> None:
    """An exact repeat is answered from the cache: its quality is the label of the tier
    that answered the first ask, for the first ask's prompt; the baseline side still
    counts the repeat's own strong label."""
    cfg = config(write_config(tmp_path / "c.yaml", PINNED + "experiment:\n  holdout: 0\n"))
    trace = write_jsonl(tmp_path / "t.jsonl", [
        {"time": "2026-03-01T10:00:00Z", "prompt": "prove that 7 is prime",
         "labels": {"cheap": 0, "strong": 1}},
        {"time": "2026-03-01T10:05:00Z", "prompt": "prove that 7 is prime",
         "labels": {"cheap": 0, "strong": 0.5}},
    ])  # fmt: skip
    r = simulate(load_workload(trace), cfg)
    assert r.exact_hits == 1 and r.sources == {"api": 1, "cache": 1}
    hit = r.outcomes["sim0-000001"]
    assert (hit.source, hit.tier, hit.labels) == ("cache", "strong", {"cheap": 0, "strong": 1})
    assert r.labelled == 2
    assert r.quality == pytest.approx(2 / 2) and r.quality_baseline == pytest.approx(1.5 / 2)
    assert r.saved_by_strategy["response_cache"] > 0
