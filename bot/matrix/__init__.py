"""The Matrix wing: the only code that imports matrix-nio."""
