"""The optimization stages, in chain order: cache, defer, prune, route, tools."""
