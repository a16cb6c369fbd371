"""How far tars_opt.tokens' local estimate is from a real Claude tokenizer.

Claude's current tokenizer is not public. The last public one is the Claude 2 era BPE
that anthropic-sdk-python shipped as `anthropic/tokenizer.json` (e.g. in anthropic 0.25.0:
`pip download --no-deps anthropic==0.25.0`, unzip that file). This script compares the
estimate with it on ShareGPT messages (calibration split). Nothing is downloaded here.

Run: python benchmarks/token_estimate.py --tokenizer /path/to/tokenizer.json [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.context_savings import load  # noqa: E402
from tars_opt.tokens import estimate_text  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(args.tokenizer))
    path = args.data / "sharegpt_v3_partial" / "conversations_first2000.json"
    ratios: list[float] = []
    est_total = real_total = 0
    for _, msgs in load(path, "calibration"):
        for m in msgs:
            text = m["content"]
            if len(text) < 20:
                continue
            real, est = len(tok.encode(text).ids), estimate_text(text)
            ratios.append(est / real)
            est_total, real_total = est_total + est, real_total + real
    ratios.sort()

    def q(p: float) -> float:
        return ratios[int(p * (len(ratios) - 1))]

    print(
        f"{len(ratios)} messages: estimate / tokenizer = {est_total / real_total:.3f} in total, "
        f"median {statistics.median(ratios):.3f}, p5 {q(0.05):.3f}, p95 {q(0.95):.3f}; "
        f"within +-20%: {sum(0.8 <= r <= 1.2 for r in ratios) / len(ratios):.1%}"
    )


if __name__ == "__main__":
    main()
