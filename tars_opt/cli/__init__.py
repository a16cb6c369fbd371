"""The command line: one module per command group, common options, rich rendering."""

from tars_opt.cli.main import app

__all__ = ["app"]
