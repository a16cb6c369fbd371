"""One way to write dollars: every command, report, chart legend and the dashboard."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from tars_opt.accounting.money import usd
from tars_opt.cli.main import app


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1234.5, "$1,234.50"),
        (5.1234, "$5.12"),
        (1.0, "$1.00"),
        (0.5, "$0.5000"),
        (0.0644, "$0.0644"),
        (0.0042, "$0.0042"),
        (0.000123, "$0.00012"),
        (0.0, "$0.0000"),
        (-0.0, "$0.0000"),
        (-2.5, "$-2.50"),
        (-0.0012, "$-0.0012"),
    ],
)
def test_the_rounding_rule(value: float, text: str) -> None:
    assert usd(value) == text


@pytest.mark.parametrize("value", [1e-12, 3.3e-7, 4.9e-5, 0.00004999])
def test_a_non_zero_amount_never_reads_as_zero(value: float) -> None:
    shown = usd(value)
    assert float(shown.removeprefix("$")) == pytest.approx(value, rel=0.05), shown


def test_ask_writes_its_amounts_by_the_rule(runner: CliRunner) -> None:
    ask = runner.invoke(app, ["ask", "--backend", "offline", "What is the capital of France?"])
    summary = ask.output.strip().splitlines()[-1]
    (row,) = json.loads(runner.invoke(app, ["log", "--json"]).output)
    for label, key in (("cost", "cost"), ("baseline", "baseline_cost")):
        shown = re.search(rf"\b{label} (\$\S+)", summary)
        assert shown is not None, summary
        # A cheap-tier call costs a few hundredths of a cent: shown, not rounded to zero.
        assert 0 < row[key] < 0.01 and shown.group(1) == usd(row[key]) != "$0.0000"
