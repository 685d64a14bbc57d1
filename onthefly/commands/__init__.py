"""Handlers of the ``onthefly`` subcommands (one module each)."""
