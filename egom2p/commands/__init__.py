"""Subcommands of ``egom2p`` (one module each, discovered by :mod:`egom2p.cli`)."""
