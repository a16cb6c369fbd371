"""Make the bundled tool loops: a slice of tau-bench's airline conversations.

    python scripts/make_tau_slice.py [--data ../shared/data] [--conversations 10]

Writes tars_opt/data/tau_airline.jsonl (a header whose `defaults` hold the one system
prompt and tool list, then one conversation record per line) and tars_opt/data/
tau_airline.LICENSE (tau-bench's MIT notice). CALIBRATION split only (the split rule of
../shared/data/README), trial 0 of the first tasks in file order: figures reported on the
evaluation split never see these conversations.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "tars_opt" / "data" / "tau_airline.jsonl"
LICENSE_OUT = REPO / "tars_opt" / "data" / "tau_airline.LICENSE"
KEEP = ("id", "task_id", "trial", "reward", "split", "messages")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--conversations", type=int, default=10)
    args = parser.parse_args()
    src = args.data / "tau_bench"
    rows = [json.loads(line) for line in (src / "airline_conversations.jsonl").open()]
    picked = [r for r in rows if r["split"] == "calibration" and r["trial"] == 0]
    picked = picked[: args.conversations]
    calls = sum(1 for r in picked for m in r["messages"] if m["role"] == "assistant")
    header = {
        "kind": "header",
        "name": "tau-airline",
        "description": f"{len(picked)} real tool-calling conversations ({calls} API calls) of "
        "a gpt-4o airline agent from tau-bench, calibration split, in Messages API format; "
        "replayed by `tars-opt simulate` as part of the bundled agent day.",
        "source": "sierra-research/tau-bench commit 59a200c6, historical_trajectories/"
        "gpt-4o-airline.json (MIT, tau_airline.LICENSE)",
        "generator": "scripts/make_tau_slice.py",
        "defaults": {"system": picked[0]["system"], "tools": picked[0]["tools"]},
    }
    assert all(r["system"] == picked[0]["system"] and r["tools"] == picked[0]["tools"]
               for r in picked)  # fmt: skip
    lines = [json.dumps(header, ensure_ascii=False)]
    lines += [json.dumps({k: r[k] for k in KEEP}, ensure_ascii=False) for r in picked]
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    notice = (
        "tau_airline.jsonl holds conversations from tau-bench (https://github.com/"
        "sierra-research/tau-bench, commit 59a200c6), converted to the Messages API format.\n"
        "They are used under the licence below.\n\n"
    )
    LICENSE_OUT.write_text(notice + (src / "LICENSE").read_text(encoding="utf-8"))
    print(f"wrote {OUT} ({len(picked)} conversations, {calls} calls, "
          f"{OUT.stat().st_size:,} bytes) and {LICENSE_OUT}")  # fmt: skip


if __name__ == "__main__":
    main()
