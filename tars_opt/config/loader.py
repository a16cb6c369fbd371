"""Loading performance-config.yaml: layers, their sources, and one-line errors.

Layers, lowest first: the defaults in `tars_opt.config.schema`, the config file, environment
variables, command-line flags. `load_config` remembers which layer set each key so
`config show` can say so.
"""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from tars_opt.config.paths import default_data_dir
from tars_opt.config.schema import Config
from tars_opt.errors import ConfigError

CONFIG_FILENAME = "performance-config.yaml"
# Every key at its default with comments, written by `config init`; a test keeps it equal to
# the models' defaults, which are the ones loading uses.
EXAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "data" / CONFIG_FILENAME


# Environment variables that set config keys (the API key is never one of them).
ENV_KEYS: dict[str, str] = {
    "TARS_OPT_HOME": "data_dir",
    "TARS_OPT_DB": "database",
    "TARS_OPT_BACKEND": "backend",
    "ANTHROPIC_BASE_URL": "api.base_url",
    "TARS_OPT_HOLDOUT": "experiment.holdout",
}


# Sections renamed to match the stage they configure, old key -> new key. Old names still load,
# with one warning line each. Two keys of `context:` configured no pruning and moved out of it
# first: prompt caching (its own decisions) and the system prompt file (read by `ask`).
RENAMED: tuple[tuple[str, str], ...] = (
    ("context.prompt_caching", "prompt_cache"),
    ("context.system_file", "system_file"),
    ("context", "prune"),
    ("lazy", "defer"),
)
_warned: set[str] = set()


class LoadedConfig:
    """A validated config plus where each key came from and which file was read."""

    def __init__(self, config: Config, sources: dict[str, str], path: Path | None) -> None:
        self.config = config
        self.sources = sources
        self.path = path

    @property
    def label(self) -> str:
        """The config file read, as a user would name it, or "shipped defaults"."""
        return str(self.path) if self.path is not None else "shipped defaults"

    def source_of(self, dotted: str) -> str:
        """The layer that set `dotted` (or one of its parents): default, file, env or flag."""
        parts = dotted.split(".")
        for i in range(len(parts), 0, -1):
            found = self.sources.get(".".join(parts[:i]))
            if found:
                return found
        return "default"


def defaults() -> dict[str, Any]:
    """Every key at its default, as the nested dict the layers are merged into."""
    return Config().model_dump()


def find_config_file(explicit: str | Path | None) -> Path | None:
    """The config file to read: --config, TARS_OPT_CONFIG, ./performance-config.yaml, data dir."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("TARS_OPT_CONFIG")
    if env:
        return Path(env).expanduser()
    local = Path.cwd() / CONFIG_FILENAME
    if local.is_file():
        return local
    home = os.environ.get("TARS_OPT_HOME")
    candidate = (Path(home).expanduser() if home else default_data_dir()) / CONFIG_FILENAME
    return candidate if candidate.is_file() else None


def load_config(
    path: str | Path | None = None,
    *,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> LoadedConfig:
    """Load and validate the config; raise ConfigError with a one-line message on any problem.

    `overrides` are command-line flags as dotted keys (None values are ignored).
    """
    environ = dict(os.environ) if environ is None else environ
    merged = defaults()
    sources: dict[str, str] = {}
    file_path = find_config_file(path)
    if file_path is not None:
        merged = _merge(merged, _renamed(_read_yaml(file_path), file_path), sources, "file")
    env_layer: dict[str, Any] = {}
    for var, dotted in ENV_KEYS.items():
        if environ.get(var):
            _set_dotted(env_layer, dotted, environ[var])
    merged = _merge(merged, _renamed(env_layer, None), sources, "env")
    flag_layer: dict[str, Any] = {}
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(flag_layer, dotted, value)
    merged = _merge(merged, _renamed(flag_layer, None), sources, "flag")
    if "routing.quality_target" in sources and "routing.strong_share" not in sources:
        # The one knob a user set wins over the other knob's default.
        merged["routing"] = {k: v for k, v in merged["routing"].items() if k != "strong_share"}
    try:
        config = Config.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, file_path, sources)) from None
    return LoadedConfig(config, sources, file_path)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} does not exist: create it with `tars-opt config init`"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path} is not valid YAML{where}: fix the syntax there") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of keys (like `budget: ...`), not a list")
    return data


def _renamed(layer: dict[str, Any], path: Path | None) -> dict[str, Any]:
    """`layer` with old section names moved to their new ones, saying so once per name and
    file (`path`; None for dotted overrides); an old and a new name together are an error."""
    if not any(_holder(layer, old) is not None for old, _ in RENAMED):
        return layer
    layer = copy.deepcopy(layer)
    moved: list[str] = []
    for old, new in RENAMED:
        holder = _holder(layer, old)
        if holder is None:
            continue
        value = holder.pop(old.rsplit(".", 1)[-1])
        if _holder(layer, new) is not None:
            if path is not None:
                raise ConfigError(
                    f"config error in {path}: both `{old}:` and `{new}:` are set: move the "
                    f"keys under `{new}:` and remove `{old}:`"
                )
            raise ConfigError(f"config error: both `{old}` and `{new}` are set: use `{new}` only")
        if value == {} and any(m.startswith(f"{old}.") for m in moved):
            continue  # only held keys that moved elsewhere, each already named
        _set_dotted(layer, new, value)
        moved.append(old)
        if path is not None:
            _warn_once(f"warning: config: `{old}:` is now `{new}:`; rename it in {path}")
        else:
            _warn_once(f"warning: config: `{old}` is now `{new}`; rename it in the overrides")
    return layer


def _holder(layer: dict[str, Any], dotted: str) -> dict[str, Any] | None:
    """The mapping that holds `dotted`'s last part, if the key is there."""
    *parents, leaf = dotted.split(".")
    node: Any = layer
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, dict) and leaf in node else None


def _warn_once(message: str) -> None:
    # Loading happens before logging is set up, and a CLI user must see it: stderr, once.
    if message not in _warned:
        _warned.add(message)
        print(message, file=sys.stderr)


def _merge(
    base: dict[str, Any],
    layer: dict[str, Any],
    sources: dict[str, str],
    name: str,
    prefix: str = "",
) -> dict[str, Any]:
    out = dict(base)
    for key, value in layer.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(out.get(key), dict) and not _is_leaf_map(dotted):
            out[key] = _merge(out[key], value, sources, name, dotted + ".")
        else:
            out[key] = value
            sources[dotted] = name
    return out


def _is_leaf_map(dotted: str) -> bool:
    # Maps whose entries a user replaces as a whole rather than key by key.
    return dotted in {
        "models.tiers",
        "routing.heuristic.thresholds",
        "routing.learned.thresholds",
        "routing.pinned_types",
        "routing.pinned_keywords",
    }


def _set_dotted(target: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    target[parts[-1]] = value


# The command-line flags that set config keys, to name a bad flag value as the flag.
FLAG_KEYS: dict[str, str] = {
    "backend": "--backend",
    "database": "--db",
    "ledger.include_offline": "--include-offline",
}


def format_validation_error(
    exc: ValidationError, path: Path | None, sources: dict[str, str] | None = None
) -> str:
    """One line: the key path (or the flag or variable that set it), the bad value and what
    is allowed."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = err["msg"]
    origin = (sources or {}).get(loc)
    if origin in ("flag", "env"):
        value = err.get("input")
        name = (
            FLAG_KEYS.get(loc, f"--{loc}")
            if origin == "flag"
            else next((v for v, k in ENV_KEYS.items() if k == loc), loc) + "="
        )
        sep = "" if origin == "env" else " "
        return f"{name}{sep}{value!r} is not valid: {msg.removeprefix('Value error, ')}"
    where = f" in {path}" if path else ""
    if err["type"] == "extra_forbidden":
        return f"config error{where}: unknown key {loc!r}: remove it or check its spelling"
    if err["type"] == "missing":
        return f"config error{where}: {loc} is required: add it"
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    if err["type"] == "value_error":  # our own validators word the whole message
        return f"config error{where}: {loc}: {msg.removeprefix('Value error, ')}{more}"
    value = err.get("input")
    shown = repr(value) if not isinstance(value, dict) else "a mapping"
    return f"config error{where}: {loc} = {shown}: {msg}{more}"


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """A nested dict as dotted keys, for `config show`."""
    if isinstance(data, dict) and data and not _is_leaf_map(prefix.rstrip(".")):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): data}
