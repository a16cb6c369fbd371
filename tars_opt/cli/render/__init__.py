"""How the CLI shows library results with rich. Formatting only."""
