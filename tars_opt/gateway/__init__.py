"""The HTTP front door: `tars-opt serve`, a gateway that speaks the Messages API.

It parses HTTP, hands requests to the Optimizer and relays answers; no stage logic here.
"""

from tars_opt.gateway.app import Gateway, build_app

__all__ = ["Gateway", "build_app"]
