"""performance-config.yaml: defaults, layers and their sources, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel
from typer.testing import CliRunner

from tars_opt.cli.main import app
from tars_opt.config import loader
from tars_opt.config.loader import EXAMPLE_CONFIG, load_config
from tars_opt.config.schema import Config
from tars_opt.errors import ConfigError
from tests.conftest import REPO


def test_repo_example_is_the_shipped_yaml() -> None:
    assert (REPO / "performance-config.yaml").read_text() == EXAMPLE_CONFIG.read_text()


def test_model_defaults_are_the_shipped_yaml_and_what_loading_gives() -> None:
    # The models are the one place a default is written; the YAML `config init` writes must
    # say the same, and loading with no file must give exactly the models' defaults.
    shipped = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    assert Config.model_validate(shipped) == Config()
    assert load_config(None, environ={}).config == Config()
    assert Config().routing.router == "learned" and Config().routing.strong_share == 0.6
    assert "claude-sonnet-5-5" in Config().pricing.models and len(Config().phases) == 3


def _schema_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every key a config file can set, descending into sections but not into maps/lists."""
    keys = []
    for name, field in model.model_fields.items():
        section = field.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            keys += _schema_keys(section, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def test_shipped_yaml_documents_every_key() -> None:
    shipped = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    keys = _schema_keys(Config)
    assert "routing.heuristic.weights.words" in keys and "pricing.models" in keys
    for dotted in keys:
        node = shipped
        for part in dotted.split("."):
            assert isinstance(node, dict) and part in node, f"{dotted} missing from the YAML"
            node = node[part]


def test_defaults_when_no_file() -> None:
    loaded = load_config()
    assert loaded.path is None
    cfg = loaded.config
    assert cfg.models.tiers == {"cheap": "claude-haiku-5-5", "strong": "claude-sonnet-5-5"}
    assert cfg.models.baseline == "claude-sonnet-5-5"
    assert cfg.budget.monthly_usd == 200
    assert loaded.source_of("budget.monthly_usd") == "default"


def test_layers_file_env_flag_and_their_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("budget:\n  monthly_usd: 50\nbackend: offline\n")
    monkeypatch.setenv("TARS_OPT_DB", str(tmp_path / "env.db"))
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")
    loaded = load_config(path, overrides={"backend": "anthropic", "models.max_tokens": None})
    cfg = loaded.config
    assert cfg.budget.monthly_usd == 50 and loaded.source_of("budget.monthly_usd") == "file"
    assert cfg.resolved_database() == tmp_path / "env.db"
    assert loaded.source_of("database") == "env"
    assert cfg.api.base_url == "http://127.0.0.1:9" and loaded.source_of("api.base_url") == "env"
    assert cfg.backend == "anthropic" and loaded.source_of("backend") == "flag"
    assert loaded.source_of("models.max_tokens") == "default"


def test_file_overrides_one_price_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("pricing:\n  models:\n    claude-haiku-5-5:\n      input: 0.2\n")
    models = load_config(path).config.pricing.models
    assert models["claude-haiku-5-5"].input == 0.2
    assert models["claude-haiku-5-5"].output == 0.5
    assert "claude-sonnet-5-5" in models


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("budget:\n  monthly_usd: -5\n", "budget.monthly_usd = -5: Input should be greater than 0"),
        ("budgett: 3\n", "unknown key 'budgett'"),
        ("backend: cloud\n", "backend = 'cloud'"),
        (
            "models:\n  tiers:\n    cheap: claude-nope-1\n    strong: claude-sonnet-5-5\n",
            "models.tiers.cheap is 'claude-nope-1', which has no price",
        ),
        ("models:\n  tiers:\n    cheap: claude-haiku-5-5\n", "default_tier 'strong' is not one"),
        ("models:\n  default_tier: medium\n", "default_tier 'medium' is not one of the tiers"),
        ("budget: [1, 2\n", "is not valid YAML at line"),
        ("- a\n- b\n", "must hold a mapping"),
        ("phases:\n  - {name: p, end: 2026-02-16}\n", "phase 'p' has an end but no start"),
        ("phases:\n  - {name: p, start: 2026-02-16, end: 2026-02-10}\n", "ends before it starts"),
        ("phases_start: soon\n", "phases_start"),
        ("baseline:\n  capture:\n    min_days: 0\n", "min_days"),
    ],
)
def test_bad_config_is_one_clear_line(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_missing_config_file_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config init"):
        load_config(tmp_path / "nope.yaml")


def test_config_cli_init_show_check(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["config", "init"])
    assert result.exit_code == 0, result.output
    written = tmp_path / "performance-config.yaml"
    assert written.read_text() == EXAMPLE_CONFIG.read_text()
    again = runner.invoke(app, ["config", "init"])
    assert again.exit_code == 2 and "--force" in again.output
    assert runner.invoke(app, ["config", "check"]).exit_code == 0
    show = runner.invoke(app, ["config", "show", "--json", "--db", str(tmp_path / "x.db")])
    assert show.exit_code == 0
    data = json.loads(show.output)
    by_key = {row["key"]: row for row in data["values"]}
    assert by_key["budget.monthly_usd"]["source"] == "file"
    assert by_key["database"] == {
        "key": "database",
        "value": str(tmp_path / "x.db"),
        "source": "flag",
    }
    table = runner.invoke(app, ["config", "show"])
    assert "budget.monthly_usd" in table.output


def test_config_check_bad_file_exits_2(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "performance-config.yaml").write_text("budget:\n  monthly_usd: lots\n")
    result = runner.invoke(app, ["config", "check"])
    assert result.exit_code == 2
    assert "budget.monthly_usd = 'lots'" in result.output
    assert "Traceback" not in result.output


# --- renamed sections ----------------------------------------------------------------------

OLD_NAMES = """\
lazy:
  window: "22:00-04:00"
  poll_seconds: 5
context:
  budget_tokens: 6000
  system_file: prompt.md
  prompt_caching:
    ttl_interactive: 5m
"""
NEW_NAMES = """\
defer:
  window: "22:00-04:00"
  poll_seconds: 5
prune:
  budget_tokens: 6000
system_file: prompt.md
prompt_cache:
  ttl_interactive: 5m
"""


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader, "_warned", set())


def test_old_section_names_load_the_same_and_warn_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text(OLD_NAMES)
    new.write_text(NEW_NAMES)
    assert load_config(new).config == load_config(old).config
    cfg = load_config(old).config
    assert cfg.defer.window == "22:00-04:00" and cfg.prune.budget_tokens == 6000
    assert cfg.system_file == Path("prompt.md") and cfg.prompt_cache.ttl_interactive == "5m"
    assert cfg.defer.min_wait_minutes == 5  # the rest of the section keeps its defaults
    lines = capsys.readouterr().err.splitlines()
    # Loaded twice, said once: one line per renamed key, naming the file.
    assert lines == [
        f"warning: config: `context.prompt_caching:` is now `prompt_cache:`; rename it in {old}",
        f"warning: config: `context.system_file:` is now `system_file:`; rename it in {old}",
        f"warning: config: `context:` is now `prune:`; rename it in {old}",
        f"warning: config: `lazy:` is now `defer:`; rename it in {old}",
    ]


def test_context_holding_only_prompt_caching_names_only_that(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("context:\n  prompt_caching:\n    enabled: false\n")
    loaded = load_config(path)
    assert loaded.config.prompt_cache.enabled is False
    assert loaded.source_of("prompt_cache.enabled") == "file"
    assert loaded.source_of("prune.enabled") == "default"
    assert capsys.readouterr().err.splitlines() == [
        f"warning: config: `context.prompt_caching:` is now `prompt_cache:`; rename it in {path}"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lazy: {enabled: false}\ndefer: {enabled: true}\n", "both `lazy:` and `defer:` are set"),
        ("context: {semantic: false}\nprune: {semantic: true}\n", "`context:` and `prune:`"),
        (
            "context: {prompt_caching: {enabled: false}}\nprompt_cache: {enabled: true}\n",
            "both `context.prompt_caching:` and `prompt_cache:` are set",
        ),
    ],
)
def test_old_and_new_name_together_is_one_line_error(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert expected in message and str(path) in message and "\n" not in message


def test_old_names_in_dotted_overrides(capsys: pytest.CaptureFixture[str]) -> None:
    overrides = {"lazy.window": "21:00-23:00", "context.prompt_caching.ttl_deferred": "5m"}
    loaded = load_config(overrides=overrides)
    assert loaded.config.defer.window == "21:00-23:00"
    assert loaded.config.prompt_cache.ttl_deferred == "5m"
    assert loaded.source_of("defer.window") == "flag"
    assert loaded.source_of("prompt_cache.ttl_deferred") == "flag"
    err = capsys.readouterr().err
    assert "`lazy` is now `defer`" in err and "`context.prompt_caching` is now" in err
    with pytest.raises(ConfigError, match="both `lazy` and `defer` are set"):
        load_config(overrides={"lazy.window": "21:00-23:00", "defer.poll_seconds": 3})


def test_config_show_names_the_new_keys_and_their_file_source(
    runner: CliRunner, tmp_path: Path
) -> None:
    (tmp_path / "performance-config.yaml").write_text(OLD_NAMES)
    show = runner.invoke(app, ["config", "show", "--json"])
    assert show.exit_code == 0, show.output
    by_key = {row["key"]: row for row in json.loads(show.stdout)["values"]}
    assert (by_key["defer.window"]["value"], by_key["defer.window"]["source"]) == (
        "22:00-04:00",
        "file",
    )
    assert by_key["prompt_cache.ttl_interactive"]["source"] == "file"
    assert by_key["system_file"] == {"key": "system_file", "value": "prompt.md", "source": "file"}
    assert by_key["prune.budget_tokens"]["source"] == "file"
    assert by_key["prune.semantic"]["source"] == "default"
    assert not any(key.startswith(("lazy.", "context.")) for key in by_key)
    assert "`lazy:` is now `defer:`" in show.stderr
    both = tmp_path / "both.yaml"
    both.write_text("lazy: {enabled: false}\ndefer: {enabled: true}\n")
    check = runner.invoke(app, ["config", "check", "-c", str(both)])
    assert check.exit_code == 2 and "both `lazy:` and `defer:`" in check.output
    assert "Traceback" not in check.output
