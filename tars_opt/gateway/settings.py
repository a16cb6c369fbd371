"""The gateway's settings: the config's `gateway:` section, the flags over it, and the
secrets (its token, its own API key) read from the environment or a file."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from tars_opt.config.schema import Config
from tars_opt.errors import InputError

DEFAULT_UPSTREAM = "https://api.anthropic.com"
# The Messages API refuses larger bodies with 413 request_too_large; Message Batches take
# up to 256 MB.
MESSAGES_MAX_BYTES = 32 * 1024 * 1024
BATCHES_MAX_BYTES = 256 * 1024 * 1024


@dataclass
class GatewaySettings:
    host: str = "127.0.0.1"
    port: int = 8788
    upstream: str = DEFAULT_UPSTREAM
    shadow: bool = False
    # Clients present this as their key (then the gateway sends `own_key` upstream).
    token: str | None = field(default=None, repr=False)
    own_key: str | None = field(default=None, repr=False)
    use_own_key: bool = False
    allowed_hosts: frozenset[str] = frozenset()
    allowed_origins: frozenset[str] = frozenset()
    fail_open: bool = True
    optimizer_timeout_s: float = 2.0
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 600.0
    messages_max_bytes: int = MESSAGES_MAX_BYTES
    # gateway.capture: where request records are appended (None: capture off).
    capture_dir: Path | None = None
    batches_max_bytes: int = BATCHES_MAX_BYTES

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    def max_bytes(self, path: str) -> int:
        """The largest body the API takes on `path`."""
        if path.startswith("/v1/messages/batches"):
            return self.batches_max_bytes
        return self.messages_max_bytes


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _token(env: str, path: Path | None) -> str | None:
    value = os.environ.get(env, "").strip()
    if value:
        return value
    if path is None:
        return None
    try:
        value = Path(path).expanduser().read_text().strip()
    except OSError as exc:
        raise InputError(
            f"cannot read the gateway token file {path}: {exc.strerror or exc}; "
            "fix gateway.token_file or set the token in "
            f"{env}"
        ) from None
    if not value:
        raise InputError(f"the gateway token file {path} is empty: write the token in it")
    return value


def resolve(
    config: Config,
    *,
    host: str | None = None,
    port: int | None = None,
    upstream: str | None = None,
    shadow: bool | None = None,
) -> GatewaySettings:
    """The settings `serve` runs with: flags over the config; the token and keys read.

    Raises InputError for a bind beyond loopback without a token (anyone who can reach the
    port would spend the key), or a token without the gateway's own key to send upstream.
    """
    g = config.gateway
    settings = GatewaySettings(
        host=host or g.host,
        port=g.port if port is None else port,
        upstream=(upstream or g.upstream or DEFAULT_UPSTREAM).rstrip("/"),
        shadow=g.shadow if shadow is None else shadow,
        token=_token(g.token_env, g.token_file),
        own_key=os.environ.get(config.api.key_env) or None,
        use_own_key=g.use_own_key,
        allowed_hosts=frozenset(h.lower() for h in g.allowed_hosts),
        allowed_origins=frozenset(o.rstrip("/").lower() for o in g.allowed_origins),
        fail_open=g.fail_open,
        optimizer_timeout_s=g.optimizer_timeout_s,
        connect_timeout_s=g.connect_timeout_s,
        read_timeout_s=g.read_timeout_s,
        capture_dir=config.resolved_data_dir() / "capture" if g.capture else None,
    )
    if not settings.upstream.startswith(("http://", "https://")):
        raise InputError(
            f"upstream {settings.upstream!r} is not an http(s) URL: use e.g. "
            f"--upstream {DEFAULT_UPSTREAM}"
        )
    if not settings.loopback and settings.token is None:
        raise InputError(
            f"refusing to listen on {settings.host}: beyond loopback the gateway needs a token "
            f"that clients present as their API key; set {g.token_env} or gateway.token_file "
            "(never a command-line flag), or bind --host 127.0.0.1"
        )
    if settings.token is not None and settings.own_key is None:
        raise InputError(
            f"a gateway token is set, so clients send it instead of an API key and the gateway "
            f"sends its own upstream: set {config.api.key_env}"
        )
    return settings
