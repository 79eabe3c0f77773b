"""A module whose import fails (for the CLI test of load errors)."""
x = 1 / 0
